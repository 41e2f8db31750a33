import Presence
import SegmentLog
import Testing
@testable import Projector

@Suite struct ProjectorHorizonTests {
    @Test func eventsOlderThanTheHorizonAreNeverApplied() {
        let day: Int64 = 86_400_000
        let p = fold([connect("bob", "c", 10 * day), connect("amy", "a", 9 * day - 1), disconnect("bob", "c", 9 * day + 5)])
        #expect(p.state(of: "amy") == nil)
        #expect(p.refusedEvents == 1)
        // Bob's disconnect is within the horizon, a day before his connect: it ended a session of unknown
        // start then; the connect started another.
        #expect(p.state(of: "bob") == State(user: "bob", online: true, lastSeen: 9 * day + 5, connections: 1))
        let longer = PresenceProjection(horizon: 2 * day)
        for event in [connect("bob", "c", 10 * day), connect("amy", "a", 9 * day - 1)] { longer.apply(event) }
        #expect(longer.state(of: "amy")?.online == true)
        #expect(longer.refusedEvents == 0)
    }

    @Test func aClosedConnectionOlderThanTheHorizonIsForgottenAndItsIdStartsAfresh() {
        let hour: Int64 = 3_600_000
        let p = PresenceProjection(horizon: hour)
        for event in [connect("bob", "c", 0), disconnect("bob", "c", 10), connect("amy", "a", 2 * hour)] { p.apply(event) }
        // Within the horizon a later connect of a closed key starts a new session (rule 1)...
        let q = PresenceProjection(horizon: 3 * hour)
        for event in [connect("bob", "c", 0), disconnect("bob", "c", 10), connect("amy", "a", 2 * hour), connect("bob", "c", 2 * hour + 5)] { q.apply(event) }
        #expect(q.state(of: "bob") == State(user: "bob", online: true, lastSeen: 10, connections: 1))
        // ...and past it too, where the key was forgotten: the same answer; last_seen is kept.
        p.apply(connect("bob", "c", 2 * hour + 5))
        #expect(p.state(of: "bob") == State(user: "bob", online: true, lastSeen: 10, connections: 1))
    }

    /// Sweeping forgotten connections out of memory is invisible: the same events give the same states
    /// whether the tables are swept after every event or never, and the swept tables stay small.
    @Test(arguments: ["u", PropertyTests.longUserPrefix])
    func sweepingForgottenConnectionsChangesNoStateAndBoundsMemory(userPrefix: String) {
        var random = SplitMix(seed: 42)
        let horizon: Int64 = 1_000
        let swept = PresenceProjection(horizon: horizon), kept = PresenceProjection(horizon: horizon)
        var time: Int64 = 0
        // Each user's devices come with fresh connection ids (as this server's sockets do), now and then
        // reusing an old one.
        var conns = [Int](repeating: 0, count: 50)
        for step in 0..<20_000 {
            time += Int64.random(in: 0...3, using: &random)
            let u = Int.random(in: 0..<50, using: &random)
            let user = "\(userPrefix)\(u)"
            let ts = time - Int64.random(in: 0...(horizon / 2), using: &random)  // late, within the horizon
            let event: PresenceEvent
            switch Int.random(in: 0..<10, using: &random) {
            case 0..<4:
                conns[u] = Int.random(in: 0..<20, using: &random) == 0 ? max(0, conns[u] - 30) : step
                event = connect(user, "c\(conns[u])", ts, gateway: "gw-\(Int.random(in: 0..<3, using: &random))")
            case 4..<9: event = disconnect(user, "c\(conns[u])", ts)
            default: event = down("gw-\(Int.random(in: 0..<3, using: &random))", ts)
            }
            swept.apply(event)
            kept.apply(event)
            if step % 7 == 0 { swept.forgetOldConnections() }
        }
        #expect(swept.allStates() == kept.allStates())
        #expect(swept.onlineUsers == kept.onlineUsers && swept.openConnectionCount == kept.openConnectionCount)
        #expect(swept.forgottenConnectionCount > 0)
        // Kept: every connection ever seen. Swept: those of about the last horizon's worth of events.
        #expect(kept.connectionCount > 6_000)
        #expect(swept.connectionCount < 1_500, "\(swept.connectionCount) connections remembered")
    }
}

/// Where sweeps fall depends on offsets alone, so the same records build the same tables, byte for
/// byte, however they are batched: a replay (the log's batches), the live server (its commits) and a
/// fold record by record number connections alike. (Sweeps at the end of each batch, as before, gave
/// three different tables here.)
@Suite struct SweepPlacementTests {
    @Test(arguments: ["u", PropertyTests.longUserPrefix])
    func theSameRecordsBuildTheSameTablesHoweverTheyAreBatched(userPrefix: String) throws {
        var random = SplitMix(seed: 7)
        var buffer = RecordBuffer()
        var time: Int64 = 0
        // 150,000 connections of 2,000 users, most closed soon after, a 1 s horizon: the first sweep
        // (at 65,536 connections) and later ones forget most of them.
        for k in 0..<150_000 {
            time += Int64.random(in: 0...2, using: &random)
            let user = "\(userPrefix)\(Int.random(in: 0..<2_000, using: &random))"
            EventCodec.append(connect(user, "c\(k)", time, gateway: "gw-\(k % 3)"), to: &buffer)
            if k % 10 != 0 { EventCodec.append(disconnect(user, "c\(k)", time + Int64.random(in: 0...5, using: &random)), to: &buffer) }
            if k % 40_000 == 39_999 { EventCodec.append(down("gw-1", time), to: &buffer) }
        }
        func tables(_ batchSizes: () -> Int) throws -> (bytes: [UInt8], forgotten: Int) {
            let projection = PresenceProjection(horizon: 1_000)
            try buffer.withRecordViews(firstOffset: 0) { records in
                var first = 0
                while first < records.count {
                    let end = min(records.count, first + batchSizes())
                    try projection.apply(batch: UnsafeBufferPointer(rebasing: records[first..<end]))
                    first = end
                }
            }
            var bytes: [UInt8] = []
            projection.encodeState { bytes.append(contentsOf: $0) }
            return (bytes, projection.forgottenConnectionCount)
        }
        var sizes = SplitMix(seed: 11)
        let logBatches = try tables { 8_192 }
        let commits = try tables { Int.random(in: 1...3_000, using: &sizes) }
        let oneByOne = try tables { 1 }
        #expect(logBatches.forgotten > 100_000, "\(logBatches.forgotten) connections forgotten")
        #expect(commits.forgotten == logBatches.forgotten && oneByOne.forgotten == logBatches.forgotten)
        // Compared as booleans: on a failure Swift Testing would otherwise diff megabytes of bytes.
        let sameForCommits = commits.bytes == logBatches.bytes, sameOneByOne = oneByOne.bytes == logBatches.bytes
        #expect(sameForCommits, "batched as commits: \(commits.bytes.count) bytes of tables against \(logBatches.bytes.count)")
        #expect(sameOneByOne, "one by one: \(oneByOne.bytes.count) bytes of tables against \(logBatches.bytes.count)")
    }
}

/// A small deterministic generator for repeatable random tests.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
