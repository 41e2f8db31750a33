import Presence
import Testing
@testable import Projector

@Suite struct ProjectorHorizonTests {
    @Test func eventsOlderThanTheHorizonAreNeverApplied() {
        let day: Int64 = 86_400_000
        let p = fold([connect("bob", "c", 10 * day), connect("amy", "a", 9 * day - 1), disconnect("bob", "c", 9 * day + 5)])
        #expect(p.state(of: "amy") == nil)
        #expect(p.refusedEvents == 1)
        // Bob's disconnect is within the horizon but before his connect: it closes the connection.
        #expect(p.state(of: "bob") == State(user: "bob", online: false, lastSeen: 10 * day, connections: 0))
        let longer = PresenceProjection(horizon: 2 * day)
        for event in [connect("bob", "c", 10 * day), connect("amy", "a", 9 * day - 1)] { longer.apply(event) }
        #expect(longer.state(of: "amy")?.online == true)
        #expect(longer.refusedEvents == 0)
    }
}
