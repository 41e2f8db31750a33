import Foundation
import Presence
import SegmentLog

/// Conversations and their messages, event-sourced in the log `messages/` (same engine as presence).
///
/// Each record's key is the conversation id, its value a JSON object (`MessageRecord`: `created` with the
/// members, or `message` with the sender, the content and an optional client id), its timestamp the
/// server's time of the request (ms). A message's `seq` is its position among the conversation's
/// messages in log order, counted from 1, so the log need not store it and a replay numbers them the same.
///
/// The log is the store. Beside it, in `DATA/messages-index/`, two caches, each rebuilt from the log when
/// missing or inconsistent:
/// - `index` (`MessageIndex`): for every conversation and seq, where the message lies in the log (the
///   record's offset and its batch's byte position), written as the log is, so that an older page is one
///   read of index entries, one positioned read of the log span holding the page's batches, and a
///   decode of each batch touched.
/// - `checkpoint` (`ChatCheckpoint`): what is held in memory (below) at a log offset, so that a restart
///   reads only the log after it. Written every `Options.checkpointEveryRecords` records or
///   `checkpointEverySeconds` of activity (on a background thread), and on `close`.
///
/// In memory: each conversation's metadata (id, members, creation time, last seq and time, where its
/// index pages are, its newest message for the inbox), who is in which conversation, the pairs' chats,
/// the client ids posted within `Options.clientIDWindow` (`ClientIDWindow`), and `MessageCache`: the
/// newest messages of the conversations used lately, within `Options.cacheBytes`. The page a chat opens
/// on is read from the cache; a page the cache does not hold is read from disk through the index.
///
/// Threads: the writer's commit thread applies each record, in log order, before the request is
/// answered, and is the only one that changes the metadata and the index (under `lock` where readers
/// look). Readers take `lock` only to look up and copy; disk reads happen outside it.
///
/// Crash safety: nothing is acknowledged before its record is durable in the log (the writer's fsync).
/// The index and the checkpoint are written after, without fsync of their own except before a checkpoint
/// names them; after a crash the store opens from the last checkpoint and replays the log after it,
/// writing the index entries again. A checkpoint or index that does not fit the log is ignored and
/// both are rebuilt from the whole log.
public final class ConversationStore: @unchecked Sendable {
    // @unchecked: the metadata below changes only on the commit thread (or in `init`) under `lock`, and
    // is read under `lock` elsewhere; `cache` is touched only under `lock`; the commit-thread state
    // (`index` writes, `appliedEnd`, `lastBatch`, checkpoint counters) is touched by that thread alone.
    private let lock = NSLock()

    /// How the store holds its data.
    public struct Options: Sendable {
        /// The cache's budget for newest messages (bytes, as `MessageCache` counts them).
        public var cacheBytes = 64 << 20
        /// The most messages held per conversation (a page is at most 200).
        public var cachedPerConversation = 64
        /// How far back in the log's time a client id is remembered (ms): a retry within it is answered
        /// with the first post's seq.
        public var clientIDWindow: Int64 = 86_400_000
        /// A checkpoint is written after this many records...
        public var checkpointEveryRecords = 100_000
        /// ...or once this long has passed since the last one with records written since.
        public var checkpointEverySeconds: Double = 60
        /// The messages log's writer waits this long for more posts to join a commit (µs). Posts come one
        /// a request, each waiting for its fsync: the next commit starting at once, with whatever came in
        /// during the last fsync, is the group commit that serves them best.
        public var commitWindowMicroseconds = 0

        public init() {}
    }

    struct Meta {
        var id: String
        var members: [String]
        var createdAt: Int64
        var lastSeq = 0
        var lastTimestamp: Int64 = 0
        /// The units of its index pages (`MessageIndex`), page 0 first.
        var pages: [UInt32] = []
        /// Its newest message (the inbox shows it).
        var newest: Message?
    }

    private var metas: [Meta] = []
    private var numbers: [String: UInt32] = [:]
    /// Each user's conversations, by number, ascending.
    private var memberships: [String: [UInt32]] = [:]
    /// The first conversation of exactly two members, by the pair (sorted, joined by NUL).
    private var pairs: [String: UInt32] = [:]
    private var clientIDs: ClientIDWindow
    /// The log's segments (base offsets, ascending).
    private var segments: [Int64] = []
    private var cache: MessageCache
    /// Set when the index was found not to fit the log, or could not be written: reads through it fail
    /// (naming the problem) until a restart rebuilds it, and no checkpoint names it.
    private var indexProblem: String?

    // The commit thread's.
    private let index: MessageIndex
    private var appliedEnd: Int64 = 0
    private var lastBatch: ChatCheckpoint.BatchMark?
    private var recordsSinceCheckpoint = 0
    private var lastCheckpoint = DispatchTime.now()
    private let checkpointQueue = DispatchQueue(label: "presencelog-chat-checkpoint")
    private var checkpointRunning = false  // under `lock`

    public let options: Options
    public let writer: LogWriter
    private let reader: BatchReader
    /// `DATA/messages`.
    public let logDirectory: String
    /// `DATA/messages-index`.
    public let indexDirectory: String
    /// Told of each new message once it is durable, in log order, on the commit thread (set once,
    /// before the server starts).
    public var messageObserver: (@Sendable (_ conversation: String, _ message: Message) -> Void)?

    public static let logName = "messages"
    public static let indexDirectoryName = "messages-index"
    static let indexFileName = "index"

    /// A message as the API shows it: `{"seq":..,"sender":..,"content":..,"ts":".."}`, encoded once (every
    /// snapshot that includes the message copies these bytes).
    public struct Message: Sendable, Equatable {
        public var seq: Int
        public var timestamp: Int64
        public var json: [UInt8]

        init(seq: Int, sender: String, content: String, timestamp: Int64) {
            self.seq = seq
            self.timestamp = timestamp
            var out: [UInt8] = Array("{\"seq\":".utf8)
            out.reserveCapacity(sender.utf8.count + content.utf8.count + 80)
            out.append(contentsOf: String(seq).utf8)
            out.append(contentsOf: ",\"sender\":".utf8)
            EventJSON.appendString(sender, to: &out)
            out.append(contentsOf: ",\"content\":".utf8)
            EventJSON.appendString(content, to: &out)
            out.append(contentsOf: ",\"ts\":\"".utf8)
            Timestamp.append(timestamp, to: &out)
            out.append(contentsOf: "\"}".utf8)
            json = out
        }

        init(seq: Int, timestamp: Int64, json: [UInt8]) {
            self.seq = seq
            self.timestamp = timestamp
            self.json = json
        }

        private struct Fields: Decodable { var sender: String; var content: String }
        private var fields: Fields? { try? JSONDecoder().decode(Fields.self, from: Data(json)) }
        /// The sender (decoded from `json`).
        public var sender: String { fields?.sender ?? "" }
        /// The content (decoded from `json`).
        public var content: String { fields?.content ?? "" }
    }

    /// One of a user's conversations, as the inbox shows it.
    public struct Summary: Sendable {
        public var id: String
        public var members: [String]
        public var lastMessage: Message?
        /// The last message's time, else the creation time (ms): the inbox's order.
        public var activity: Int64
    }

    /// A read the store could not answer: the index does not fit the log. Names the file, the byte and
    /// the conversation; the next start rebuilds the index.
    public struct StorageError: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    // MARK: Opening

    /// Opens the messages log (recovering it if needed), restores the newest checkpoint that fits it and
    /// replays the log after it (the whole log, rebuilding the index, without one), then starts the
    /// writer. `report` receives one line for each thing it did.
    public init(directory: DataDirectory, configuration: LogConfiguration, options: Options = Options(),
                report: (String) -> Void) throws {
        self.options = options
        var configuration = configuration
        configuration.commitWindowMicroseconds = options.commitWindowMicroseconds
        let log = try directory.openLog(Self.logName, configuration: configuration, report: report)
        logDirectory = log.directory
        indexDirectory = directory.path + "/" + Self.indexDirectoryName
        try FileSystem.createDirectory(indexDirectory)
        reader = BatchReader(directory: log.directory, maxBatchSize: configuration.maxBatchSizeOnDisk)
        clientIDs = ClientIDWindow(window: options.clientIDWindow)
        cache = MessageCache(budget: options.cacheBytes, perConversation: options.cachedPerConversation)
        segments = log.segments.map(\.baseOffset)
        let logEnd = log.endOffset
        let started = DispatchTime.now()
        let restored = Self.restore(indexDirectory: indexDirectory, log: log, reader: reader, options: options)
        index = try restored.index ?? MessageIndex.create(path: indexDirectory + "/" + Self.indexFileName)
        writer = LogWriter(log: log)
        let start: Int64
        if let checkpoint = restored.checkpoint {
            load(checkpoint)
            start = checkpoint.nextOffset
        } else {
            if let reason = restored.reason { report("\(indexDirectory): \(reason); rebuilding the message index from the log") }
            start = 0
        }
        // The writer only appends after the last record; reading what is already there is safe.
        var replayed = 0
        let logReader = try LogReader(directory: log.directory)
        try logReader.forEachLocatedBatch(from: start) { info, records in
            for record in records where record.offset >= start {
                guard let key = record.key, let value = record.value else { continue }
                _ = apply(id: String(decoding: key, as: UTF8.self), value: value, record: nil, timestamp: record.timestamp,
                          offset: record.offset, batch: info.segment.baseOffset, position: info.position, crc: info.header.crc)
                replayed += 1
            }
            if index.stagedCount >= 1 << 16 { flushIndex() }
            return true
        }
        flushIndex()
        appliedEnd = max(appliedEnd, logEnd)
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1e9
        let messages = metas.reduce(0) { $0 + $1.lastSeq }
        report("\(logDirectory): \(metas.count) conversations, \(messages) messages; "
               + (restored.checkpoint == nil ? "index rebuilt from \(replayed) records" : "checkpoint at offset \(start), \(replayed) records after it")
               + " in \(String(format: "%.3f", seconds)) s")
        if restored.checkpoint == nil || replayed > 0 {
            // The next start reads only what comes after this.
            try writeCheckpoint(encodeCheckpoint())
        }
    }

    /// What a checkpoint gave, or why there is none to use.
    private struct Restored {
        var checkpoint: ChatCheckpoint?
        var index: MessageIndex?
        var reason: String?
    }

    private static func restore(indexDirectory: String, log: Log, reader: BatchReader, options: Options) -> Restored {
        let path = indexDirectory + "/" + ChatCheckpoint.fileName
        guard FileSystem.exists(path) else { return Restored(reason: "no checkpoint") }
        do {
            let checkpoint = try ChatCheckpoint.decode(try File.openForReading(path).readAll(), path: path)
            guard checkpoint.nextOffset <= log.endOffset else {
                return Restored(reason: "the checkpoint covers the log up to offset \(checkpoint.nextOffset), but the log ends at \(log.endOffset)")
            }
            guard checkpoint.clientIDWindow >= options.clientIDWindow else {
                return Restored(reason: "the checkpoint kept client ids for \(checkpoint.clientIDWindow) ms, less than the \(options.clientIDWindow) ms asked for")
            }
            if let mark = checkpoint.lastBatch {
                var matches = false
                try reader.read(segment: mark.segment, positions: [mark.position]) { header, _ in
                    matches = header.crc == mark.crc && header.baseOffset < checkpoint.nextOffset && header.lastOffset >= checkpoint.nextOffset - 1
                }
                guard matches else {
                    return Restored(reason: "the checkpoint's last batch (segment \(mark.segment), byte \(mark.position)) is not in the log")
                }
            } else if checkpoint.nextOffset != 0 {
                return Restored(reason: "the checkpoint names no batch")
            }
            let index = try MessageIndex.open(path: indexDirectory + "/" + indexFileName, generation: checkpoint.indexGeneration,
                                              end: checkpoint.indexEnd)
            return Restored(checkpoint: checkpoint, index: index)
        } catch {
            return Restored(reason: "\(error)")
        }
    }

    private func load(_ checkpoint: ChatCheckpoint) {
        metas.reserveCapacity(checkpoint.conversations.count)
        for (number, conversation) in checkpoint.conversations.enumerated() {
            let n = UInt32(number)
            var meta = Meta(id: conversation.id, members: conversation.members, createdAt: conversation.createdAt)
            meta.lastSeq = conversation.lastSeq
            meta.lastTimestamp = conversation.lastTimestamp
            meta.pages = conversation.pages
            meta.newest = conversation.newestJSON.map { Message(seq: conversation.lastSeq, timestamp: conversation.lastTimestamp, json: $0) }
            metas.append(meta)
            numbers[conversation.id] = n
            noteMembers(conversation.members, of: n)
        }
        for (fingerprint, entry) in checkpoint.clientIDs { clientIDs.record(fingerprint, entry) }
        clientIDs.observe(checkpoint.newest)
        appliedEnd = checkpoint.nextOffset
        lastBatch = checkpoint.lastBatch
    }

    private func noteMembers(_ members: [String], of conversation: UInt32) {
        for member in members { memberships[member, default: []].append(conversation) }
        if members.count == 2 {
            let pair = Self.pairKey(members)
            if pairs[pair] == nil { pairs[pair] = conversation }
        }
    }

    private static func pairKey(_ members: [String]) -> String { members.sorted().joined(separator: "\u{0}") }

    // MARK: Applying records (commit thread, or init)

    /// Applies one record (at start-up, or on the commit thread) at `offset`, in the batch at `position` of
    /// segment `batch`; returns the new message, if it was one. A record this store cannot read is
    /// skipped (the log is checked by its CRCs; a value from a newer build would be kept in the log).
    private func apply(id: String, value: UnsafeRawBufferPointer, record known: MessageRecord?, timestamp: Int64,
                       offset: Int64, batch segment: Int64, position: Int64, crc: UInt32) -> Message? {
        appliedEnd = offset + 1
        lastBatch = ChatCheckpoint.BatchMark(segment: segment, position: position, crc: crc)
        guard let record = known ?? MessageRecord.parse(value) else {
            lock.withLock { clientIDs.observe(timestamp) }
            return nil
        }
        switch record {
        case .created(let members, _):
            lock.withLock {
                clientIDs.observe(timestamp)
                guard numbers[id] == nil else { return }
                let number = UInt32(metas.count)
                metas.append(Meta(id: id, members: members, createdAt: timestamp))
                numbers[id] = number
                noteMembers(members, of: number)
            }
            return nil
        case .message(let sender, let content, let clientID):
            // Only this thread changes `numbers` and `metas`: reading them without the lock is safe here.
            guard let number = numbers[id] else {
                lock.withLock { clientIDs.observe(timestamp) }
                return nil
            }
            let seq = metas[Int(number)].lastSeq + 1
            var pages = metas[Int(number)].pages
            let (page, _) = MessageIndex.place(seq)
            if page == pages.count { pages.append(index.allocate(page: page)) }
            index.stage(conversation: number, seq: seq, pages: pages, MessageIndex.Entry(offset: offset, position: UInt32(truncatingIfNeeded: position)))
            let message = Message(seq: seq, sender: sender, content: content, timestamp: timestamp)
            lock.withLock {
                if segments.last.map({ $0 < segment }) ?? true { segments.append(segment) }
                metas[Int(number)].pages = pages
                metas[Int(number)].lastSeq = seq
                metas[Int(number)].lastTimestamp = timestamp
                metas[Int(number)].newest = message
                if known != nil { cache.append(message, to: number) }
                clientIDs.observe(timestamp)
                if let clientID {
                    clientIDs.record(ClientIDWindow.fingerprint(conversation: number, sender: sender, clientID: clientID),
                                     ClientIDWindow.Entry(seq: UInt32(truncatingIfNeeded: seq), timestamp: timestamp))
                }
            }
            return message
        }
    }

    /// Writes the staged index entries; a failure leaves the index unusable until a restart rebuilds it.
    private func flushIndex() {
        do {
            try index.flush()
        } catch {
            markIndexBroken("\(index.path): could not be written (\(error)); the next start rebuilds it from the log")
        }
    }

    /// Notes that the index cannot be trusted: reads through it fail with `problem`, no checkpoint names
    /// it, and the one on disk is removed so that the next start rebuilds the index from the log.
    private func markIndexBroken(_ problem: String) {
        let first = lock.withLock { () -> Bool in
            defer { if indexProblem == nil { indexProblem = problem } }
            return indexProblem == nil
        }
        if first { try? FileSystem.remove(indexDirectory + "/" + ChatCheckpoint.fileName) }
    }

    // MARK: Appending

    /// Appends one record durably and applies it; returns the message for a message.
    private func append(id: String, record: MessageRecord) async throws -> (message: Message?, timestamp: Int64) {
        let value: [UInt8]
        switch record {
        case .created(let members, let by): value = MessageRecord.encodeCreated(members: members, by: by ?? "")
        case .message(let sender, let content, let clientID): value = MessageRecord.encodeMessage(sender: sender, content: content, clientID: clientID)
        }
        let timestamp = Int64(Date().timeIntervalSince1970 * 1000)
        var records = RecordBuffer()
        records.append(timestamp: timestamp, key: Array(id.utf8), value: value)
        let result: Result<Message?, LogError> = await withCheckedContinuation { continuation in
            writer.append(records) { [self] result in
                switch result {
                case .success(let ack):
                    let offset = ack.offsets.lowerBound
                    let batch = ack.batches.last { $0.baseOffset <= offset } ?? WrittenBatch(baseOffset: offset, lastOffset: offset, segment: 0, position: 0, size: 0)
                    // The batch's CRC, for the checkpoint's check that it names this log: read back only
                    // when a checkpoint is written (`lastBatch` keeps the place).
                    let message = value.withUnsafeBytes { raw in
                        apply(id: id, value: raw, record: record, timestamp: timestamp, offset: offset,
                              batch: batch.segment, position: batch.position, crc: 0)
                    }
                    flushIndex()
                    if let message, let messageObserver { messageObserver(id, message) }
                    continuation.resume(returning: .success(message))
                    checkpointIfDue()
                case .failure(let error):
                    continuation.resume(returning: .failure(error))
                }
            }
        }
        return (try result.get(), timestamp)
    }

    /// Requests between their check (a pair's conversation, a client id) and their commit.
    private let claims = InFlightClaims<String>()

    /// Creates a conversation of `members` (`ChatRules.members`: repeats dropped, 2 to 256 ids, the
    /// creator among them; `ChatError` otherwise); returns its id, and false for `created` when they are
    /// two users who already have a conversation of exactly the two of them (that one is returned: a chat
    /// client opens "the" chat with a person, whoever asks first). Requests for one pair are decided one
    /// after the other (`InFlightClaims`), so two racing make one.
    public func create(members requested: [String], by creator: String) async throws -> (id: String, created: Bool) {
        let members = try ChatRules.members(requested, creator: creator)
        guard members.count == 2 else { return try await createNew(members: members, by: creator) }
        let pair = Self.pairKey(members)
        return try await claims.holding(["pair\u{0}" + pair]) {
            if let existing = lock.withLock({ pairs[pair].map { metas[Int($0)].id } }) { return (existing, false) }
            return try await createNew(members: members, by: creator)
        }
    }

    private func createNew(members: [String], by creator: String) async throws -> (id: String, created: Bool) {
        var id: String
        repeat {
            id = "conv_" + (0..<12).map { _ in String(Int.random(in: 0..<16), radix: 16) }.joined()
        } while lock.withLock({ numbers[id] != nil })
        _ = try await append(id: id, record: .created(members: members, by: creator))
        return (id, true)
    }

    /// Posts a message; returns its seq and time. With a `clientID` (the sender's own id for the
    /// message, so that it can retry after a lost answer), a message this sender posted to this
    /// conversation with that id within the client-id window is not posted again: its seq and time are
    /// returned, with `repeated`. Sends of one client id racing on two connections are decided one after
    /// the other. The message must keep to `ChatRules.message` and the sender be a member (`ChatError`
    /// otherwise).
    public func post(to id: String, sender: String, content: String, clientID: String? = nil) async throws
        -> (seq: Int, timestamp: Int64, repeated: Bool) {
        try ChatRules.message(content: content, clientID: clientID)
        _ = try Access(chat: self).conversation(id, for: sender).get()
        guard let clientID else {
            let (message, timestamp) = try await append(id: id, record: .message(sender: sender, content: content, clientID: nil))
            return (message?.seq ?? 0, timestamp, false)
        }
        return try await claims.holding(["sent\u{0}\(id)\u{0}\(sender)\u{0}\(clientID)"]) {
            if let sent = try earlier(in: id, sender: sender, clientID: clientID) { return (sent.seq, sent.timestamp, true) }
            let (message, timestamp) = try await append(id: id, record: .message(sender: sender, content: content, clientID: clientID))
            return (message?.seq ?? 0, timestamp, false)
        }
    }

    /// The message `sender` posted to `id` with `clientID` within the window, if any: each candidate of
    /// the fingerprint is read back (through the index) and its sender and client id compared.
    private func earlier(in id: String, sender: String, clientID: String) throws -> (seq: Int, timestamp: Int64)? {
        guard let (number, candidates) = lock.withLock({ () -> (UInt32, [ClientIDWindow.Entry])? in
            guard let number = numbers[id] else { return nil }
            return (number, clientIDs.candidates(ClientIDWindow.fingerprint(conversation: number, sender: sender, clientID: clientID)))
        }), !candidates.isEmpty else { return nil }
        for candidate in candidates {
            let seq = Int(candidate.seq)
            let stored = try readStored(number: number, id: id, seqs: seq...seq)
            if let message = stored.first, message.sender == sender, message.clientID == clientID {
                return (seq, message.timestamp)
            }
        }
        return nil
    }

    // MARK: Reading

    /// The seq of the newest message of `id` (0 when it has none).
    public func lastSeq(of id: String) -> Int {
        lock.withLock { numbers[id].map { metas[Int($0)].lastSeq } ?? 0 }
    }

    /// The members of conversation `id`, or nil if there is none.
    public func members(of id: String) -> [String]? {
        lock.withLock { numbers[id].map { metas[Int($0)].members } }
    }

    /// Which messages a page holds: at most `limit` of them, always in seq order.
    public enum Page: Sendable, Equatable {
        /// The oldest ones with seq > the given one (reading forward from a cursor).
        case after(Int)
        /// The newest ones with seq < the given one (scrolling back from the oldest one shown).
        case before(Int)
        /// The newest ones (a chat opens at the bottom).
        case latest
    }

    /// The seqs of `page` (at most `limit`) among `last` messages, and whether more lie beyond it in its
    /// direction (newer ones for `.after`, older ones for `.before` and `.latest`).
    static func seqs(of page: Page, limit: Int, last: Int) -> (seqs: ClosedRange<Int>?, more: Bool) {
        let limit = max(limit, 0)
        let start: Int, end: Int, more: Bool  // message seq n is at index n - 1: indexes start ..< end
        switch page {
        case .after(let seq):
            start = min(max(seq, 0), last)
            end = min(start + min(limit, last - start), last)
            more = end < last
        case .before(let seq):
            end = min(max(seq - 1, 0), last)
            start = max(end - limit, 0)
            more = start > 0
        case .latest:
            end = last
            start = max(end - limit, 0)
            more = start > 0
        }
        return (start < end ? (start + 1)...end : nil, more)
    }

    /// Writes the JSON array of the messages of `page`, at most `limit`, through `write` (their encoded
    /// bytes, comma-separated); returns whether more lie beyond the page in its direction (newer ones for
    /// `.after`, older ones for `.before` and `.latest`). A page the cache holds (the newest of a
    /// conversation used lately) is written from memory under the lock; any other is read from disk
    /// through the index (outside the lock) and, for `.latest`, kept in the cache. Throws when the disk
    /// read fails (`LogError` for a damaged batch, `StorageError` for an index that does not fit the log).
    public func writeMessagesJSON(of id: String, page: Page, limit: Int, _ write: (UnsafeRawBufferPointer) -> Void) throws -> Bool {
        let plan: (number: UInt32, seqs: ClosedRange<Int>, cached: [Message], last: Int, pages: [UInt32])
        let more: Bool
        lock.lock()
        guard let number = numbers[id] else {
            lock.unlock()
            return false
        }
        let last = metas[Int(number)].lastSeq
        let (seqs, hasMore) = Self.seqs(of: page, limit: limit, last: last)
        more = hasMore
        guard let seqs else {
            lock.unlock()
            return more
        }
        let run = cache.messages(of: number)
        if let run, let first = run.first?.seq, seqs.lowerBound >= first {
            // The memory read: the cache's run ends at the newest message, so it holds the whole page.
            for seq in seqs {
                if seq > seqs.lowerBound { withUnsafeBytes(of: UInt8(44)) { write($0) } }
                run[seq - first].json.withUnsafeBytes(write)
            }
            lock.unlock()
            return more
        }
        let cachedFrom = run?.first?.seq ?? (last + 1)
        plan = (number, seqs, (run ?? []).filter { seqs.contains($0.seq) }, last, metas[Int(number)].pages)
        lock.unlock()
        let fromDisk = try readMessages(number: plan.number, id: id, pages: plan.pages,
                                        seqs: plan.seqs.lowerBound...min(plan.seqs.upperBound, cachedFrom - 1))
        var first = true
        for message in fromDisk + plan.cached {
            if !first { withUnsafeBytes(of: UInt8(44)) { write($0) } }
            first = false
            message.json.withUnsafeBytes(write)
        }
        if case .latest = page {
            // The page a chat opens on: keep it, unless the conversation moved on meanwhile.
            lock.withLock {
                if metas[Int(plan.number)].lastSeq == plan.last { cache.install(fromDisk + plan.cached, for: plan.number) }
            }
        }
        return more
    }

    /// The messages of `page` (at most `limit`) and whether more lie beyond it; as `writeMessagesJSON`.
    public func messages(of id: String, page: Page, limit: Int) throws -> (messages: [Message], hasMore: Bool) {
        lock.lock()
        guard let number = numbers[id] else {
            lock.unlock()
            return ([], false)
        }
        let last = metas[Int(number)].lastSeq
        let pages = metas[Int(number)].pages
        let (seqs, more) = Self.seqs(of: page, limit: limit, last: last)
        let run = cache.messages(of: number) ?? []
        lock.unlock()
        guard let seqs else { return ([], more) }
        let cachedFrom = run.first?.seq ?? (last + 1)
        var messages: [Message] = []
        if seqs.lowerBound < cachedFrom {
            messages = try readMessages(number: number, id: id, pages: pages, seqs: seqs.lowerBound...min(seqs.upperBound, cachedFrom - 1))
        }
        messages += run.filter { seqs.contains($0.seq) }
        return (messages, more)
    }

    /// The messages of `seqs` read from disk (the cache left out), for tests that compare the two.
    func messagesFromDisk(of id: String, seqs: ClosedRange<Int>) throws -> [Message] {
        guard let (number, pages) = lock.withLock({ numbers[id].map { ($0, metas[Int($0)].pages) } }) else { return [] }
        return try readMessages(number: number, id: id, pages: pages, seqs: seqs)
    }

    /// A message as its record holds it.
    struct Stored {
        var seq: Int
        var timestamp: Int64
        var sender: String
        var content: String
        var clientID: String?
        var message: Message { Message(seq: seq, sender: sender, content: content, timestamp: timestamp) }
    }

    private func readMessages(number: UInt32, id: String, pages: [UInt32], seqs: ClosedRange<Int>) throws -> [Message] {
        guard seqs.lowerBound <= seqs.upperBound else { return [] }
        return try readStored(number: number, id: id, pages: pages, seqs: seqs).map(\.message)
    }

    private func readStored(number: UInt32, id: String, seqs: ClosedRange<Int>) throws -> [Stored] {
        let pages = lock.withLock { metas[Int(number)].pages }
        return try readStored(number: number, id: id, pages: pages, seqs: seqs)
    }

    /// Reads `seqs` of conversation `number` through the index: the entries, then each segment's batches
    /// in one coalesced read; every record found is checked to be a message of this conversation.
    private func readStored(number: UInt32, id: String, pages: [UInt32], seqs: ClosedRange<Int>) throws -> [Stored] {
        if let problem = lock.withLock({ indexProblem }) { throw StorageError(description: problem) }
        let segments = lock.withLock { self.segments }
        do {
            let entries = try index.read(conversation: number, id: id, pages: pages, seqs: seqs)
            return try Self.read(entries: entries, seqs: seqs, id: id, segments: segments, reader: reader, indexPath: index.path)
        } catch let inconsistency as MessageIndex.Inconsistency {
            let problem = "\(inconsistency.description); the next start rebuilds the message index from the log"
            markIndexBroken(problem)
            throw StorageError(description: problem)
        }
    }

    /// The messages at `entries` (of seqs `seqs`, in order), read from the log.
    static func read(entries: [MessageIndex.Entry], seqs: ClosedRange<Int>, id: String, segments: [Int64], reader: BatchReader,
                     indexPath: String) throws -> [Stored] {
        var found = [Stored?](repeating: nil, count: entries.count)
        var bySegment: [Int64: [Int64]] = [:]
        for entry in entries {
            let segment = Self.segment(holding: entry.offset, in: segments)
            bySegment[segment, default: []].append(Int64(entry.position))
        }
        let key = Array(id.utf8)
        for (segment, positions) in bySegment.sorted(by: { $0.key < $1.key }) {
            try reader.read(segment: segment, positions: Array(Set(positions)).sorted()) { _, records in
                for record in records {
                    // Entries are in seq order, so in offset order: find the record's.
                    var low = 0, high = entries.count
                    while low < high {
                        let mid = (low + high) / 2
                        if entries[mid].offset < record.offset { low = mid + 1 } else { high = mid }
                    }
                    guard low < entries.count, entries[low].offset == record.offset, found[low] == nil else { continue }
                    let seq = seqs.lowerBound + low
                    guard let recordKey = record.key, recordKey.elementsEqual(key), let value = record.value,
                          case .message(let sender, let content, let clientID)? = MessageRecord.parse(value)
                    else {
                        throw MessageIndex.Inconsistency(description: "\(indexPath): seq \(seq) of conversation \(id) points to offset \(record.offset), which is not a message of it")
                    }
                    found[low] = Stored(seq: seq, timestamp: record.timestamp, sender: sender, content: content, clientID: clientID)
                }
            }
        }
        var out: [Stored] = []
        out.reserveCapacity(found.count)
        for (i, stored) in found.enumerated() {
            guard let stored else {
                let entry = entries[i]
                throw MessageIndex.Inconsistency(description: "\(indexPath): seq \(seqs.lowerBound + i) of conversation \(id) points to offset \(entry.offset) in the batch at byte \(entry.position) of segment \(segment(holding: entry.offset, in: segments)), which does not hold it")
            }
            out.append(stored)
        }
        return out
    }

    /// The base offset of the segment holding `offset`.
    static func segment(holding offset: Int64, in segments: [Int64]) -> Int64 {
        var low = 0, high = segments.count
        while low < high {
            let mid = (low + high) / 2
            if segments[mid] <= offset { low = mid + 1 } else { high = mid }
        }
        return low == 0 ? 0 : segments[low - 1]
    }

    /// The conversations `user` is a member of, the most recently active first (ties by id).
    public func conversations(of user: String) -> [Summary] {
        lock.withLock {
            (memberships[user] ?? []).map { number -> Summary in
                let meta = metas[Int(number)]
                return Summary(id: meta.id, members: meta.members, lastMessage: meta.newest, activity: meta.newest?.timestamp ?? meta.createdAt)
            }
        }.sorted { $0.activity != $1.activity ? $0.activity > $1.activity : $0.id < $1.id }
    }

    /// Whether `a` and `b` are members of a common conversation (or the same user).
    public func shareAConversation(_ a: String, _ b: String) -> Bool {
        if a == b { return true }
        return lock.withLock {
            guard let mine = memberships[a], let theirs = memberships[b] else { return false }
            // Both ascending: a merge.
            var i = 0, j = 0
            while i < mine.count && j < theirs.count {
                if mine[i] == theirs[j] { return true }
                if mine[i] < theirs[j] { i += 1 } else { j += 1 }
            }
            return false
        }
    }

    /// What the store holds in memory, for `presence serve`'s log and the benchmarks.
    public struct Statistics: Sendable {
        public var conversations: Int
        public var messages: Int
        public var cachedConversations: Int
        public var cacheBytes: Int
        public var cacheEvictions: Int
        public var clientIDs: Int
    }

    public var statistics: Statistics {
        lock.withLock {
            Statistics(conversations: metas.count, messages: metas.reduce(0) { $0 + $1.lastSeq }, cachedConversations: cache.count,
                       cacheBytes: cache.used, cacheEvictions: cache.evictions, clientIDs: clientIDs.count)
        }
    }

    // MARK: Checkpoints

    /// The checkpoint of the state applied so far (commit thread, or init). The metadata is copied (copy
    /// on write: the arrays are shared until the next change) and encoded by the caller.
    private func encodeCheckpoint() -> ChatCheckpoint {
        let (metas, clientIDs) = lock.withLock { (self.metas, self.clientIDs) }
        var mark = lastBatch
        if var known = mark {
            // The live path does not keep CRCs: read the batch's back once, here.
            try? reader.read(segment: known.segment, positions: [known.position]) { header, _ in known.crc = header.crc }
            mark = known
        }
        return ChatCheckpoint(
            nextOffset: appliedEnd, lastBatch: appliedEnd == 0 ? nil : mark, indexGeneration: index.generation, indexEnd: index.end,
            newest: clientIDs.newest, clientIDWindow: options.clientIDWindow,
            conversations: metas.map { meta in
                ChatCheckpoint.Conversation(id: meta.id, members: meta.members, createdAt: meta.createdAt, lastSeq: meta.lastSeq,
                                            lastTimestamp: meta.lastTimestamp, pages: meta.pages, newestJSON: meta.newest?.json)
            },
            clientIDs: clientIDs.all)
    }

    /// Makes the index durable, then replaces the checkpoint file with `checkpoint`.
    private func writeCheckpoint(_ checkpoint: ChatCheckpoint) throws {
        guard lock.withLock({ indexProblem == nil }) else { return }
        try index.sync()
        let file = try AtomicFileWriter(path: indexDirectory + "/" + ChatCheckpoint.fileName)
        let bytes = checkpoint.encoded()
        var failure: LogError?
        bytes.withUnsafeBytes { raw in
            do throws(LogError) { try file.write(raw) } catch { failure = error }
        }
        if let failure { throw failure }
        try file.commit()
    }

    /// On the commit thread after each request: starts a checkpoint in the background when one is due
    /// and none is being written.
    private func checkpointIfDue() {
        recordsSinceCheckpoint += 1
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - lastCheckpoint.uptimeNanoseconds) / 1e9
        guard recordsSinceCheckpoint >= options.checkpointEveryRecords || elapsed >= options.checkpointEverySeconds else { return }
        guard lock.withLock({ () -> Bool in
            if checkpointRunning { return false }
            checkpointRunning = true
            return true
        }) else { return }
        recordsSinceCheckpoint = 0
        lastCheckpoint = DispatchTime.now()
        let checkpoint = UnsafeTransfer(encodeCheckpoint())
        checkpointQueue.async { [self] in
            do { try writeCheckpoint(checkpoint.value) } catch {
                // The next one, or `close`, tries again; a restart replays more of the log meanwhile.
            }
            lock.withLock { checkpointRunning = false }
        }
    }

    /// Writes a checkpoint now (between commits: call it from the writer's completion or when nothing is
    /// being posted), for tests and tools.
    public func checkpoint() throws {
        checkpointQueue.sync {}
        try writeCheckpoint(encodeCheckpoint())
    }

    /// Commits what is pending, closes the log cleanly and writes a checkpoint, so that the next start
    /// reads nothing of the log.
    public func close() throws {
        try writer.close()
        checkpointQueue.sync {}
        try writeCheckpoint(encodeCheckpoint())
    }
}

/// A value handed to another thread that alone uses it from then on.
private struct UnsafeTransfer<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
