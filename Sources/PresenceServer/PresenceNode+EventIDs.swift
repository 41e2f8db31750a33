import Chat
import Foundation
import Presence
import SegmentLog

/// Event ids (`EventIDIndex`): a gateway's retried event is acknowledged with its first offset and not
/// written again. Decided at the commit, in log order: under the node's lock after claiming the ids
/// (one node), or on the materializer's task in stream order (cluster mode, where every node decides
/// alike).
extension PresenceNode {
    /// What `appendEvents` did: each record's offset (a repeat's is its first writing's) and which records
    /// were repeats, not written again.
    public struct EventsAck: Sendable {
        public var offsets: [Int64]
        public var repeats: [Int]
    }

    /// A record whose event id the log holds for another event.
    public struct EventIDConflict: Error, Sendable {
        public let record: Int
        public let reason: String
    }

    /// How each record of a request stands against the ids written: new (its position among the records
    /// to write), the repeat of an earlier writing, or of a record earlier in the request.
    enum Fate { case fresh(Int), earlier(Int64), sameAs(Int) }

    /// The ids of `records` (nil for a record without one); empty when no record has one.
    static func identities(of records: RecordBuffer) -> [(key: EventIDIndex.Key, fingerprint: UInt64)?] {
        records.withRecordViews(firstOffset: 0) { views in
            var identities: [(key: EventIDIndex.Key, fingerprint: UInt64)?] = []
            for (index, view) in views.enumerated() {
                guard let value = view.value, let identity = EventIDIndex.identify(key: view.key, value: value, timestamp: view.timestamp) else {
                    if !identities.isEmpty { identities.append(nil) }
                    continue
                }
                if identities.isEmpty {
                    identities.reserveCapacity(views.count)
                    identities.append(contentsOf: repeatElement(nil, count: index))
                }
                identities.append(identity)
            }
            return identities
        }
    }

    /// Each record's fate and the records to write; throws for an id already used by another event.
    /// Call under `lock`.
    func decide(_ identities: [(key: EventIDIndex.Key, fingerprint: UInt64)?]) throws(EventIDConflict) -> (fates: [Fate], fresh: [Int]) {
        var fates: [Fate] = []
        var fresh: [Int] = []
        var inRequest: [EventIDIndex.Key: (record: Int, fingerprint: UInt64)] = [:]
        for (index, identity) in identities.enumerated() {
            guard let identity else {
                fates.append(.fresh(fresh.count))
                fresh.append(index)
                continue
            }
            let earlier = eventIDs.earlier(identity.key).map { (Int64?.some($0.offset), $0.fingerprint) }
                ?? inRequest[identity.key].map { (Int64?.none, $0.fingerprint) }
            if let (offset, fingerprint) = earlier {
                guard fingerprint == identity.fingerprint else {
                    let at = offset.map { "at offset \($0)" } ?? "by an earlier line of this request"
                    throw EventIDConflict(record: index, reason: "event id \"\(identity.key.id)\" was used \(at) for another event of this gateway; refused")
                }
                if let offset { fates.append(.earlier(offset)) } else if let first = inRequest[identity.key] { fates.append(.sameAs(first.record)) }
                continue
            }
            inRequest[identity.key] = (index, identity.fingerprint)
            fates.append(.fresh(fresh.count))
            fresh.append(index)
        }
        return (fates, fresh)
    }

    /// The request's acknowledgement, once its fresh records are written from `first` on.
    static func acknowledgement(_ fates: [Fate], firstFresh first: Int64) -> EventsAck {
        var offsets: [Int64] = []
        var repeats: [Int] = []
        for (index, fate) in fates.enumerated() {
            switch fate {
            case .fresh(let position): offsets.append(first + Int64(position))
            case .earlier(let offset): offsets.append(offset); repeats.append(index)
            case .sameAs(let record): offsets.append(offsets[record]); repeats.append(index)
            }
        }
        return EventsAck(offsets: offsets, repeats: repeats)
    }

    /// Decides the repeats of `records`, commits the fresh ones to the local log, and answers.
    /// `encoded`: the records already encoded, written as they are when none is a repeat.
    func commitDeduplicated(_ records: RecordBuffer, _ identities: [(key: EventIDIndex.Key, fingerprint: UInt64)?],
                            encoded: EncodedBatches? = nil) async throws -> EventsAck {
        guard !identities.isEmpty else {
            // No record has an id: every one is fresh.
            let first = try await commit(records, encoded: encoded).offsets.lowerBound
            return EventsAck(offsets: (0..<Int64(records.count)).map { first + $0 }, repeats: [])
        }
        let (fates, fresh) = try withLock { () throws(EventIDConflict) in try decide(identities) }
        var first: Int64 = 0
        if !fresh.isEmpty, fresh.count == records.count {
            first = try await commit(records, encoded: encoded).offsets.lowerBound
        } else if !fresh.isEmpty {
            first = try await commit(records.subset(fresh)).offsets.lowerBound
        }
        return Self.acknowledgement(fates, firstFresh: first)
    }

    /// Appends gateway events, de-duplicated by their event ids (`EventIDIndex`): a record whose id the
    /// log already holds for the same event is not written again and is acknowledged with the first
    /// offset; one that holds it for another event refuses the request (`EventIDConflict`, nothing
    /// written). Requests carrying the same id are decided one after the other (`InFlightClaims`), so a
    /// retry racing its original is still a repeat. In cluster mode the materializer decides, in stream
    /// order, on every node alike.
    public func appendEvents(_ records: RecordBuffer) async throws -> EventsAck {
        if let replicated { return try await replicated.append(records).get() }
        let identities = Self.identities(of: records)
        let keys = Set(identities.compactMap { $0?.key })
        if keys.isEmpty {
            let ack = try await commit(records)
            return EventsAck(offsets: (0..<records.count).map { ack.offsets.lowerBound + Int64($0) }, repeats: [])
        }
        return try await idClaims.holding(keys) { try await commitDeduplicated(records, identities) }
    }
}
