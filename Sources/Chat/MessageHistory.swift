import Foundation
import SegmentLog

/// One conversation's messages read from a data directory without opening it for writing (`presence
/// messages`), so it works beside a running server and on a copy of a crashed one's files.
///
/// The store's own caches do the work when they fit the log: the checkpoint gives the conversation's
/// members, its last seq at the checkpoint and where its index pages are; a page up to that seq is read
/// through the index (one read of entries, one coalesced read of the log per segment); the log after the
/// checkpoint is scanned for the rest. Without a checkpoint that fits, or with an index entry that does
/// not fit the log, the whole log is scanned instead, keeping only the page's messages. Either way every
/// batch read is checked (CRC, records) and the seqs are the ones the server gives.
public enum MessageHistory {
    /// A page of one conversation and how it was found.
    public struct Result: Sendable {
        public var members: [String]
        /// The conversation's newest seq (its message count).
        public var lastSeq: Int
        /// The page, in seq order (the API's message objects, `Message.json`).
        public var messages: [ConversationStore.Message]
        /// Whether more lie beyond the page in its direction (as the API's `has_more`).
        public var hasMore: Bool
        /// How it was read, for the user: through the index and how much log after it, or a whole scan and why.
        public var how: String
    }

    /// The page `page` (at most `limit` messages) of conversation `id` in data directory `data`; nil when
    /// the log has no conversation of that id. Throws `LogError` for a log it cannot read (`.corrupt`
    /// naming the file and byte for a damaged batch).
    public static func read(data: String, conversation id: String, page: ConversationStore.Page, limit: Int) throws -> Result? {
        let logDirectory = data + "/" + ConversationStore.logName
        guard FileSystem.isDirectory(logDirectory) else {
            throw LogError(.invalidArgument, "no messages log at '\(logDirectory)' (has a server with conversations run on this data directory?)")
        }
        let logReader = try LogReader(directory: logDirectory)
        let reader = BatchReader(directory: logDirectory)
        let indexDirectory = data + "/" + ConversationStore.indexDirectoryName
        // The batch check proves the log holds the checkpoint's last offset: no end offset is needed.
        let restored = ConversationStore.restore(indexDirectory: indexDirectory, logEnd: .max, reader: reader, clientIDWindow: 0, readOnly: true)
        if let checkpoint = restored.checkpoint, let index = restored.index {
            do {
                if let found = try read(id: id, page: page, limit: limit, from: checkpoint, index: index, logReader: logReader, reader: reader) {
                    return found
                }
                return try scan(id: id, page: page, limit: limit, window: checkpoint.clientIDWindow, logReader: logReader,
                                why: "messages with client ids after the checkpoint (whether one repeats an earlier one is decided in log order): read by scanning the whole log")
            } catch let inconsistency as MessageIndex.Inconsistency {
                return try scan(id: id, page: page, limit: limit, window: checkpoint.clientIDWindow, logReader: logReader,
                                why: "\(inconsistency.description): read by scanning the whole log (run `presence audit`)")
            }
        }
        return try scan(id: id, page: page, limit: limit, window: ConversationStore.Options().clientIDWindow, logReader: logReader,
                        why: "\(restored.reason ?? "no checkpoint"): read by scanning the whole log")
    }

    /// The page through the index; nil (a full scan is needed) when the log after the checkpoint holds a
    /// message of this conversation with a client id, which may be a repeat of one before the checkpoint.
    /// `.some(nil)`: no such conversation.
    private static func read(id: String, page: ConversationStore.Page, limit: Int, from checkpoint: ChatCheckpoint, index: MessageIndex,
                             logReader: LogReader, reader: BatchReader) throws -> Result?? {
        let number = checkpoint.conversations.firstIndex { $0.id == id }
        let known = number.map { checkpoint.conversations[$0] }
        var members = known?.members
        let indexed = known?.lastSeq ?? 0
        // The log after the checkpoint: this conversation's messages there (usually few).
        var tail: [ConversationStore.Stored] = []
        var seq = indexed
        var clientIDsInTail = false
        let key = Array(id.utf8)
        let summary = try logReader.forEachRecord(from: .offset(checkpoint.nextOffset)) { record in
            guard let recordKey = record.key, recordKey.elementsEqual(key), let value = record.value,
                  let parsed = MessageRecord.parse(value) else { return true }
            switch parsed {
            case .created(let list, _):
                if members == nil { members = list }
            case .message(let sender, let content, let clientID):
                guard members != nil else { return true }
                if clientID != nil {
                    clientIDsInTail = true
                    return false
                }
                seq += 1
                tail.append(.init(seq: seq, timestamp: record.timestamp, sender: sender, content: content, clientID: clientID))
            }
            return true
        }
        if clientIDsInTail { return nil }
        guard let members else { return .some(nil) }
        let (seqs, more) = ConversationStore.seqs(of: page, limit: limit, last: seq)
        var messages: [ConversationStore.Message] = []
        if let seqs, let number, let known, seqs.lowerBound <= indexed {
            let fromIndex = seqs.lowerBound...min(seqs.upperBound, indexed)
            let entries = try index.read(conversation: UInt32(number), id: id, pages: known.pages, seqs: fromIndex)
            messages = try ConversationStore.read(entries: entries, seqs: fromIndex, id: id, segments: logReader.segments.map(\.baseOffset),
                                                  reader: reader, indexPath: index.path).map(\.message)
        }
        if let seqs { messages += tail.filter { seqs.contains($0.seq) }.map(\.message) }
        let after = summary.records == 0 ? "nothing after it" : "\(summary.records) records after it scanned"
        return Result(members: members, lastSeq: seq, messages: messages, hasMore: more,
                      how: "read through the message index (checkpoint at offset \(checkpoint.nextOffset); \(after))")
    }

    /// The page found by reading the whole log, keeping only the messages that can be on it.
    private static func scan(id: String, page: ConversationStore.Page, limit: Int, window: Int64, logReader: LogReader,
                             why: String) throws -> Result? {
        var members: [String]?
        var seq = 0
        // Repeats, as the store decides them: a (sender, client id) used within the window before this record.
        var newest = Int64.min
        var sent: [String: Int64] = [:]
        var kept: [ConversationStore.Stored] = []
        let limit = max(limit, 0)
        let key = Array(id.utf8)
        try logReader.forEachRecord { record in
            defer { newest = max(newest, record.timestamp) }
            guard let recordKey = record.key, recordKey.elementsEqual(key), let value = record.value,
                  let parsed = MessageRecord.parse(value) else { return true }
            switch parsed {
            case .created(let list, _):
                if members == nil { members = list }
            case .message(let sender, let content, let clientID):
                guard members != nil else { return true }
                if let clientID {
                    let full = sender + "\u{0}" + clientID
                    if let earlier = sent[full], newest != Int64.min, earlier >= newest &- window { return true }
                    sent[full] = record.timestamp
                }
                seq += 1
                let stored = ConversationStore.Stored(seq: seq, timestamp: record.timestamp, sender: sender, content: content, clientID: clientID)
                switch page {
                case .after(let after):
                    if seq > after && seq - max(after, 0) <= limit { kept.append(stored) }
                case .before(let before):
                    if seq < before { kept.append(stored) }
                case .latest:
                    kept.append(stored)
                }
                // The newest `limit` are the most a `.before` or `.latest` page can hold: drop older ones in chunks.
                if kept.count > 2 * limit + 1024 { kept.removeFirst(kept.count - limit) }
            }
            return true
        }
        guard let members else { return nil }
        let (seqs, more) = ConversationStore.seqs(of: page, limit: limit, last: seq)
        let messages = seqs.map { seqs in kept.filter { seqs.contains($0.seq) }.map(\.message) } ?? []
        return Result(members: members, lastSeq: seq, messages: messages, hasMore: more, how: why)
    }
}
