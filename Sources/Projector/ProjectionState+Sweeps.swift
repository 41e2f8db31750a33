import Presence
import SegmentLog

/// Forgetting: keys whose every event and end lie before the horizon, and sweeps that drop them from the
/// tables at offsets fixed by the log alone.
extension ProjectionState {
    /// The event time before which closed connections are forgotten: the newest event time minus the
    /// horizon (nothing before the first event).
    var forgetBefore: Int64 {
        maxTimestamp == Int64.min || maxTimestamp < Int64.min + horizon ? Int64.min : maxTimestamp - horizon
    }

    /// A key with no open session whose every end and every event is older than the horizon: no event
    /// that can still be applied can change its sessions (they are all at or after `forgetBefore`);
    /// one that reuses its id starts a new session, as the rules say, and a disconnect of it would
    /// change nothing, but counts, once forgotten, as a session of unknown start. Forgotten keys are
    /// inert, so when a sweep removes them changes no state.
    @inline(__always)
    func isForgotten(_ connection: Connection) -> Bool {
        connection.end != Self.none && settledTime(connection) < forgetBefore
    }

    /// `isForgotten` with `newest` as the newest event time.
    @inline(__always)
    func isForgotten(_ connection: Connection, newest: Int64) -> Bool {
        connection.end != Self.none && newest >= Int64.min + horizon && settledTime(connection) < newest - horizon
    }

    /// The latest of a closed key's event times and end.
    @inline(__always)
    func settledTime(_ connection: Connection) -> Int64 {
        if connection.reason & Self.reusedKey != 0 {
            return max(connection.end, histories[Int(connection.disconnect)].lastEventTime)
        }
        return max(connection.end, connection.disconnect, connection.start == Self.noStart ? Self.none : connection.start)
    }

    /// Removes the forgotten connections from the tables when they have grown to twice what the last
    /// sweep kept: memory for closed connections is bounded by the horizon, at an amortized O(1) per
    /// event. Not while auditing (the audit counts over every connection). Returns whether it swept
    /// (which renumbers the connections).
    @discardableResult
    mutating func sweepIfDue() -> Bool {
        guard audit == nil, connections.count >= nextSweep else { return false }
        sweepForgotten()
        nextSweep = max(Self.minimumSweep, connections.count * 2)
        return true
    }

    static let minimumSweep = 1 << 16

    /// Sweeps are checked only before the first event at or past each multiple of this many offsets,
    /// never at a batch's end: where they fall, and so how connections are numbered, then depends on
    /// the log alone, not on how its records were batched (a replay reads the log's batches, the live
    /// server applies its commits): two folds of the same records build the same tables.
    static let sweepCheckInterval: Int64 = 1 << 12

    /// The first offset past `offset` where a sweep is checked.
    static func sweepCheck(after offset: Int64) -> Int64 {
        let (next, overflow) = (offset / sweepCheckInterval + 1).multipliedReportingOverflow(by: sweepCheckInterval)
        return overflow ? .max : next
    }

    /// Rebuilds the connection tables without the forgotten connections, and the histories without
    /// theirs and without their events before the horizon.
    mutating func sweepForgotten() {
        let old = connections, oldArena = connectionArena
        var keep = 0
        for c in 0..<old.count where !isForgotten(old[c]) { keep += 1 }
        guard keep < old.count else { return }
        let kept = FlatStorage<Connection>(capacity: max(1 << 12, keep + keep / 4))
        let keptArena = FlatStorage<UInt8>(capacity: 1 << 16)
        for u in 0..<users.count { users[u].firstConnection = -1 }
        for c in 0..<old.count {
            var connection = old[c]
            // A forgotten key's history goes back on its free list (after `isForgotten` read it). A kept
            // one loses its events before the horizon as it grows (`applyToHistory`).
            if isForgotten(connection) {
                if connection.reason & Self.reusedKey != 0 { freeHistory(Int(connection.disconnect)) }
                continue
            }
            let index = kept.count
            if Int(connection.keyLength) > Self.inlineKeyBytes {
                connection.key.0 = UInt64(keptArena.count)
                keptArena.append(bytes: UnsafeRawBufferPointer(start: oldArena.pointer + Int(old[c].key.0), count: Int(connection.keyLength)))
            }
            connection.nextOfUser = users[Int(connection.user)].firstConnection
            users[Int(connection.user)].firstConnection = Int32(index)
            kept.append(connection)
        }
        connections = kept
        connectionArena = keptArena
        var size = 1 << 12
        while kept.count * 2 > size { size *= 2 }
        connectionSlots = rehashedConnections(size: size)
        forgottenConnections += old.count - keep
    }
}
