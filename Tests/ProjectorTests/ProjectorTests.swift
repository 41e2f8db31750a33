import Foundation
import Presence
import Testing
@testable import Projector

func connect(_ user: String, _ conn: String, _ ts: Int64, gateway: String = "gw-1") -> PresenceEvent {
    PresenceEvent(kind: .connect, user: user, conn: conn, gateway: gateway, timestamp: ts)
}

func disconnect(_ user: String, _ conn: String, _ ts: Int64, gateway: String = "gw-1") -> PresenceEvent {
    PresenceEvent(kind: .disconnect, user: user, conn: conn, gateway: gateway, timestamp: ts)
}

func down(_ gateway: String, _ ts: Int64) -> PresenceEvent {
    .gateway(.gatewayDown, gateway: gateway, timestamp: ts)
}

func fold(_ events: [PresenceEvent]) -> PresenceProjection {
    let projection = PresenceProjection()
    for event in events { projection.apply(event) }
    return projection
}

typealias State = PresenceProjection.UserState

@Suite struct RuleTests {
    @Test func rule1AConnectWhileOpenIsARepeatAndRule2ADisconnectAfterTheEndChangesNothing() {
        // In event time: connect 100 starts, connect 200 repeats, disconnect 250 ends, disconnect 300
        // comes after the end of a session and changes nothing.
        let p = fold([connect("bob", "c", 200), connect("bob", "c", 100), disconnect("bob", "c", 300), disconnect("bob", "c", 250)])
        #expect(p.state(of: "bob") == State(user: "bob", online: false, lastSeen: 250, connections: 0))
    }

    @Test func rule2GatewayDownEndsConnectionsThatStartedBeforeIt() {
        let p = fold([connect("bob", "c", 100), down("gw-1", 150), connect("amy", "a", 200)])
        // Bob's connection ended at the crash; Amy's started after it and is open.
        #expect(p.state(of: "bob") == State(user: "bob", online: false, lastSeen: 150, connections: 0))
        #expect(p.state(of: "amy") == State(user: "amy", online: true, lastSeen: nil, connections: 1))
    }

    @Test func rule2OnlyAnEarlierGatewayDownOverridesTheDisconnect() {
        let earlier = fold([connect("bob", "c", 100), disconnect("bob", "c", 300), down("gw-1", 200)])
        #expect(earlier.state(of: "bob")?.lastSeen == 200)
        let later = fold([connect("bob", "c", 100), disconnect("bob", "c", 300), down("gw-1", 400)])
        #expect(later.state(of: "bob")?.lastSeen == 300)
        let otherGateway = fold([connect("bob", "c", 100), down("gw-2", 150)])
        #expect(otherGateway.state(of: "bob")?.online == true)
    }

    @Test func rule2ADisconnectWithNoSessionBeforeItEndsOneOfUnknownStart() {
        let p = fold([disconnect("bob", "c", 500)])
        #expect(p.state(of: "bob") == State(user: "bob", online: false, lastSeen: 500, connections: 0))
    }

    @Test func connsThatDifferOnlyByTheUserPrefixAreDifferentConnections() {
        // "bob-phone" is stored without its "bob-" prefix: it must not be taken for a conn called "phone".
        let p = fold([connect("bob", "bob-phone", 100), connect("bob", "phone", 110), disconnect("bob", "phone", 200),
                      connect("bob", "bob-7f3a", 120), disconnect("bob", "7f3a", 210)])
        #expect(p.state(of: "bob") == State(user: "bob", online: true, lastSeen: 210, connections: 2))
    }

    @Test func rule4OnlineWhileAnyConnectionIsOpen() {
        var events = [connect("bob", "phone", 100), connect("bob", "laptop", 110)]
        #expect(fold(events).state(of: "bob") == State(user: "bob", online: true, lastSeen: nil, connections: 2))
        events.append(disconnect("bob", "laptop", 200))  // closing the laptop keeps Bob online on his phone
        #expect(fold(events).state(of: "bob") == State(user: "bob", online: true, lastSeen: 200, connections: 1))
        events.append(disconnect("bob", "phone", 300))
        #expect(fold(events).state(of: "bob") == State(user: "bob", online: false, lastSeen: 300, connections: 0))
        #expect(fold(events).onlineUsers == 0)
    }

    @Test func rule5LastSeenIsTheLatestOverClosedConnections() {
        let p = fold([connect("bob", "a", 100), disconnect("bob", "a", 400), connect("bob", "b", 200), disconnect("bob", "b", 300)])
        #expect(p.state(of: "bob")?.lastSeen == 400)
        // A disconnect earlier than the connect, whatever the arrival order: a session of unknown start
        // ended at 100, then the connect at 150 starts another.
        let late = fold([disconnect("amy", "x", 100), connect("amy", "x", 150)])
        #expect(late.state(of: "amy") == State(user: "amy", online: true, lastSeen: 100, connections: 1))
    }

    @Test func aLateConnectIsPlacedBeforeTheDisconnectItPrecedes() {
        let p = fold([disconnect("bob", "c", 200), connect("bob", "c", 100)])
        #expect(p.state(of: "bob") == State(user: "bob", online: false, lastSeen: 200, connections: 0))
    }

    @Test func lateGatewayDownCorrectsLastSeen() {
        // Disconnect at 300 first; a gateway_down at 200 arrives later: the connection ended at 200.
        let p = fold([connect("bob", "c", 100), disconnect("bob", "c", 300), down("gw-1", 200)])
        #expect(p.state(of: "bob")?.lastSeen == 200)
        #expect(p.state(of: "bob") == ReferenceFold.states([connect("bob", "c", 100), disconnect("bob", "c", 300), down("gw-1", 200)]).first)
    }

    @Test func unknownUsersHaveNoState() {
        #expect(fold([connect("bob", "c", 1)]).state(of: "nobody") == nil)
    }

    @Test func heartbeatsAreRecordedPerGateway() {
        let p = fold([.gateway(.heartbeat, gateway: "gw-1", timestamp: 5), .gateway(.heartbeat, gateway: "gw-1", timestamp: 3)])
        #expect(p.gatewayHeartbeats().map(\.lastHeartbeat) == [5])
    }

    @Test func aLeaseRunsOutAfterHeartbeatsStopAndOnlyOncePerSilence() {
        let beat = { (gateway: String, ts: Int64) in PresenceEvent.gateway(.heartbeat, gateway: gateway, timestamp: ts) }
        let p = fold([beat("gw-1", 1_000), beat("gw-2", 50_000), connect("bob", "c", 500, gateway: "gw-3")])
        // gw-3 never sent a heartbeat: it has no lease.
        #expect(p.expiredLeases(lease: 60_000, now: 61_000).isEmpty)
        #expect(p.expiredLeases(lease: 60_000, now: 61_001).map(\.gateway) == ["gw-1"])
        #expect(p.expiredLeases(lease: 60_000, now: 200_000).map(\.lastHeartbeat) == [1_000, 50_000])
        // Once a gateway_down at (or after) the last heartbeat is in the log, the lease is settled...
        p.apply(down("gw-1", 1_000))
        #expect(p.expiredLeases(lease: 60_000, now: 200_000).map(\.gateway) == ["gw-2"])
        // ...until the gateway beats again and falls silent again.
        p.apply(beat("gw-1", 150_000))
        #expect(p.expiredLeases(lease: 60_000, now: 300_000).map(\.gateway) == ["gw-1", "gw-2"])
    }

    @Test func aNodeFindsTheConnectionsItsPreviousRunLeftOpen() {
        let p = fold([connect("bob", "a", 100, gateway: "node"), connect("bob", "b", 200, gateway: "node"),
                      disconnect("bob", "a", 300, gateway: "node"), .gateway(.heartbeat, gateway: "node", timestamp: 250),
                      connect("carol", "c", 900, gateway: "gw-1")])
        #expect(p.openConnections(onGateway: "node") == (1, 300))
        #expect(p.openConnections(onGateway: "nowhere") == (0, nil))
        // The gateway_down at the last logged time ends them all.
        p.apply(down("node", 300))
        #expect(p.openConnections(onGateway: "node").open == 0)
        #expect(p.state(of: "bob") == State(user: "bob", online: false, lastSeen: 300, connections: 0))
        #expect(p.state(of: "carol")?.online == true)
    }
}

@Suite struct PropertyTests {
    /// A user id prefix long enough that every connection key (user id and connection identity) is
    /// longer than a record holds inline (`ProjectionState.inlineKeyBytes`), so it is kept in the arena.
    static let longUserPrefix = "a-user-id-long-enough-for-the-arena-"

    /// Random events over few users, conns and gateways, so that they collide often.
    static func randomEvents(_ count: Int, userPrefix: String = "u", using random: inout some RandomNumberGenerator) -> [PresenceEvent] {
        (0..<count).map { _ in
            let ts = Int64.random(in: 0...1000, using: &random)
            let gateway = "gw-\(Int.random(in: 1...3, using: &random))"
            switch Int.random(in: 0..<20, using: &random) {
            case 0: return down(gateway, ts)
            case 1: return .gateway(.heartbeat, gateway: gateway, timestamp: ts)
            default:
                let user = "\(userPrefix)\(Int.random(in: 0..<6, using: &random))"
                let conn = "\(user)-dev-\(String(Int.random(in: 0..<4, using: &random), radix: 16))0a"
                let g = "gw-\(conn.utf8.reduce(0) { $0 &+ Int($1) } % 3 + 1)"  // one gateway per connection
                return Int.random(in: 0..<2, using: &random) == 0 ? connect(user, conn, ts, gateway: g) : disconnect(user, conn, ts, gateway: g)
            }
        }
    }

    @Test(arguments: ["u", longUserPrefix])
    func anyOrderAndAnyRepeatsGiveTheReferenceState(userPrefix: String) {
        var random = SystemRandomNumberGenerator()
        for round in 0..<400 {
            let events = Self.randomEvents(Int.random(in: 1...60, using: &random), userPrefix: userPrefix, using: &random)
            let expected = ReferenceFold.states(events)
            let inOrder = fold(events).allStates()
            #expect(inOrder == expected, "round \(round): \(events)")
            var shuffled = events + events.filter { _ in Bool.random(using: &random) }
            shuffled.shuffle(using: &random)
            let projection = fold(shuffled)
            #expect(projection.allStates() == expected, "round \(round), shuffled with repeats: \(shuffled)")
            #expect(projection.onlineUsers == expected.filter(\.online).count)
        }
    }

    /// A replay sizes the connection table ahead (`reserveConnections`): the connections already in it
    /// are found again, and the state is the same as without.
    @Test(arguments: ["u", longUserPrefix])
    func reservingConnectionSlotsChangesNoState(userPrefix: String) {
        var random = SystemRandomNumberGenerator()
        for _ in 0..<50 {
            let events = Self.randomEvents(120, userPrefix: userPrefix, using: &random)
            let plain = fold(events)
            let reserved = PresenceProjection()
            for (index, event) in events.enumerated() {
                if index == 60 { reserved.reserveConnections(Int.random(in: 1...100_000, using: &random)) }
                reserved.apply(event)
            }
            #expect(reserved.allStates() == plain.allStates())
            #expect(reserved.connectionCount == plain.connectionCount && reserved.openConnectionCount == plain.openConnectionCount)
        }
    }

    /// Tables past 64 MiB have their pages faulted in ahead of the appends on another thread
    /// (`PageWarmer`); that must never change what they hold, written before or after.
    @Test func warmingTablesAheadKeepsTheirContents() {
        let table = FlatStorage<UInt64>(capacity: 1 << 12)
        let count = 12_000_000  // 96 MB: past the grow-in-place size, several warmed stretches
        for i in 0..<count { table.append(UInt64(i) &* 0x9E37_79B9_7F4A_7C15) }
        var wrong = 0
        for i in 0..<count where table[i] != UInt64(i) &* 0x9E37_79B9_7F4A_7C15 { wrong += 1 }
        #expect(wrong == 0 && table.count == count)
        let slots = FlatStorage<UInt64>(capacity: 1 << 22, count: 1 << 22)  // 32 MB, warmed whole when made
        for i in stride(from: 0, to: 1 << 22, by: 4099) { slots[i] = UInt64(i) + 1 }
        var unexpected = 0
        for i in 0..<(1 << 22) where slots[i] != (i % 4099 == 0 ? UInt64(i) + 1 : 0) { unexpected += 1 }
        #expect(unexpected == 0)
    }

    /// The tables place records by the hash's low bits and tell them apart by its top bits: ids that
    /// differ little (sequential numbers, as user and connection ids often are) must spread over both
    /// as random values would.
    @Test func sequentialIdsSpreadOverSlotsAndTagsAsRandomOnesWould() {
        let count = 200_000, slotBits = 18
        var slots = [UInt8](repeating: 0, count: 1 << slotBits), tags = [UInt8](repeating: 0, count: 1 << 16)
        for i in 0..<count {
            let hash = Array("u\(i)".utf8).withUnsafeBytes { ProjectionState.hash($0) }
            slots[Int(truncatingIfNeeded: hash) & ((1 << slotBits) - 1)] = 1
            tags[Int(truncatingIfNeeded: hash >> 48)] = 1
        }
        // Random values leave about e^(-load) of the buckets empty.
        func emptyShare(_ buckets: [UInt8]) -> Double { Double(buckets.count - buckets.reduce(0) { $0 + Int($1) }) / Double(buckets.count) }
        let slotExpected = exp(-Double(count) / Double(1 << slotBits)), tagExpected = exp(-Double(count) / Double(1 << 16))
        #expect(abs(emptyShare(slots) - slotExpected) < 0.01, "empty slots \(emptyShare(slots)), random \(slotExpected)")
        #expect(abs(emptyShare(tags) - tagExpected) < 0.01, "empty tags \(emptyShare(tags)), random \(tagExpected)")
    }

    /// Gateway names up to 15 bytes are looked up through a memo of their packed bytes: names of every
    /// length that differ in one byte must keep their own gateway, asked once or many times.
    @Test func gatewayNamesOfEveryLengthKeepTheirOwnGateway() {
        let projection = PresenceProjection()
        var expected: [String: Int64] = [:]
        var time: Int64 = 1
        for length in 1...20 {
            let base = String((0..<length).map { Character(UnicodeScalar(UInt8(97 + $0 % 26))) })
            for position in [0, length / 2, length - 1] {
                var bytes = Array(base.utf8)
                bytes[position] = UInt8(ascii: "Z")
                for name in [base, String(decoding: bytes, as: UTF8.self)] {
                    for _ in 0..<2 {
                        projection.apply(.gateway(.heartbeat, gateway: name, timestamp: time))
                        expected[name] = time
                        time += 1
                    }
                }
            }
        }
        let beats = Dictionary(uniqueKeysWithValues: projection.gatewayHeartbeats().map { ($0.gateway, $0.lastHeartbeat ?? -1) })
        #expect(beats == expected)
    }

    /// A connection record is one cache line: finding a connection reads its slot and that line.
    @Test func aConnectionRecordIsOneCacheLine() {
        #expect(MemoryLayout<ProjectionState.Connection>.size == 64 && MemoryLayout<ProjectionState.Connection>.stride == 64)
        // A key history's first 64 bytes (what an event in order touches) are one line too.
        #expect(MemoryLayout<KeyHistory>.stride == 128 && MemoryLayout<KeyHistory>.offset(of: \.capacity).map { $0 + 4 } == 64)
    }

    /// Keys are hashed a word at a time and their last bytes in one or two loads: every byte of a key
    /// must count, and nothing after it (the tables place and find keys by this hash).
    @Test func aKeysHashDependsOnEveryByteOfItAndNothingAfter() {
        for n in 1...40 {
            let key = (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 1) }
            func hash(_ bytes: [UInt8], followedBy filler: UInt8) -> UInt64 {
                (bytes + [UInt8](repeating: filler, count: 8)).withUnsafeBytes { ByteTable.hash(UnsafeRawBufferPointer(rebasing: $0[..<bytes.count]), UnsafeRawBufferPointer(start: nil, count: 0)) }
            }
            let original = hash(key, followedBy: 0)
            #expect(hash(key, followedBy: 0xFF) == original, "length \(n): the bytes after the key changed its hash")
            var blind: [Int] = []
            for position in 0..<n {
                var changed = key
                changed[position] ^= 0x10
                if hash(changed, followedBy: 0) == original { blind.append(position) }
            }
            #expect(blind.isEmpty, "length \(n): changing byte(s) \(blind) left the hash as it was")
        }
    }

    @Test func stateAtATimeIsTheFoldOfTheEventsUpToIt() {
        var random = SystemRandomNumberGenerator()
        for _ in 0..<100 {
            let events = Self.randomEvents(50, using: &random)
            let t = Int64.random(in: 0...1000, using: &random)
            #expect(fold(events.filter { $0.timestamp <= t }).allStates() == ReferenceFold.states(events, at: t))
        }
    }
}
