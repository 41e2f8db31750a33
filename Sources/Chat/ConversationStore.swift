import Foundation
import Presence
import SegmentLog

/// Conversations and their messages, event-sourced in the log `messages/` (same engine as presence).
///
/// Each record's key is the conversation id; its value a JSON object, one of:
///
///     {"type":"created","members":["alice","bob"],"by":"alice"}
///     {"type":"message","sender":"alice","content":"hey"}          ("client_id":"…" when the sender gave one)
///
/// and its timestamp the server's time of the request (ms). A message's `seq` is its position among
/// the conversation's messages in log order, counted from 1, so the log need not store it and a
/// replay numbers them the same. The in-memory store is rebuilt from the log at start and updated on
/// the writer's commit thread, in log order, before the request is answered.
public final class ConversationStore: @unchecked Sendable {
    // @unchecked: `conversations` and `memberships` are touched only under `lock`.
    private let lock = NSLock()
    private var conversations: [String: Conversation] = [:]
    private var memberships: [String: Set<String>] = [:]
    /// The first conversation of exactly two members, by the pair (sorted): creating it again returns it.
    private var pairs: [[String]: String] = [:]
    /// Messages posted with a client id, by conversation, sender and client id: a retry gets the seq
    /// and time of the first (rebuilt from the log, so this holds across restarts and reconnects).
    private var sentByClientID: [SentKey: (seq: Int, timestamp: Int64)] = [:]

    struct SentKey: Hashable {
        let conversation: String
        let sender: String
        let clientID: String
    }
    public let writer: LogWriter
    /// Told of each new message once it is durable, in log order, on the commit thread (set once,
    /// before the server starts).
    public var messageObserver: (@Sendable (_ conversation: String, _ message: Message) -> Void)?

    public static let logName = "messages"

    public struct Message: Sendable, Equatable {
        public var seq: Int
        public var sender: String
        public var content: String
        public var timestamp: Int64
        /// `{"seq":..,"sender":..,"content":..,"ts":".."}`, encoded once: every snapshot that includes the
        /// message copies these bytes.
        public var json: [UInt8]

        init(seq: Int, sender: String, content: String, timestamp: Int64) {
            self.seq = seq
            self.sender = sender
            self.content = content
            self.timestamp = timestamp
            var out: [UInt8] = Array("{\"seq\":\(seq),\"sender\":".utf8)
            EventJSON.appendString(sender, to: &out)
            out.append(contentsOf: ",\"content\":".utf8)
            EventJSON.appendString(content, to: &out)
            out.append(contentsOf: ",\"ts\":\"".utf8)
            Timestamp.append(timestamp, to: &out)
            out.append(contentsOf: "\"}".utf8)
            json = out
        }
    }

    struct Conversation {
        var members: [String]
        var messages: [Message] = []
        /// When it was created (the record's time, ms).
        var createdAt: Int64 = 0
    }

    /// One of a user's conversations, as the inbox shows it.
    public struct Summary: Sendable {
        public var id: String
        public var members: [String]
        public var lastMessage: Message?
        /// The last message's time, else the creation time (ms): the inbox's order.
        public var activity: Int64
    }

    /// Rebuilds the store from the messages log and starts its writer.
    public init(directory: DataDirectory, configuration: LogConfiguration, report: (String) -> Void) throws {
        let log = try directory.openLog(Self.logName, configuration: configuration, report: report)
        writer = LogWriter(log: log)
        // The writer only appends after the last record; reading what is already there is safe.
        let reader = try LogReader(directory: log.directory)
        try reader.forEachRecord { record in
            guard let key = record.key, let value = record.value else { return true }
            apply(id: String(decoding: key, as: UTF8.self), value: Array(value), timestamp: record.timestamp)
            return true
        }
    }

    /// A record of the messages log (its value; the key is the conversation id).
    struct Record: Codable {
        var type: String
        var members: [String]?
        var by: String?
        var sender: String?
        var content: String?
        var clientID: String?

        enum CodingKeys: String, CodingKey { case type, members, by, sender, content, clientID = "client_id" }

        static func created(members: [String], by creator: String) -> Record { Record(type: "created", members: members, by: creator) }
        static func message(sender: String, content: String, clientID: String?) -> Record {
            Record(type: "message", sender: sender, content: content, clientID: clientID)
        }
    }

    /// What applying one record did: a message's seq and time, `repeated` when the record repeated a
    /// message its sender had already posted with the same client id (it is in the log, but no message).
    public struct Applied: Sendable, Equatable {
        public var seq: Int
        public var timestamp: Int64
        public var repeated: Bool
    }

    /// Applies one record (at start-up, or on the commit thread); returns what it did to messages, if it
    /// was one. A record this store cannot read is skipped (the log is checked by its CRCs; a value from a
    /// newer build would be kept in the log, not lost). A message whose client id its sender already used
    /// in the conversation is a repeat, decided here, in log order, so that every replica and every
    /// replay decides alike (in cluster mode two nodes can each append one send of a retried message).
    @discardableResult
    private func apply(id: String, value: [UInt8], timestamp: Int64) -> Applied? {
        guard let record = try? JSONDecoder().decode(Record.self, from: Data(value)) else { return nil }
        switch record.type {
        case "created":
            guard let members = record.members, conversations[id] == nil else { return nil }
            conversations[id] = Conversation(members: members, createdAt: timestamp)
            for member in members { memberships[member, default: []].insert(id) }
            if members.count == 2, pairs[members.sorted()] == nil { pairs[members.sorted()] = id }
            return nil
        case "message":
            guard let sender = record.sender, let content = record.content, conversations[id] != nil else { return nil }
            if let clientID = record.clientID, let sent = sentByClientID[SentKey(conversation: id, sender: sender, clientID: clientID)] {
                return Applied(seq: sent.seq, timestamp: sent.timestamp, repeated: true)
            }
            let seq = (conversations[id]?.messages.count ?? 0) + 1
            conversations[id]?.messages.append(Message(seq: seq, sender: sender, content: content, timestamp: timestamp))
            if let clientID = record.clientID {
                sentByClientID[SentKey(conversation: id, sender: sender, clientID: clientID)] = (seq, timestamp)
            }
            return Applied(seq: seq, timestamp: timestamp, repeated: false)
        default:
            return nil
        }
    }

    /// Where the store's records go instead of straight to the local log: in cluster mode, the cluster's
    /// chat stream, whose every message each node hands to `commit` (set once, before the server starts).
    public var replicate: (@Sendable (RecordBuffer) async throws -> [Applied?])?

    /// Appends one record durably and applies it; returns what it did for a message.
    private func append(id: String, record: Record) async throws -> Applied? {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let value = Array(try encoder.encode(record))
        var records = RecordBuffer()
        records.append(timestamp: Int64(Date().timeIntervalSince1970 * 1000), key: Array(id.utf8), value: value)
        let applied = if let replicate { try await replicate(records) } else { try await commit(records) }
        return applied.first ?? nil
    }

    /// Appends `records` to the local messages log, then applies them in log order on the commit thread
    /// and tells the observer of each new message; returns what each did. The single node's path, and
    /// what every node of a cluster does with each message of the chat stream.
    public func commit(_ records: RecordBuffer) async throws -> [Applied?] {
        let result: Result<[Applied?], LogError> = await withCheckedContinuation { continuation in
            writer.append(records) { [self] result in
                switch result {
                case .success:
                    var applied: [Applied?] = []
                    var new: [(String, Message)] = []
                    lock.lock()
                    for index in 0..<records.count {
                        records.withRecord(at: index) { key, value in
                            let id = key.map { String(decoding: $0, as: UTF8.self) } ?? ""
                            let outcome = apply(id: id, value: Array(value), timestamp: records.timestamp(at: index))
                            applied.append(outcome)
                            if let outcome, !outcome.repeated, let message = conversations[id]?.messages.last { new.append((id, message)) }
                        }
                    }
                    lock.unlock()
                    if let messageObserver { for (id, message) in new { messageObserver(id, message) } }
                    continuation.resume(returning: .success(applied))
                case .failure(let error):
                    continuation.resume(returning: .failure(error))
                }
            }
        }
        return try result.get()
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
        let pair = members.sorted()
        return try await claims.holding(["pair\u{0}" + pair.joined(separator: "\u{0}")]) {
            if let existing = lock.withLock({ pairs[pair] }) { return (existing, false) }
            return try await createNew(members: members, by: creator)
        }
    }

    private func createNew(members: [String], by creator: String) async throws -> (id: String, created: Bool) {
        var id: String
        repeat {
            id = "conv_" + (0..<12).map { _ in String(Int.random(in: 0..<16), radix: 16) }.joined()
        } while lock.withLock({ conversations[id] != nil })
        _ = try await append(id: id, record: .created(members: members, by: creator))
        // In cluster mode a conversation of the same pair created on another node at the same moment may
        // have come first in the stream: then that one is "the" conversation of the two.
        if members.count == 2, let first = lock.withLock({ pairs[members.sorted()] }), first != id { return (first, false) }
        return (id, true)
    }

    /// Posts a message; returns its seq and time. With a `clientID` (the sender's own id for the
    /// message, so that it can retry after a lost answer), a message this sender already posted to this
    /// conversation with that id is not posted again: its seq and time are returned, with `repeated`.
    /// Sends of one client id racing on two connections are decided one after the other.
    /// The message must keep to `ChatRules.message` and the sender be a member (`ChatError` otherwise).
    public func post(to id: String, sender: String, content: String, clientID: String? = nil) async throws
        -> (seq: Int, timestamp: Int64, repeated: Bool) {
        try ChatRules.message(content: content, clientID: clientID)
        _ = try Access(chat: self).conversation(id, for: sender).get()
        guard let clientID else {
            let applied = try await append(id: id, record: .message(sender: sender, content: content, clientID: nil))
            return (applied?.seq ?? 0, applied?.timestamp ?? 0, false)
        }
        return try await claims.holding(["sent\u{0}\(id)\u{0}\(sender)\u{0}\(clientID)"]) {
            if let sent = lock.withLock({ sentByClientID[SentKey(conversation: id, sender: sender, clientID: clientID)] }) {
                return (sent.seq, sent.timestamp, true)
            }
            let applied = try await append(id: id, record: .message(sender: sender, content: content, clientID: clientID))
            return (applied?.seq ?? 0, applied?.timestamp ?? 0, applied?.repeated ?? false)
        }
    }

    /// The seq of the newest message of `id` (0 when it has none).
    public func lastSeq(of id: String) -> Int {
        lock.withLock { conversations[id]?.messages.count ?? 0 }
    }

    /// The members of conversation `id`, or nil if there is none.
    public func members(of id: String) -> [String]? {
        lock.withLock { conversations[id]?.members }
    }

    /// Messages with seq > `afterSeq`, at most `limit`, and whether more follow.
    public func messages(of id: String, afterSeq: Int, limit: Int) -> (messages: [Message], hasMore: Bool) {
        lock.withLock {
            guard let all = conversations[id]?.messages else { return ([], false) }
            let start = min(max(afterSeq, 0), all.count)
            let end = min(start + limit, all.count)
            return (Array(all[start..<end]), end < all.count)
        }
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

    /// Writes the JSON array of the messages of `page`, at most `limit`, through `write` (their encoded
    /// bytes, under the lock, without copying the messages); returns whether more lie beyond the page
    /// in its direction (newer ones for `.after`, older ones for `.before` and `.latest`).
    public func writeMessagesJSON(of id: String, page: Page, limit: Int, _ write: (UnsafeRawBufferPointer) -> Void) -> Bool {
        lock.withLock {
            guard let all = conversations[id]?.messages else {
                write(UnsafeRawBufferPointer(start: nil, count: 0))
                return false
            }
            // Message seq n is at index n - 1.
            let start: Int, end: Int, more: Bool
            switch page {
            case .after(let seq):
                start = min(max(seq, 0), all.count)
                end = min(start + limit, all.count)
                more = end < all.count
            case .before(let seq):
                end = min(max(seq - 1, 0), all.count)
                start = max(end - limit, 0)
                more = start > 0
            case .latest:
                end = all.count
                start = max(end - limit, 0)
                more = start > 0
            }
            for index in start..<end {
                if index > start { withUnsafeBytes(of: UInt8(44)) { write($0) } }
                all[index].json.withUnsafeBytes(write)
            }
            return more
        }
    }

    /// The conversations `user` is a member of, the most recently active first (ties by id).
    public func conversations(of user: String) -> [Summary] {
        lock.withLock {
            (memberships[user] ?? []).compactMap { id -> Summary? in
                guard let conversation = conversations[id] else { return nil }
                let last = conversation.messages.last
                return Summary(id: id, members: conversation.members, lastMessage: last, activity: last?.timestamp ?? conversation.createdAt)
            }
        }.sorted { $0.activity != $1.activity ? $0.activity > $1.activity : $0.id < $1.id }
    }

    /// Whether `a` and `b` are members of a common conversation (or the same user).
    public func shareAConversation(_ a: String, _ b: String) -> Bool {
        if a == b { return true }
        return lock.withLock {
            guard let mine = memberships[a], let theirs = memberships[b] else { return false }
            return !mine.isDisjoint(with: theirs)
        }
    }
}
