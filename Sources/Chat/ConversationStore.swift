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
    let lock = NSLock()

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

    var metas: [Meta] = []
    var numbers: [String: UInt32] = [:]
    /// Each user's conversations, by number, ascending.
    var memberships: [String: [UInt32]] = [:]
    /// The first conversation of exactly two members, by the pair (sorted, joined by NUL).
    var pairs: [String: UInt32] = [:]
    var clientIDs: ClientIDWindow
    /// The log's segments (base offsets, ascending).
    var segments: [Int64] = []
    var cache: MessageCache
    /// Set when the index was found not to fit the log, or could not be written: reads through it fail
    /// (naming the problem) until a restart rebuilds it, and no checkpoint names it.
    var indexProblem: String?

    // The commit thread's.
    let index: MessageIndex
    var appliedEnd: Int64 = 0
    var lastBatch: ChatCheckpoint.BatchMark?
    var recordsSinceCheckpoint = 0
    var lastCheckpoint = DispatchTime.now()
    let checkpointQueue = DispatchQueue(label: "presencelog-chat-checkpoint")
    var checkpointRunning = false  // under `lock`

    public let options: Options
    public let writer: LogWriter
    let reader: BatchReader
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

    /// The value of a `created` record, as the store writes it (`MessageRecord`): for tools that write a
    /// messages log directly (the benchmark's generator).
    public static func createdRecordValue(members: [String], by creator: String) -> [UInt8] {
        MessageRecord.encodeCreated(members: members, by: creator)
    }

    /// The value of a `message` record, as the store writes it (`MessageRecord`).
    public static func messageRecordValue(sender: String, content: String, clientID: String?) -> [UInt8] {
        MessageRecord.encodeMessage(sender: sender, content: content, clientID: clientID)
    }

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

        struct Fields: Decodable { var sender: String; var content: String }
        var fields: Fields? { try? JSONDecoder().decode(Fields.self, from: Data(json)) }
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

    /// What applying one record did: a message's seq and time, `repeated` when the record repeated a
    /// message its sender had already posted with the same client id (it is in the log, but no message).
    public struct Applied: Sendable, Equatable {
        public var seq: Int
        public var timestamp: Int64
        public var repeated: Bool
    }

    /// Where the store's records go instead of straight to the local log: in cluster mode, the cluster's
    /// chat stream, whose every message each node hands to `commit` (set once, before the server starts).
    public var replicate: (@Sendable (RecordBuffer) async throws -> [Applied?])?

    /// Requests between their check (a pair's conversation, a client id) and their commit.
    let claims = InFlightClaims<String>()

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
        let restored = Self.restore(indexDirectory: indexDirectory, logEnd: log.endOffset, reader: reader, clientIDWindow: options.clientIDWindow)
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
                          offset: record.offset, batch: info.segment.baseOffset, position: info.position, crc: info.header.crc, live: false)
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
    struct Restored {
        var checkpoint: ChatCheckpoint?
        var index: MessageIndex?
        var reason: String?
    }

    /// The checkpoint in `indexDirectory` and the index it names, when both fit the log (which ends at
    /// `logEnd`, its batches read through `reader`) and the checkpoint kept client ids for at least
    /// `clientIDWindow` ms; else why not. `readOnly` opens the index without cutting what lies past the
    /// checkpoint (for readers beside a running server).
    static func restore(indexDirectory: String, logEnd: Int64, reader: BatchReader, clientIDWindow: Int64, readOnly: Bool = false) -> Restored {
        let path = indexDirectory + "/" + ChatCheckpoint.fileName
        guard FileSystem.exists(path) else { return Restored(reason: "no checkpoint") }
        do {
            let checkpoint = try ChatCheckpoint.decode(try File.openForReading(path).readAll(), path: path)
            guard checkpoint.nextOffset <= logEnd else {
                return Restored(reason: "the checkpoint covers the log up to offset \(checkpoint.nextOffset), but the log ends at \(logEnd)")
            }
            guard checkpoint.clientIDWindow >= clientIDWindow else {
                return Restored(reason: "the checkpoint kept client ids for \(checkpoint.clientIDWindow) ms, less than the \(clientIDWindow) ms asked for")
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
                                              end: checkpoint.indexEnd, readOnly: readOnly)
            return Restored(checkpoint: checkpoint, index: index)
        } catch {
            return Restored(reason: "\(error)")
        }
    }

    func load(_ checkpoint: ChatCheckpoint) {
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

    func noteMembers(_ members: [String], of conversation: UInt32) {
        for member in members { memberships[member, default: []].append(conversation) }
        if members.count == 2 {
            let pair = Self.pairKey(members)
            if pairs[pair] == nil { pairs[pair] = conversation }
        }
    }

    static func pairKey(_ members: [String]) -> String { members.sorted().joined(separator: "\u{0}") }

    // MARK: Applying records (commit thread, or init)

    /// Applies one record (at start-up, or on the commit thread) at `offset`, in the batch at `position` of
    /// segment `batch`; returns the new message, if it was one. A record this store cannot read is
    /// skipped (the log is checked by its CRCs; a value from a newer build would be kept in the log).
    /// A message whose client id its sender already used in the conversation within the client-id window is
    /// a repeat: it is in the log but is no message (no seq), decided here, in log order, so that every
    /// replica and every replay decides alike (in cluster mode two nodes can each append one send of a
    /// retried message). `live`: a new record (its message goes into the cache), not a replay.
    func apply(id: String, value: UnsafeRawBufferPointer, record known: MessageRecord?, timestamp: Int64,
               offset: Int64, batch segment: Int64, position: Int64, crc: UInt32, live: Bool) -> (applied: Applied, message: Message?)? {
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
            if let clientID, let earlier = repeatOf(number: number, id: id, sender: sender, clientID: clientID) {
                lock.withLock { clientIDs.observe(timestamp) }
                return (Applied(seq: earlier.seq, timestamp: earlier.timestamp, repeated: true), nil)
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
                if live { cache.append(message, to: number) }
                clientIDs.observe(timestamp)
                if let clientID {
                    clientIDs.record(ClientIDWindow.fingerprint(conversation: number, sender: sender, clientID: clientID),
                                     ClientIDWindow.Entry(seq: UInt32(truncatingIfNeeded: seq), timestamp: timestamp))
                }
            }
            return (Applied(seq: seq, timestamp: timestamp, repeated: false), message)
        }
    }

    /// The earlier message of this key within the window, if any (commit thread, or init): the staged
    /// index entries are written first, so that the candidates can be read back through the index.
    private func repeatOf(number: UInt32, id: String, sender: String, clientID: String) -> (seq: Int, timestamp: Int64)? {
        let fingerprint = ClientIDWindow.fingerprint(conversation: number, sender: sender, clientID: clientID)
        guard !lock.withLock({ clientIDs.candidates(fingerprint).isEmpty }) else { return nil }
        flushIndex()
        // A read that fails (a damaged index: reads fail until a restart rebuilds it) cannot confirm: the
        // restart's replay decides again from the log.
        return try? earlier(in: id, sender: sender, clientID: clientID)
    }

    /// Writes the staged index entries; a failure leaves the index unusable until a restart rebuilds it.
    func flushIndex() {
        do {
            try index.flush()
        } catch {
            markIndexBroken("\(index.path): could not be written (\(error)); the next start rebuilds it from the log")
        }
    }

    /// Notes that the index cannot be trusted: reads through it fail with `problem`, no checkpoint names
    /// it, and the one on disk is removed so that the next start rebuilds the index from the log.
    func markIndexBroken(_ problem: String) {
        let first = lock.withLock { () -> Bool in
            defer { if indexProblem == nil { indexProblem = problem } }
            return indexProblem == nil
        }
        if first { try? FileSystem.remove(indexDirectory + "/" + ChatCheckpoint.fileName) }
    }
}
