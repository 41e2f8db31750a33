import Foundation
import SegmentLog

/// Reading: the page a chat opens on from the cache, older pages from disk through the message index,
/// the inbox and who shares a conversation with whom.
extension ConversationStore {
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

    /// Whether `page` of `id` would be answered from memory (the cache holds it, or it is empty): the
    /// snapshot's fast path, on an event loop, answers only those and hands the rest, which read the disk,
    /// to the route. A hint: a message posted meanwhile may move the page.
    public func pageIsInMemory(of id: String, page: Page, limit: Int) -> Bool {
        lock.withLock {
            guard let number = numbers[id] else { return true }
            guard let seqs = Self.seqs(of: page, limit: limit, last: metas[Int(number)].lastSeq).seqs else { return true }
            guard let first = cache.firstSeq(of: number) else { return false }
            return seqs.lowerBound >= first
        }
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

    func readMessages(number: UInt32, id: String, pages: [UInt32], seqs: ClosedRange<Int>) throws -> [Message] {
        guard seqs.lowerBound <= seqs.upperBound else { return [] }
        return try readStored(number: number, id: id, pages: pages, seqs: seqs).map(\.message)
    }

    func readStored(number: UInt32, id: String, seqs: ClosedRange<Int>) throws -> [Stored] {
        let pages = lock.withLock { metas[Int(number)].pages }
        return try readStored(number: number, id: id, pages: pages, seqs: seqs)
    }

    /// Reads `seqs` of conversation `number` through the index: the entries, then each segment's batches
    /// in one coalesced read; every record found is checked to be a message of this conversation.
    func readStored(number: UInt32, id: String, pages: [UInt32], seqs: ClosedRange<Int>) throws -> [Stored] {
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
}
