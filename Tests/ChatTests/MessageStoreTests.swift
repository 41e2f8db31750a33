@testable import Chat
import Foundation
import SegmentLog
import Testing
import TestSupport

/// The message store on disk: the index, the cache, checkpoints, and reads from disk against memory.
@Suite struct MessageIndexTests {
    @Test func pagesGrowFromEightEntriesToTwoHundredFiftySixAndEverySeqHasOneSlot() {
        #expect((0..<8).map(MessageIndex.capacity) == [8, 16, 32, 64, 128, 256, 256, 256])
        var expected: [(Int, Int)] = []
        for page in 0..<8 { for slot in 0..<MessageIndex.capacity(page) { expected.append((page, slot)) } }
        for (index, (page, slot)) in expected.enumerated() {
            let placed = MessageIndex.place(index + 1)
            #expect(placed.page == page && placed.slot == slot, "seq \(index + 1)")
        }
    }

    @Test func entriesWrittenAreReadBackAndEachIsCheckedAgainstItsConversationAndSeq() throws {
        let scratch = Scratch()
        let index = try MessageIndex.create(path: scratch.file("index"))
        var pages: [[UInt32]] = [[], []]
        // Two conversations interleaved, as a log interleaves them.
        for seq in 1...600 {
            for conversation in 0..<2 {
                let (page, _) = MessageIndex.place(seq)
                if page == pages[conversation].count { pages[conversation].append(index.allocate(page: page)) }
                index.stage(conversation: UInt32(conversation), seq: seq, pages: pages[conversation],
                            .init(offset: Int64(seq * 2 + conversation), position: UInt32(seq * 100)))
            }
            if seq % 97 == 0 { try index.flush() }
        }
        let (pagesA, pagesB) = (pages[0], pages[1])
        try index.flush()
        let entries = try index.read(conversation: 1, id: "b", pages: pagesB, seqs: 240...260)
        let written: [MessageIndex.Entry] = (240...260).map { (seq: Int) -> MessageIndex.Entry in
            MessageIndex.Entry(offset: Int64(seq * 2 + 1), position: UInt32(seq * 100))
        }
        #expect(entries == written)
        // Conversation 0's pages read as conversation 1's: every entry fails its check.
        #expect(throws: MessageIndex.Inconsistency.self) { try index.read(conversation: 1, id: "b", pages: pagesA, seqs: 1...1) }
        // A seq never written (past the last) reads as zeros: caught.
        #expect(throws: MessageIndex.Inconsistency.self) { try index.read(conversation: 0, id: "a", pages: pagesA, seqs: 601...601) }
        // A damaged byte in an entry is caught and named.
        let file = try File.openForWriting(scratch.file("index"))
        let at = MessageIndex.position(ofUnit: pagesA[2]) + 3 * 16 + 5
        try file.write([0xFF], at: at)
        do {
            _ = try index.read(conversation: 0, id: "a", pages: pagesA, seqs: 25...40)
            Issue.record("a damaged entry was read")
        } catch let error as MessageIndex.Inconsistency {
            #expect(error.description.contains("seq 28 of conversation a"), "\(error)")
        }
    }

    @Test func anIndexFromAnotherGenerationOrCutShortIsRefused() throws {
        let scratch = Scratch()
        let index = try MessageIndex.create(path: scratch.file("index"))
        _ = index.allocate(page: 0)
        try index.flush()
        #expect(throws: MessageIndex.Inconsistency.self) { try MessageIndex.open(path: scratch.file("index"), generation: index.generation &+ 1, end: index.end) }
        #expect(throws: MessageIndex.Inconsistency.self) { try MessageIndex.open(path: scratch.file("index"), generation: index.generation, end: index.end + 16) }
        #expect(throws: MessageIndex.Inconsistency.self) { try MessageIndex.open(path: scratch.file("missing"), generation: 1, end: 32) }
        let reopened = try MessageIndex.open(path: scratch.file("index"), generation: index.generation, end: MessageIndex.headerSize)
        #expect(reopened.end == MessageIndex.headerSize)
        #expect(FileSystem.size(scratch.file("index")) == MessageIndex.headerSize)
    }
}

@Suite struct MessageCacheTests {
    func message(_ seq: Int, bytes: Int = 36) -> ConversationStore.Message {
        ConversationStore.Message(seq: seq, timestamp: 0, json: [UInt8](repeating: 65, count: bytes))
    }

    @Test func theBudgetHoldsAndTheLeastRecentlyUsedConversationGoesFirst() {
        // Each message costs 100 bytes, each conversation 96 more: three conversations of two fit in 600.
        var cache = MessageCache(budget: 600, perConversation: 10)
        for conversation: UInt32 in 1...3 {
            cache.append(message(1), to: conversation)
            cache.append(message(2), to: conversation)
        }
        #expect(cache.order == [3, 2])
        #expect(cache.used == 2 * (96 + 200))
        #expect(cache.evictions == 1)
        // Reading 2 makes it the most recent; a new conversation then pushes out the least recent, 3.
        _ = cache.messages(of: 2)
        cache.append(message(1), to: 4)
        #expect(cache.order == [4, 2])
        #expect(cache.used == 96 + 100 + 96 + 200)
        #expect(cache.messages(of: 3) == nil && cache.messages(of: 1) == nil)
        #expect(cache.evictions == 2)
    }

    @Test func aConversationKeepsItsNewestMessagesUpToItsShare() {
        var cache = MessageCache(budget: 1 << 20, perConversation: 4)
        for seq in 1...10 { cache.append(message(seq), to: 7) }
        #expect(cache.messages(of: 7)?.map(\.seq) == [7, 8, 9, 10])
        #expect(cache.used == 96 + 4 * 100)
        cache.install((20...30).map { message($0) }, for: 7)
        #expect(cache.messages(of: 7)?.map(\.seq) == [27, 28, 29, 30])
        cache.remove(7)
        #expect(cache.used == 0 && cache.count == 0 && cache.order.isEmpty)
    }

    @Test func aConversationAloneOverTheBudgetIsNotHeld() {
        var cache = MessageCache(budget: 150, perConversation: 10)
        cache.append(message(1, bytes: 500), to: 1)
        #expect(cache.count == 0 && cache.used == 0)
    }
}

@Suite struct ClientIDWindowTests {
    @Test func entriesOlderThanTheWindowFromTheNewestTimeDoNotCount() {
        var window = ClientIDWindow(window: 1000)
        window.record(1, .init(seq: 1, timestamp: 10_000))
        window.record(2, .init(seq: 2, timestamp: 10_500))
        #expect(window.candidates(1).map(\.seq) == [1])
        window.observe(11_001)
        #expect(window.candidates(1).isEmpty, "10,000 is more than 1,000 ms before 11,001")
        #expect(window.candidates(2).map(\.seq) == [2])
        window.sweep()
        #expect(window.count == 1)
    }

    @Test func twoKeysWithOneFingerprintAreBothKept() {
        var window = ClientIDWindow(window: 1000)
        window.record(9, .init(seq: 1, timestamp: 5))
        window.record(9, .init(seq: 4, timestamp: 6))
        #expect(window.candidates(9).map(\.seq) == [1, 4])
        #expect(window.all.count == 2)
    }

    @Test func fingerprintsAreTheSameInEveryProcess() {
        // Kept in checkpoints: fixed values (FNV-1a and fmix64, as computed by hand), not Swift's per-process seeded Hasher.
        var hash = StableHash()
        hash.add(Array("abc".utf8))
        #expect(hash.value == 0x33EB_AF99_27CB_C5BD)
        #expect(ClientIDWindow.fingerprint(conversation: 3, sender: "alice", clientID: "m-1") == 0x4F15_0EBB_9ADD_1E48)
        #expect(ClientIDWindow.fingerprint(conversation: 4, sender: "alice", clientID: "m-1") != 0x4F15_0EBB_9ADD_1E48)
        #expect(ClientIDWindow.fingerprint(conversation: 3, sender: "ali", clientID: "cem-1") != 0x4F15_0EBB_9ADD_1E48)
    }
}

@Suite struct MessageRecordTests {
    @Test func theHandReaderAndCodableAgreeOnEveryRecordForm() throws {
        let contents = ["hey", "quote \" backslash \\ slash / tab \t newline \n", "é 🙂 \u{1}", "", String(repeating: "x", count: 3000)]
        for content in contents {
            let value = MessageRecord.encodeMessage(sender: "al\"ice", content: content, clientID: content.isEmpty ? nil : "c/\(content.count)")
            let parsed = value.withUnsafeBytes { MessageRecord.parse($0) }
            let decoded = try JSONDecoder().decode(MessageRecord.Codable.self, from: Data(value))
            #expect(parsed == .message(sender: decoded.sender ?? "", content: decoded.content ?? "", clientID: decoded.clientID))
        }
        // JSONEncoder's form (how records were written before): escaped slashes, \u escapes, surrogates.
        let old = Array(#"{"client_id":"a\/b","content":"\u00e9\ud83d\ude42\n","sender":"bob","type":"message"}"#.utf8)
        #expect(old.withUnsafeBytes { MessageRecord.parse($0) } == .message(sender: "bob", content: "é🙂\n", clientID: "a/b"))
        let created = MessageRecord.encodeCreated(members: ["a", "b"], by: "a")
        #expect(String(decoding: created, as: UTF8.self) == #"{"by":"a","members":["a","b"],"type":"created"}"#)
        #expect(created.withUnsafeBytes { MessageRecord.parse($0) } == .created(members: ["a", "b"], by: "a"))
        // A newer build's field of another kind goes through Codable; unknown types and bad JSON are skipped.
        let newer = Array(#"{"content":"x","edited":{"at":5},"sender":"bob","type":"message"}"#.utf8)
        #expect(newer.withUnsafeBytes { MessageRecord.parse($0) } == .message(sender: "bob", content: "x", clientID: nil))
        for skipped in [#"{"type":"reaction","sender":"bob"}"#, #"{"type":"message","sender":"bob"}"#, "{nope", #"{"type":"message","content":"\ud800","sender":"b"}"#] {
            #expect(Array(skipped.utf8).withUnsafeBytes { MessageRecord.parse($0) } == nil, "\(skipped)")
        }
    }
}

@Suite struct MessageStoreTests {
    static func open(_ path: String, cache: Int = 64 << 20, perConversation: Int = 64, report: @escaping (String) -> Void = { _ in })
        throws -> (DataDirectory?, ConversationStore) {
        let directory = try DataDirectory(path: path)
        var options = ConversationStore.Options()
        options.cacheBytes = cache
        options.cachedPerConversation = perConversation
        return (directory, try ConversationStore(directory: directory, configuration: LogConfiguration(), options: options, report: report))
    }

    /// Two users' chat and a group chat with `count` messages each, some with client ids.
    static func fill(_ store: ConversationStore, count: Int, from start: Int = 1) async throws -> (chat: String, group: String) {
        let chat = try await store.create(members: ["alice", "bob"], by: "alice").id
        let group = try await store.create(members: ["alice", "bob", "carol"], by: "carol").id
        for i in start..<(start + count) {
            _ = try await store.post(to: chat, sender: i % 3 == 0 ? "bob" : "alice", content: "message \(i) \u{1F642} \"quoted\"", clientID: i % 2 == 0 ? "c-\(i)" : nil)
            _ = try await store.post(to: group, sender: "carol", content: "group \(i)")
        }
        return (chat, group)
    }

    /// Everything the store answers, as text: for comparing two stores.
    static func dump(_ store: ConversationStore, users: [String] = ["alice", "bob", "carol"]) throws -> String {
        var out = ""
        for user in users {
            for summary in store.conversations(of: user) {
                out += "\(user) \(summary.id) \(summary.members) \(summary.activity) \(summary.lastMessage.map { String(decoding: $0.json, as: UTF8.self) } ?? "-")\n"
                let last = store.lastSeq(of: summary.id)
                if last > 0 {
                    for message in try store.messagesFromDisk(of: summary.id, seqs: 1...last) { out += String(decoding: message.json, as: UTF8.self) + "\n" }
                }
            }
        }
        return out
    }

    func json(_ store: ConversationStore, _ id: String, _ page: ConversationStore.Page, _ limit: Int) throws -> (String, Bool) {
        var bytes: [UInt8] = []
        let more = try store.writeMessagesJSON(of: id, page: page, limit: limit) { bytes.append(contentsOf: $0) }
        return (String(decoding: bytes, as: UTF8.self), more)
    }

    @Test func everyPageFromDiskHasTheBytesOfTheSamePageFromMemory() async throws {
        let scratch = Scratch()
        // Memory: the cache holds the newest 150 (all of them).
        var fromMemory: [String: (String, Bool)] = [:]
        let pages: [ConversationStore.Page] = [.latest, .after(0), .after(37), .after(140), .before(151), .before(60), .before(2), .before(1)]
        let chat: String
        do {
            let (directory, store) = try Self.open(scratch.path, perConversation: 200)
            chat = try await Self.fill(store, count: 150).chat
            for page in pages { for limit in [1, 20, 200] { fromMemory["\(page)/\(limit)"] = try json(store, chat, page, limit) } }
            try store.close()
            _ = directory
        }
        // A store with a cache too small to hold anything reads every page from disk.
        let (again, reopened) = try Self.open(scratch.path, cache: 0)
        for page in pages {
            for limit in [1, 20, 200] {
                let disk = try json(reopened, chat, page, limit)
                let memory = fromMemory["\(page)/\(limit)"]
                #expect(disk.0 == memory?.0 && disk.1 == memory?.1, "\(page) limit \(limit)")
            }
        }
        #expect(try json(reopened, chat, .latest, 3).0.hasPrefix("{\"seq\":148,\"sender\":\"alice\",\"content\":\"message 148 🙂 \\\"quoted\\\"\",\"ts\":\""))
        try reopened.close()
        _ = again
    }

    @Test func theLatestPageIsKeptInMemoryAfterOneReadFromDisk() async throws {
        let scratch = Scratch()
        var (directory, store) = try Self.open(scratch.path)
        let (chat, _) = try await Self.fill(store, count: 30)
        try store.close()
        directory = nil
        (directory, store) = try Self.open(scratch.path)
        #expect(store.statistics.cachedConversations == 0)
        let first = try json(store, chat, .latest, 20)
        #expect(store.statistics.cachedConversations == 1)
        // Now a memory read: the index can go and the page is still answered.
        try FileSystem.remove(store.indexDirectory + "/index")
        #expect(try json(store, chat, .latest, 20) == first)
        try store.close()
        _ = directory
    }

    @Test func aRestartFromTheCheckpointAndTheLogsTailEqualsAFullRebuild() async throws {
        let scratch = Scratch()
        let (directory, store) = try Self.open(scratch.file("data"))
        let (chat, _) = try await Self.fill(store, count: 300)
        try store.checkpoint()
        // After the checkpoint: more messages, a new conversation, retries.
        _ = try await Self.fill(store, count: 40, from: 301)
        let late = try await store.create(members: ["bob", "dave"], by: "dave").id
        _ = try await store.post(to: late, sender: "dave", content: "hi", clientID: "d-1")
        #expect(try await store.post(to: chat, sender: "bob", content: "again", clientID: "c-6").repeated)
        // A crash image: the files as they are now, the log not closed.
        try FileManager.default.copyItem(atPath: scratch.file("data"), toPath: scratch.file("crashed"))
        try FileManager.default.copyItem(atPath: scratch.file("data"), toPath: scratch.file("rebuilt"))
        let live = try Self.dump(store, users: ["alice", "bob", "carol", "dave"])
        try store.close()
        _ = directory
        try FileSystem.remove(scratch.file("rebuilt/messages-index/checkpoint"))
        try FileSystem.remove(scratch.file("rebuilt/messages-index/index"))
        var notes: [String] = []
        let (d1, fromCheckpoint) = try Self.open(scratch.file("crashed")) { notes.append($0) }
        #expect(notes.contains { $0.contains("checkpoint at offset") }, "\(notes)")
        notes.removeAll()
        let (d2, rebuilt) = try Self.open(scratch.file("rebuilt")) { notes.append($0) }
        #expect(notes.contains { $0.contains("index rebuilt from") }, "\(notes)")
        let a = try Self.dump(fromCheckpoint, users: ["alice", "bob", "carol", "dave"])
        let b = try Self.dump(rebuilt, users: ["alice", "bob", "carol", "dave"])
        #expect(a == b)
        #expect(a == live)
        // Client ids of both halves are still known, and new posts number on alike.
        for candidate in [fromCheckpoint, rebuilt] {
            let retry = try await candidate.post(to: chat, sender: "alice", content: "x", clientID: "c-2")
            #expect(retry.repeated && retry.seq == 2)
            let lateRetry = try await candidate.post(to: chat, sender: "alice", content: "x", clientID: "c-320")
            #expect(lateRetry.repeated && lateRetry.seq == 320)
            #expect(try await candidate.post(to: late, sender: "dave", content: "hi", clientID: "d-1").repeated)
            #expect(try await candidate.post(to: chat, sender: "bob", content: "new").seq == 341)
        }
        try fromCheckpoint.close()
        try rebuilt.close()
        _ = (d1, d2)
    }

    @Test func aDeletedOrCutIndexOrCheckpointIsRebuiltFromTheLog() async throws {
        let scratch = Scratch()
        var (directory, store) = try Self.open(scratch.path)
        _ = try await Self.fill(store, count: 120)
        let expected = try Self.dump(store)
        try store.close()
        directory = nil
        let damages: [(String, (String) throws -> Void)] = [
            ("index deleted", { try FileSystem.remove($0 + "/messages-index/index") }),
            ("index cut", { try File.openForWriting($0 + "/messages-index/index").truncate(to: 100) }),
            ("checkpoint deleted", { try FileSystem.remove($0 + "/messages-index/checkpoint") }),
            ("checkpoint torn", { path in
                let file = try File.openForWriting(path + "/messages-index/checkpoint")
                try file.truncate(to: try file.size() - 7)
            }),
            ("checkpoint flipped", { path in
                let file = try File.openForWriting(path + "/messages-index/checkpoint")
                try file.write([0x5A], at: 40)
            }),
        ]
        for (name, damage) in damages {
            try damage(scratch.path)
            var notes: [String] = []
            let opened = try DataDirectory(path: scratch.path)
            store = try ConversationStore(directory: opened, configuration: LogConfiguration()) { notes.append($0) }
            #expect(notes.contains { $0.contains("rebuilding the message index") }, "\(name): \(notes)")
            #expect(try Self.dump(store) == expected, "\(name)")
            try store.close()
            withExtendedLifetime(opened) {}
        }
        _ = directory
    }

    @Test func anIndexEntryThatDoesNotFitTheLogFailsTheReadNamingItAndTheNextStartRebuilds() async throws {
        let scratch = Scratch()
        var (directory, store) = try Self.open(scratch.path, cache: 0)
        let (chat, _) = try await Self.fill(store, count: 20)
        try store.close()
        directory = nil
        (directory, store) = try Self.open(scratch.path, cache: 0)
        // Seq 5's entry made to point at seq 6's record, its check recomputed: only the log can tell.
        let number: UInt32 = 0
        let file = try File.openForWriting(scratch.path + "/messages-index/index")
        var entry = [UInt8](repeating: 0, count: 16)
        _ = try readInto(&entry, count: 16, from: file, at: MessageIndex.headerSize + 5 * 16)  // seq 6 (page 0, slot 5)
        let offset = entry.withUnsafeBytes { Int64(bigEndian: $0.loadUnaligned(as: Int64.self)) }
        let position = entry.withUnsafeBytes { UInt32(bigEndian: $0.loadUnaligned(fromByteOffset: 8, as: UInt32.self)) }
        let check = MessageIndex.check(conversation: number, seq: 5, .init(offset: offset + 1, position: position))
        var forged = ByteWriter()
        forged.i64(offset + 1); forged.u32(position); forged.u32(check)
        try file.write(forged.buffer, at: MessageIndex.headerSize + 4 * 16)
        do {
            _ = try json(store, chat, .after(3), 3)
            Issue.record("a page was read through a wrong entry")
        } catch let error as ConversationStore.StorageError {
            #expect(error.description.contains("seq 5 of conversation \(chat)"), "\(error)")
        }
        // Further reads fail the same way; the checkpoint is gone, so the next start rebuilds the index.
        #expect(throws: ConversationStore.StorageError.self) { try json(store, chat, .after(0), 2) }
        #expect(!FileSystem.exists(scratch.path + "/messages-index/checkpoint"))
        try store.writer.close()
        directory = nil
        var notes: [String] = []
        directory = try DataDirectory(path: scratch.path)
        store = try ConversationStore(directory: try #require(directory), configuration: LogConfiguration()) { notes.append($0) }
        #expect(notes.contains { $0.contains("rebuilding the message index") }, "\(notes)")
        #expect(try json(store, chat, .after(3), 3).0.contains("\"seq\":5,"))
        try store.close()
        _ = directory
    }
}

/// The store read offline (`presence messages`) and audited (`presence audit`), against the live store.
@Suite struct MessageHistoryAndAuditTests {
    static let pages: [ConversationStore.Page] = [.latest, .after(0), .after(37), .after(95), .before(101), .before(40), .before(1)]

    /// Every page the offline reader gives equals the live store's, for each limit.
    static func expectSamePages(_ data: String, _ store: ConversationStore, _ id: String, how: String) throws {
        for page in pages {
            for limit in [1, 7, 200] {
                let live = try store.messages(of: id, page: page, limit: limit)
                let offline = try #require(try MessageHistory.read(data: data, conversation: id, page: page, limit: limit))
                #expect(offline.messages == live.messages && offline.hasMore == live.hasMore, "\(page) limit \(limit)")
                #expect(offline.how.contains(how), "\(offline.how)")
            }
        }
    }

    @Test func theOfflineReaderGivesTheServersPagesThroughTheIndexAndByScanning() async throws {
        let scratch = Scratch()
        let (directory, store) = try MessageStoreTests.open(scratch.path, cache: 0)
        let (chat, group) = try await MessageStoreTests.fill(store, count: 60)
        try store.checkpoint()
        // After the checkpoint: the tail the reader scans (no client ids: see below).
        let late = try await store.create(members: ["alice", "carol"], by: "carol").id
        for i in 61...100 {
            _ = try await store.post(to: chat, sender: "bob", content: "tail \(i)")
            _ = try await store.post(to: late, sender: "carol", content: "late \(i)")
        }
        try Self.expectSamePages(scratch.path, store, chat, how: "read through the message index (checkpoint at offset")
        try Self.expectSamePages(scratch.path, store, late, how: "read through the message index")
        // A message with a client id after the checkpoint may repeat one before it: decided by a full read.
        _ = try await store.post(to: group, sender: "carol", content: "with an id", clientID: "g-1")
        try Self.expectSamePages(scratch.path, store, group, how: "messages with client ids after the checkpoint")
        #expect(try MessageHistory.read(data: scratch.path, conversation: "conv_none", page: .latest, limit: 5) == nil)
        // Without the checkpoint: the whole log is scanned, with the same answers.
        try FileSystem.remove(scratch.path + "/messages-index/checkpoint")
        try Self.expectSamePages(scratch.path, store, chat, how: "no checkpoint: read by scanning the whole log")
        try store.close()
        _ = directory
    }

    @Test func theAuditChecksEveryIndexedMessageAndTheCheckpointAgainstTheLog() async throws {
        let scratch = Scratch()
        var directory: DataDirectory?
        do {
            let (opened, store) = try MessageStoreTests.open(scratch.path)
            let (chat, _) = try await MessageStoreTests.fill(store, count: 50)
            try store.checkpoint()
            _ = try await store.post(to: chat, sender: "bob", content: "after the checkpoint")
            let clean = try #require(try MessageAudit.run(data: scratch.path))
            #expect(clean.exitCode == 0, "\(clean.cacheProblems) \(clean.disagreements)")
            #expect(clean.conversations == 2 && clean.messages == 101 && clean.entriesChecked == 100 && clean.recordsAfterCheckpoint == 1)
            try store.close()
            directory = opened
        }
        directory = nil
        let closed = try #require(try MessageAudit.run(data: scratch.path))
        #expect(closed.exitCode == 0 && closed.entriesChecked == 101 && closed.recordsAfterCheckpoint == 0)
        // An entry pointing at another message of the log (its check recomputed): corruption, named.
        let file = try File.openForWriting(scratch.path + "/messages-index/index")
        var entry = [UInt8](repeating: 0, count: 16)
        _ = try readInto(&entry, count: 16, from: file, at: MessageIndex.headerSize + 2 * 16)
        let offset = entry.withUnsafeBytes { Int64(bigEndian: $0.loadUnaligned(as: Int64.self)) }
        let position = entry.withUnsafeBytes { UInt32(bigEndian: $0.loadUnaligned(fromByteOffset: 8, as: UInt32.self)) }
        var forged = ByteWriter()
        forged.i64(offset + 2); forged.u32(position); forged.u32(MessageIndex.check(conversation: 0, seq: 3, .init(offset: offset + 2, position: position)))
        try file.write(forged.buffer, at: MessageIndex.headerSize + 2 * 16)
        let damaged = try #require(try MessageAudit.run(data: scratch.path))
        #expect(damaged.exitCode == 2 && damaged.disagreementCount == 1)
        #expect(damaged.disagreements.first?.contains("seq 3 of conversation") == true, "\(damaged.disagreements)")
        // No checkpoint: nothing to compare, a cache to rebuild (an anomaly).
        try FileSystem.remove(scratch.path + "/messages-index/checkpoint")
        let missing = try #require(try MessageAudit.run(data: scratch.path))
        #expect(missing.exitCode == 1 && missing.cacheProblems.count == 1 && missing.entriesChecked == 0)
        #expect(try MessageAudit.run(data: scratch.file("nothing")) == nil)
        _ = directory
    }
}

/// A retried message that reaches the log twice (in cluster mode two nodes can each append one send of
/// it): the second is a repeat, decided in log order, alike live, after a restart, offline and in the audit.
@Suite struct RepeatedClientIDTests {
    @Test func theSecondRecordOfAClientIDIsARepeatEverywhere() async throws {
        let scratch = Scratch()
        var chat = ""
        do {
            let (directory, store) = try MessageStoreTests.open(scratch.path)
            chat = try await store.create(members: ["alice", "bob"], by: "alice").id
            _ = try await store.post(to: chat, sender: "alice", content: "one")
            var twice = RecordBuffer()
            for _ in 0..<2 {
                twice.append(timestamp: Int64(Date().timeIntervalSince1970 * 1000), key: Array(chat.utf8),
                             value: ConversationStore.messageRecordValue(sender: "alice", content: "two", clientID: "m-2"))
            }
            let applied = try await store.commit(twice)
            #expect(applied.map { $0?.seq } == [2, 2] && applied.map { $0?.repeated } == [false, true])
            #expect(try await store.post(to: chat, sender: "bob", content: "three").seq == 3)
            #expect(store.lastSeq(of: chat) == 3)
            try store.close()
            _ = directory
        }
        // Offline, by the whole-log scan (no checkpoint) and through the index: seqs 1, 2, 3.
        let throughIndex = try #require(try MessageHistory.read(data: scratch.path, conversation: chat, page: .after(0), limit: 10))
        #expect(throughIndex.messages.map(\.seq) == [1, 2, 3] && throughIndex.lastSeq == 3)
        let audit = try #require(try MessageAudit.run(data: scratch.path))
        #expect(audit.exitCode == 0 && audit.messages == 3, "\(audit.disagreements)")
        try FileSystem.remove(scratch.path + "/messages-index/checkpoint")
        let scanned = try #require(try MessageHistory.read(data: scratch.path, conversation: chat, page: .after(0), limit: 10))
        #expect(scanned.messages.map(\.seq) == [1, 2, 3] && scanned.messages.map(\.content) == throughIndex.messages.map(\.content))
        // A rebuild from the log decides the same.
        let (directory, store) = try MessageStoreTests.open(scratch.path)
        #expect(store.lastSeq(of: chat) == 3)
        #expect(try await store.post(to: chat, sender: "alice", content: "two", clientID: "m-2").repeated)
        try store.close()
        _ = directory
    }
}
