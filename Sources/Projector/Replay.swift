import Presence
import SegmentLog

/// Rebuilds a projection from a log.
public enum Replay {
    /// What a replay did.
    public struct Summary: Sendable {
        /// Records read and applied.
        public var events = 0
        /// Records read but not applied because their event time is after `at`.
        public var skippedAfterTime = 0
        /// The offset after the last record read.
        public var endOffset: Int64 = 0
        /// Bytes at the end of the log that were not read (a write in progress, or torn by a crash).
        public var tornTail: LogReader.TornTail?
    }

    /// Events read before the connection table is sized for the whole replay.
    static let sampleEvents = 1 << 20

    /// Applies the records of the log in `logDirectory` to `projection`, from the projection's
    /// `nextOffset` on: those with an offset below `untilOffset` and, with `at`, only those whose event time
    /// is at or before it (rule 6). `progress` is called every million records with the count so far.
    public static func run(logDirectory: String, into projection: PresenceProjection, untilOffset: Int64? = nil,
                           at time: Int64? = nil, progress: (Int) -> Void = { _ in }) throws -> Summary {
        let reader = try LogReader(directory: logDirectory)
        var summary = Summary()
        let limit = untilOffset ?? .max
        let cutoff = time ?? .max
        var read = 0
        var kept: [RecordView] = []
        // After the first million events, the connection table is sized for the connections the rest of
        // the log will bring at the rate seen so far: no doubling (and placing every connection again)
        // on the way. Over-estimating costs slots (8 bytes each, reported as connection memory). Shorter
        // replays (a restart's tail) never look.
        let firstOffset = projection.nextOffset
        let connectionsBefore = projection.connectionCount
        var reserved = false
        let result = try reader.forEachRecordBatch(from: .offset(projection.nextOffset)) { batch in
            // Most batches are applied whole; the last one before a limit, or any with later events, is filtered.
            var records = batch
            var more = true
            if let last = batch.last, last.offset >= limit {
                more = false
                records = UnsafeBufferPointer(rebasing: batch[..<(batch.firstIndex { $0.offset >= limit } ?? batch.count)])
            }
            let before = read
            read += records.count
            if read >> 20 != before >> 20 { progress(read) }
            do throws(PresenceProjection.ApplyError) {
                if time == nil || records.allSatisfy({ $0.timestamp <= cutoff }) {
                    try projection.apply(batch: records)
                    summary.events += records.count
                } else {
                    kept.removeAll(keepingCapacity: true)
                    for record in records where record.timestamp <= cutoff { kept.append(record) }
                    summary.skippedAfterTime += records.count - kept.count
                    summary.events += kept.count
                    try kept.withUnsafeBufferPointer { (kept) throws(PresenceProjection.ApplyError) in try projection.apply(batch: kept) }
                }
            } catch {
                throw LogError(.corrupt, "\(logDirectory): \(error.description)")
            }
            if !reserved && read >= Self.sampleEvents {
                reserved = true
                let total = min((try? reader.endOffsetFromHeaders()) ?? 0, limit) - firstOffset
                let seen = projection.connectionCount - connectionsBefore
                if seen > 0 && total > read {
                    projection.reserveConnections(connectionsBefore + Int(Double(seen) * Double(total) / Double(read) * 1.05))
                }
            }
            return more
        }
        summary.endOffset = min(result.endOffset, limit)
        summary.tornTail = result.tornTail
        return summary
    }
}

/// One user's sessions (connections), as the rules resolve them.
public enum History {
    public struct Session: Equatable, Sendable {
        public var conn: String
        public var gateway: String
        /// nil for a connection known only from its disconnect.
        public var start: Int64?
        /// nil while open.
        public var end: Int64?
        public var reason: ConnectionRules.EndReason?
        /// end - start, when both are known.
        public var duration: Int64? {
            guard let start, let end else { return nil }
            return end - start
        }
    }

    /// The sessions of `user` in the log at `logDirectory`, in order of start, that overlap
    /// [`from`, `to`] (either bound optional). Reads the whole log: every gateway_down may matter.
    public static func sessions(logDirectory: String, user: String, from: Int64? = nil, to: Int64? = nil) throws -> [Session] {
        let reader = try LogReader(directory: logDirectory)
        let userBytes = Array(user.utf8)
        struct Pending { var start: Int64?; var disconnect: Int64?; var gateway: String; var gatewayFromConnect: Bool }
        var connections: [String: Pending] = [:]
        var downs: [String: [Int64]] = [:]
        try reader.forEachRecord { record in
            guard let value = record.value else { return true }
            if let key = record.key {
                guard key.elementsEqual(userBytes) else { return true }
            } else if (value.first ?? 0) & 0x0F != EventKind.gatewayDown.rawValue {
                return true
            }
            let event: PresenceEvent
            do throws(EventCodec.DecodeError) {
                event = try EventCodec.decode(key: record.key, value: value, timestamp: record.timestamp)
            } catch {
                throw LogError(.corrupt, "\(logDirectory): record at offset \(record.offset): \(error.description)")
            }
            switch event.kind {
            case .connect:
                var entry = connections[event.conn] ?? Pending(start: nil, disconnect: nil, gateway: event.gateway, gatewayFromConnect: true)
                if entry.start.map({ event.timestamp < $0 }) ?? true {
                    entry.start = event.timestamp
                    entry.gateway = event.gateway
                    entry.gatewayFromConnect = true
                }
                connections[event.conn] = entry
            case .disconnect:
                var entry = connections[event.conn] ?? Pending(start: nil, disconnect: nil, gateway: event.gateway, gatewayFromConnect: false)
                entry.disconnect = max(entry.disconnect ?? event.timestamp, event.timestamp)
                connections[event.conn] = entry
            case .gatewayDown:
                downs[event.gateway, default: []].append(event.timestamp)
            case .heartbeat:
                break
            }
            return true
        }
        var sessions: [Session] = []
        for (conn, entry) in connections {
            let sorted = (downs[entry.gateway] ?? []).sorted()
            let resolution = sorted.withUnsafeBufferPointer {
                ConnectionRules.resolve(start: entry.start, disconnect: entry.disconnect, gatewayDowns: $0)
            }
            let session = Session(conn: conn, gateway: entry.gateway, start: entry.start, end: resolution.end, reason: resolution.reason)
            let begins = session.start ?? session.end ?? 0
            if let to, begins > to { continue }
            if let from, let end = session.end, end < from { continue }
            sessions.append(session)
        }
        return sessions.sorted { ($0.start ?? $0.end ?? 0, $0.conn) < ($1.start ?? $1.end ?? 0, $1.conn) }
    }
}
