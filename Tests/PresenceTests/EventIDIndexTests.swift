import Presence
import SegmentLog
import Testing

@Suite struct EventIDIndexTests {
    func encoded(_ event: PresenceEvent) -> RecordBuffer {
        var buffer = RecordBuffer()
        EventCodec.append(event, to: &buffer)
        return buffer
    }

    func identity(_ event: PresenceEvent) -> (key: EventIDIndex.Key, fingerprint: UInt64)? {
        let buffer = encoded(event)
        return buffer.withRecord(at: 0) { EventIDIndex.identify(key: $0, value: $1, timestamp: event.timestamp) }
    }

    @Test func anIdBelongsToItsGatewayAndItsFingerprintToTheWholeEvent() throws {
        let event = PresenceEvent(kind: .connect, user: "bob", conn: "c", gateway: "gw-1", timestamp: 1_000, id: "evt-1")
        let same = try #require(identity(event)), again = try #require(identity(event))
        #expect(same.key == again.key && same.fingerprint == again.fingerprint && same.key.id == "evt-1")
        var otherGateway = event
        otherGateway.gateway = "gw-2"
        #expect(try #require(identity(otherGateway)).key != same.key)
        for change in [{ (e: inout PresenceEvent) in e.user = "amy" }, { $0.conn = "d" }, { $0.timestamp += 1 }, { $0.kind = .disconnect }] {
            var changed = event
            change(&changed)
            let other = try #require(identity(changed))
            #expect(other.key == same.key && other.fingerprint != same.fingerprint)
        }
        var withoutID = event
        withoutID.id = nil
        #expect(identity(withoutID) == nil)
    }

    @Test func anIdIsRememberedForTheWindowOfEventTimeAndThenForgotten() throws {
        var index = EventIDIndex(window: 100)
        let event = PresenceEvent(kind: .connect, user: "bob", conn: "c", gateway: "gw-1", timestamp: 1_000, id: "evt-1")
        let (key, fingerprint) = try #require(identity(event))
        index.record(key, fingerprint: fingerprint, offset: 7, timestamp: 1_000)
        #expect(index.earlier(key)?.offset == 7)
        index.record(nil, fingerprint: 0, offset: 8, timestamp: 1_100)
        #expect(index.earlier(key)?.offset == 7, "at the window's edge")
        index.record(nil, fingerprint: 0, offset: 9, timestamp: 1_101)
        #expect(index.earlier(key) == nil, "past the window")
        // Written again past the window, it is remembered from its new offset.
        index.record(key, fingerprint: fingerprint, offset: 10, timestamp: 1_101)
        #expect(index.earlier(key)?.offset == 10)
    }

    @Test func theIdsOfErasedEventsAreForgottenAndTheOthersKept() throws {
        var index = EventIDIndex(window: 1_000)
        var keys: [EventIDIndex.Key] = []
        for n in 0..<4 {
            let event = PresenceEvent(kind: .connect, user: n == 2 ? "erased" : "kept", conn: "c\(n)", gateway: "gw-1", timestamp: 1_000 + Int64(n), id: "evt-\(n)")
            let (key, fingerprint) = try #require(identity(event))
            index.record(key, fingerprint: fingerprint, offset: Int64(n), timestamp: event.timestamp)
            keys.append(key)
        }
        index.remove(offsets: [2, 99])
        #expect(index.count == 3)
        #expect(index.earlier(keys[2]) == nil, "a retry of the erased event is written anew, as after a restart")
        #expect(keys.indices.filter { $0 != 2 }.allSatisfy { index.earlier(keys[$0])?.offset == Int64($0) })
    }
}
