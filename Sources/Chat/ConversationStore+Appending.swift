import Foundation
import Presence
import SegmentLog

/// Appending: creating a conversation (a pair's chat once), posting a message (a client id's repeat
/// answered with the first), and the commit path every node uses, which writes the records and applies
/// them on the log writer's commit thread before anyone is answered.
extension ConversationStore {
    /// Appends one record durably and applies it; returns the message for a message.
    func append(id: String, record: MessageRecord) async throws -> Applied? {
        let records = Self.records(id: id, record)
        let applied = if let replicate { try await replicate(records) } else { try await commit(records) }
        return applied.first ?? nil
    }

    /// `record` of conversation `id`, at the time of now, as the log holds it.
    static func records(id: String, _ record: MessageRecord) -> RecordBuffer {
        let value: [UInt8]
        switch record {
        case .created(let members, let by): value = MessageRecord.encodeCreated(members: members, by: by ?? "")
        case .message(let sender, let content, let clientID): value = MessageRecord.encodeMessage(sender: sender, content: content, clientID: clientID)
        }
        var records = RecordBuffer()
        records.append(timestamp: Int64(Date().timeIntervalSince1970 * 1000), key: Array(id.utf8), value: value)
        return records
    }

    /// Appends `records` to the local messages log, then applies them in log order on the commit thread
    /// (each indexed where its batch went) and tells the observer of each new message; returns what each
    /// did. The single node's write path, and what every node of a cluster does with each message of the
    /// chat stream.
    public func commit(_ records: RecordBuffer) async throws -> [Applied?] {
        let result: Result<[Applied?], LogError> = await withCheckedContinuation { continuation in
            commit(records) { continuation.resume(returning: $0) }
        }
        return try result.get()
    }

    /// `commit` answering through `completion`, on the commit thread, once the records are durable and
    /// applied (or failed).
    public func commit(_ records: RecordBuffer, completion: @escaping @Sendable (Result<[Applied?], LogError>) -> Void) {
        writer.append(records) { [self] result in
            switch result {
            case .success(let ack):
                var applied: [Applied?] = []
                var new: [(String, Message)] = []
                for index in 0..<records.count {
                    let offset = ack.offsets.lowerBound + Int64(index)
                    let batch = ack.batches.last { $0.baseOffset <= offset }
                        ?? WrittenBatch(baseOffset: offset, lastOffset: offset, segment: 0, position: 0, size: 0)
                    // The batch's CRC, for the checkpoint's check that it names this log: read back only
                    // when a checkpoint is written (`lastBatch` keeps the place).
                    let outcome = records.withRecord(at: index) { key, value in
                        apply(id: key.map { String(decoding: $0, as: UTF8.self) } ?? "", value: value, record: nil,
                              timestamp: records.timestamp(at: index), offset: offset, batch: batch.segment,
                              position: batch.position, crc: 0, live: true)
                    }
                    applied.append(outcome?.applied)
                    if let message = outcome?.message, let key = records.key(at: index) { new.append((String(decoding: key, as: UTF8.self), message)) }
                }
                flushIndex()
                if let messageObserver { for (id, message) in new { messageObserver(id, message) } }
                completion(.success(applied))
                checkpointIfDue()
            case .failure(let error):
                completion(.failure(error))
            }
        }
    }

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

    func createNew(members: [String], by creator: String) async throws -> (id: String, created: Bool) {
        var id: String
        repeat {
            id = "conv_" + (0..<12).map { _ in String(Int.random(in: 0..<16), radix: 16) }.joined()
        } while lock.withLock({ numbers[id] != nil })
        _ = try await append(id: id, record: .created(members: members, by: creator))
        // In cluster mode a conversation of the same pair created on another node at the same moment may
        // have come first in the stream: then that one is "the" conversation of the two.
        if members.count == 2, let first = lock.withLock({ pairs[Self.pairKey(members)].map { metas[Int($0)].id } }), first != id {
            return (first, false)
        }
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
            let applied = try await append(id: id, record: .message(sender: sender, content: content, clientID: nil))
            return (applied?.seq ?? 0, applied?.timestamp ?? 0, false)
        }
        return try await claims.holding(["sent\u{0}\(id)\u{0}\(sender)\u{0}\(clientID)"]) {
            if let sent = try earlier(in: id, sender: sender, clientID: clientID) { return (sent.seq, sent.timestamp, true) }
            let applied = try await append(id: id, record: .message(sender: sender, content: content, clientID: clientID))
            return (applied?.seq ?? 0, applied?.timestamp ?? 0, applied?.repeated ?? false)
        }
    }

    /// Whether this store appends to its own log (a single node): `post(to:sender:content:completion:)`
    /// may be used. In cluster mode appends go through the chat stream (`replicate`).
    public var appendsLocally: Bool { replicate == nil }

    /// Posts a message without a client id and answers through `completion`, on the commit thread, once
    /// it is durable and applied: the fast path's posts, which skip the two hops through the cooperative
    /// pool an `async` post takes. Throws, before anything is written, what `post` refuses
    /// (`ChatError`). Only where `appendsLocally`.
    public func post(to id: String, sender: String, content: String,
                     completion: @escaping @Sendable (Result<(seq: Int, timestamp: Int64), LogError>) -> Void) throws {
        precondition(appendsLocally, "a cluster node's posts go through the chat stream")
        try ChatRules.message(content: content, clientID: nil)
        _ = try Access(chat: self).conversation(id, for: sender).get()
        commit(Self.records(id: id, .message(sender: sender, content: content, clientID: nil))) { result in
            completion(result.map { applied in (applied.first??.seq ?? 0, applied.first??.timestamp ?? 0) })
        }
    }

    /// The message `sender` posted to `id` with `clientID` within the window, if any: each candidate of
    /// the fingerprint is read back (through the index) and its sender and client id compared.
    func earlier(in id: String, sender: String, clientID: String) throws -> (seq: Int, timestamp: Int64)? {
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
}
