import Presence
import Testing
@testable import Projector

/// The rules a node applies around the fold: what a client is shown (and so pushed), and leases.
@Suite struct NodeRulesTests {
    @Test func onlyAFlipOrANewLastSeenWhileOfflineIsAShownChange() {
        let online2 = State(user: "bob", online: true, lastSeen: 50, connections: 2)
        let online1 = State(user: "bob", online: true, lastSeen: 80, connections: 1)
        let offline = State(user: "bob", online: false, lastSeen: 90, connections: 0)
        let offlineLater = State(user: "bob", online: false, lastSeen: 95, connections: 0)
        // A second device coming or going, or an earlier session ending while online: nothing to show.
        #expect(ShownPresence(online2) == ShownPresence(online1))
        #expect(ShownPresence(online1) != ShownPresence(offline))
        #expect(ShownPresence(offline) != ShownPresence(offlineLater))
        // Never seen reads as offline with no last seen.
        #expect(ShownPresence(nil) == ShownPresence(State(user: "bob", online: false, lastSeen: nil, connections: 0)))
        #expect(ShownPresence(nil) != ShownPresence(offline))
    }

    @Test func aTickBeatsForTheNodeAndEndsOtherGatewaysSilentPastTheLease() {
        let policy = LeasePolicy(node: "node-a", lease: 60_000)
        let p = fold([.gateway(.heartbeat, gateway: "gw-1", timestamp: 1_000), .gateway(.heartbeat, gateway: "node-a", timestamp: 1_000),
                      .gateway(.heartbeat, gateway: "gw-2", timestamp: 30_000), connect("bob", "c", 2_000, gateway: "gw-1")])
        let early = policy.tick(now: 61_000, projection: p)
        #expect(early.heartbeat == .gateway(.heartbeat, gateway: "node-a", timestamp: 61_000))
        #expect(early.downs.isEmpty, "gw-1 is silent for exactly the lease")
        let late = policy.tick(now: 61_001, projection: p)
        // The node never ends itself; gw-1 ends at its last sign of life, Bob's connect after its last
        // heartbeat, so that his session ends too.
        #expect(late.downs == [.gateway(.gatewayDown, gateway: "gw-1", timestamp: 2_000)])
        for event in late.downs { p.apply(event) }
        #expect(p.state(of: "bob")?.online == false)
        #expect(policy.tick(now: 61_002, projection: p).downs.isEmpty, "once per silence")
        // The log's clock counts when it is ahead of the wall clock.
        p.apply(.gateway(.heartbeat, gateway: "gw-3", timestamp: 200_000))
        #expect(policy.tick(now: 0, projection: p).downs.map(\.gateway) == ["gw-2"])
    }

    @Test func aRestartedNodeEndsTheConnectionsItsPreviousRunLeftOpenAtItsLastLoggedTime() {
        let policy = LeasePolicy(node: "node-a", lease: 60_000)
        let p = fold([connect("bob", "a", 100, gateway: "node-a"), connect("amy", "b", 200, gateway: "node-a"),
                      disconnect("amy", "b", 300, gateway: "node-a"), .gateway(.heartbeat, gateway: "node-a", timestamp: 250)])
        let restart = policy.restart(projection: p)
        #expect(restart?.event == .gateway(.gatewayDown, gateway: "node-a", timestamp: 300) && restart?.open == 1)
        if let event = restart?.event { p.apply(event) }
        #expect(policy.restart(projection: p) == nil)
    }
}
