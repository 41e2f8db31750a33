import Foundation
import Presence
import SegmentLog
import Testing
import TestSupport
@testable import Projector

/// Rules v2: a connection id may be reused, and every connect after an end starts a new session,
/// whatever order the events arrive in.
@Suite struct SessionRulesTests {
    /// Every order of `events` gives the same state as the reference fold.
    func expectSameInEveryOrder(_ events: [PresenceEvent], _ expected: [State], sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(ReferenceFold.states(events) == expected, "the reference fold disagrees with the test", sourceLocation: sourceLocation)
        var random = SplitMix(seed: 3)
        for round in 0..<40 {
            let order = round == 0 ? events : events.shuffled(using: &random)
            #expect(fold(order).allStates() == expected, "order \(order)", sourceLocation: sourceLocation)
        }
    }

    @Test func aDeviceThatReconnectsWithTheSameIdIsOnlineAgain() {
        // The Bob: his phone's id names the device.
        let nine: Int64 = 9 * 3_600_000
        expectSameInEveryOrder([connect("bob", "phone", nine), disconnect("bob", "phone", nine + 3_600_000), connect("bob", "phone", nine + 7_200_000)],
                               [State(user: "bob", online: true, lastSeen: nine + 3_600_000, connections: 1)])
    }

    @Test func aDisconnectThatArrivesAfterTheNextConnectEndsTheEarlierSession() {
        let events = [connect("bob", "phone", 100), connect("bob", "phone", 300), disconnect("bob", "phone", 200)]
        expectSameInEveryOrder(events, [State(user: "bob", online: true, lastSeen: 200, connections: 1)])
        #expect(ReferenceFold.sessions(events).map(\.description).sorted() == ["bob/phone 100-200 disconnect", "bob/phone 300-open "])
    }

    @Test func aDeviceReconnectingAfterItsGatewayWentDownIsOnline() {
        expectSameInEveryOrder([connect("bob", "phone", 100), down("gw-1", 150), connect("bob", "phone", 200), disconnect("bob", "phone", 120)],
                               // 100-120 by the disconnect (the gateway_down then ends nothing), 200-open.
                               [State(user: "bob", online: true, lastSeen: 120, connections: 1)])
        expectSameInEveryOrder([connect("bob", "phone", 100), down("gw-1", 150), connect("bob", "phone", 200)],
                               [State(user: "bob", online: true, lastSeen: 150, connections: 1)])
    }

    @Test func aLateGatewayDownSplitsASessionThatARepeatedConnectContinued() {
        // The connect at 70 repeats while 10's session is open; a gateway_down at 50 ends that session,
        // so 70 starts another, which the disconnect at 100 ends.
        expectSameInEveryOrder([connect("bob", "phone", 10), connect("bob", "phone", 70), disconnect("bob", "phone", 100), down("gw-1", 50)],
                               [State(user: "bob", online: false, lastSeen: 100, connections: 0)])
    }

    @Test func eventsAtOneMillisecondMakeAZeroLengthSession() {
        expectSameInEveryOrder([connect("bob", "phone", 5), disconnect("bob", "phone", 5)], [State(user: "bob", online: false, lastSeen: 5, connections: 0)])
        expectSameInEveryOrder([connect("bob", "phone", 5), down("gw-1", 5)], [State(user: "bob", online: false, lastSeen: 5, connections: 0)])
        // A connect at the time of the gateway_down that ended the session before it repeats into it.
        expectSameInEveryOrder([connect("bob", "phone", 1), connect("bob", "phone", 5), down("gw-1", 5)],
                               [State(user: "bob", online: false, lastSeen: 5, connections: 0)])
    }

    @Test func twoConnectsAtOneTimeFromTwoGatewaysStartTheSessionOnTheFirstByName() {
        // gw-a's connect starts the session, gw-b's repeats: gw-b going down ends nothing, gw-a's does.
        let events = [connect("bob", "phone", 5, gateway: "gw-b"), connect("bob", "phone", 5, gateway: "gw-a"), down("gw-b", 6)]
        expectSameInEveryOrder(events, [State(user: "bob", online: true, lastSeen: nil, connections: 1)])
        expectSameInEveryOrder(events + [down("gw-a", 7)], [State(user: "bob", online: false, lastSeen: 7, connections: 0)])
    }

    @Test func aSecondDisconnectWithoutASessionChangesNothing() {
        expectSameInEveryOrder([disconnect("bob", "phone", 5), disconnect("bob", "phone", 9)], [State(user: "bob", online: false, lastSeen: 5, connections: 0)])
    }

    /// Many sessions of one key, in order and late: the history's trims (past the horizon) and its
    /// replays (for late events) keep to the rules.
    @Test func aLongLivedDeviceKeepsEverySessionRight() throws {
        var random = SplitMix(seed: 9)
        let horizon: Int64 = 5_000
        var projection = PresenceProjection(horizon: horizon)
        var events: [PresenceEvent] = []
        var time: Int64 = 0
        let scratch = Scratch()
        for step in 0..<3_000 {
            if step == 1_500 {
                // Halfway, through a checkpoint: the history, its snapshots and free blocks come back.
                let (path, _) = try Checkpoint.write(projection, to: scratch.path)
                projection = try Checkpoint.load(path)
                #expect(projection.allStates() == ReferenceFold.states(events))
            }
            time += Int64.random(in: 1...20, using: &random)
            let ts = time - Int64.random(in: 0...50, using: &random)  // a little late, now and then
            let event = Bool.random(using: &random) ? connect("bob", "phone", ts, gateway: "gw-\(Int.random(in: 1...2, using: &random))")
                : Int.random(in: 0..<30, using: &random) == 0 ? down("gw-\(Int.random(in: 1...2, using: &random))", ts) : disconnect("bob", "phone", ts)
            events.append(event)
            projection.apply(event)
        }
        #expect(projection.allStates() == ReferenceFold.states(events))
        #expect(projection.state.histories.count == 1 && projection.state.histories[0].count < 1_200, "events before the horizon are folded away")
    }

    /// Events arriving late among thousands of one key's events: each placed by replaying only from the
    /// snapshot before it, the state always the reference fold's.
    @Test func lateEventsAmongManySessionsReplayFromTheSnapshotBeforeThem() {
        var random = SplitMix(seed: 12)
        let projection = PresenceProjection()
        var events: [PresenceEvent] = []
        for i in 0..<2_000 { events.append(i % 2 == 0 ? connect("bob", "phone", Int64(i) * 10) : disconnect("bob", "phone", Int64(i) * 10)) }
        for event in events { projection.apply(event) }
        for round in 0..<200 {
            // A disconnect inside a session, or a connect inside a gap, anywhere in the history.
            let at = Int64.random(in: 0..<20_000, using: &random)
            let event = Bool.random(using: &random) ? disconnect("bob", "phone", at) : connect("bob", "phone", at, gateway: "gw-\(round % 3)")
            events.append(event)
            projection.apply(event)
            if round % 20 == 0 { projection.apply(down("gw-\(round % 3)", at + 3)); events.append(down("gw-\(round % 3)", at + 3)) }
        }
        #expect(projection.allStates() == ReferenceFold.states(events))
        let sessions = ReferenceFold.sessions(events)
        #expect(sessions.count > 1_000)
    }
}

/// `history` and `state --at` tell one story: at every time T a user is online exactly when a session
/// `history` lists covers T, with as many connections as such sessions, and any arrival order within
/// the horizon gives the same sessions and the same states.
@Suite struct HistoryAgreesWithStateTests {
    static let horizon: Int64 = 10_000

    /// Bursts of activity shorter than the horizon, separated by gaps longer than it (keys are forgotten
    /// between them), over few users and devices whose ids are reused, with repeats and gateway_downs.
    static func stream(_ random: inout SplitMix) -> [PresenceEvent] {
        var events: [PresenceEvent] = []
        var start: Int64 = 1_000_000
        for _ in 0..<4 {
            for _ in 0..<Int.random(in: 40...120, using: &random) {
                let ts = start + Int64.random(in: 0...3_000, using: &random)
                let user = "u\(Int.random(in: 0..<4, using: &random))"
                let conn = ["phone", "laptop", "\(user)-web-1a"][Int.random(in: 0..<3, using: &random)]
                let gateway = "gw-\(Int.random(in: 1...2, using: &random))"
                switch Int.random(in: 0..<20, using: &random) {
                case 0: events.append(down(gateway, ts))
                case 1...10: events.append(connect(user, conn, ts, gateway: gateway))
                default: events.append(disconnect(user, conn, ts, gateway: gateway))
                }
                if Int.random(in: 0..<10, using: &random) == 0, let last = events.last { events.append(last) }  // a repeat
            }
            start += 3 * Self.horizon
        }
        return events.sorted { $0.timestamp < $1.timestamp }
    }

    /// `events` delivered late and out of order: each moved by up to `window` ms of event time.
    static func shuffled(_ events: [PresenceEvent], window: Int64, _ random: inout SplitMix) -> [PresenceEvent] {
        events.map { ($0, $0.timestamp + Int64.random(in: 0...window, using: &random)) }.sorted { $0.1 < $1.1 }.map(\.0)
    }

    func writeLog(_ events: [PresenceEvent]) throws -> (Scratch, String) {
        let scratch = Scratch()
        let directory = try DataDirectory(path: scratch.path)
        let log = try directory.openLog(presenceLogName)
        var records = RecordBuffer()
        for event in events { EventCodec.append(event, to: &records) }
        _ = try log.append(records)
        try log.close()
        return (scratch, scratch.path + "/" + presenceLogName)
    }

    @Test func atEveryTimeAUserIsOnlineExactlyWhenAListedSessionCoversIt() throws {
        var random = SplitMix(seed: 21)
        for round in 0..<10 {
            let inOrder = Self.stream(&random)
            let late = Self.shuffled(inOrder, window: 1_000, &random)
            let (scratch, logDirectory) = try writeLog(late)
            let users = Set(inOrder.filter { $0.kind == .connect || $0.kind == .disconnect }.map(\.user))
            let (orderedScratch, orderedLog) = try writeLog(inOrder)
            var sessions: [String: [History.Session]] = [:]
            for user in users {
                sessions[user] = try History.sessions(logDirectory: logDirectory, user: user, horizon: Self.horizon)
                // Arrival order changes nothing: the same sessions from the events in event-time order.
                let fromOrdered = try History.sessions(logDirectory: orderedLog, user: user, horizon: Self.horizon)
                #expect(fromOrdered == sessions[user], "round \(round), \(user): \(fromOrdered.filter { !(sessions[user] ?? []).contains($0) }) vs \((sessions[user] ?? []).filter { !fromOrdered.contains($0) })")
            }
            _ = orderedScratch
            // Every event time, and the moments just before and after, and times in the gaps.
            var times = Set(inOrder.flatMap { [$0.timestamp - 1, $0.timestamp, $0.timestamp + 1] })
            for _ in 0..<20 { times.insert(Int64.random(in: 900_000...1_200_000, using: &random)) }
            var disagreements: [String] = []
            for (index, time) in times.sorted().enumerated() where disagreements.count < 5 {
                // The state at a time: a replay of the log's events up to it (`state --at`) for some, the
                // same filter in memory for the others (a replay per time would take minutes).
                let projection = PresenceProjection(horizon: Self.horizon)
                if index % 50 == 0 {
                    _ = try Replay.run(logDirectory: logDirectory, into: projection, at: time, readAhead: false)
                } else {
                    for event in late where event.timestamp <= time { projection.apply(event) }
                }
                for user in users {
                    let covering = sessions[user, default: []].filter { $0.covers(time) }.count
                    let state = projection.state(of: user)
                    if (state?.connections ?? 0) != covering || (state?.online ?? false) != (covering > 0) {
                        disagreements.append("round \(round), \(user) at \(time): state \(String(describing: state)), \(covering) covering sessions")
                    }
                }
            }
            #expect(disagreements.isEmpty, "\(disagreements)")
            // Now, every session's end counts for last_seen, and the state is the same in either order.
            let now = PresenceProjection(horizon: Self.horizon)
            _ = try Replay.run(logDirectory: logDirectory, into: now)
            for user in users {
                let lastEnd = sessions[user, default: []].compactMap(\.end).max()
                #expect(now.state(of: user)?.lastSeen == lastEnd, "round \(round), \(user): \(sessions[user, default: []])")
            }
            let ordered = PresenceProjection(horizon: Self.horizon)
            for event in inOrder { ordered.apply(event) }
            #expect(ordered.allStates() == now.allStates(), "round \(round)")
            _ = scratch
        }
    }

    @Test func historyListsTheSessionsOfAReusedIdAndNoneSpansAGap() throws {
        let day: Int64 = 86_400_000, jan15: Int64 = 1_705_276_800_000
        let events = [connect("bob", "phone", jan15 + 9 * 3_600_000), disconnect("bob", "phone", jan15 + 10 * 3_600_000),
                      connect("bob", "phone", jan15 + 2 * day + 11 * 3_600_000), disconnect("bob", "phone", jan15 + 2 * day + 12 * 3_600_000)]
        let (scratch, logDirectory) = try writeLog(events)
        _ = scratch
        let sessions = try History.sessions(logDirectory: logDirectory, user: "bob")
        #expect(sessions.map { [$0.start, $0.end] } == [[jan15 + 9 * 3_600_000, jan15 + 10 * 3_600_000],
                                                         [jan15 + 2 * day + 11 * 3_600_000, jan15 + 2 * day + 12 * 3_600_000]])
        #expect(sessions.allSatisfy { $0.reason == .disconnect && $0.conn == "phone" && $0.gateway == "gw-1" })
        // The night of the 16th: offline, in both.
        let night = jan15 + day + 22 * 3_600_000
        let projection = PresenceProjection()
        _ = try Replay.run(logDirectory: logDirectory, into: projection, at: night)
        #expect(projection.state(of: "bob") == State(user: "bob", online: false, lastSeen: jan15 + 10 * 3_600_000, connections: 0))
        #expect(!sessions.contains { $0.covers(night) })
    }

    @Test func aDisconnectWithoutAConnectIsListedWithoutAStart() throws {
        let (scratch, logDirectory) = try writeLog([disconnect("bob", "phone", 500, gateway: "gw-9"), connect("bob", "phone", 900)])
        _ = scratch
        let sessions = try History.sessions(logDirectory: logDirectory, user: "bob")
        #expect(sessions == [History.Session(conn: "phone", gateway: "gw-9", start: nil, end: 500, reason: .disconnect),
                             History.Session(conn: "phone", gateway: "gw-1", start: 900, end: nil, reason: nil)])
    }
}

