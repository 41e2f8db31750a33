import SegmentLog
import Testing
@testable import Presence

@Suite struct EventCodecTests {
    func roundTrip(_ event: PresenceEvent) throws -> PresenceEvent {
        var buffer = RecordBuffer()
        EventCodec.append(event, to: &buffer)
        let key = buffer.key(at: 0)!, value = buffer.value(at: 0)
        #expect(key == Array(event.user.utf8))
        return try key.withUnsafeBytes { key in
            try value.withUnsafeBytes { value in
                try EventCodec.decode(key: key, value: value, timestamp: buffer.timestamp(at: 0))
            }
        }
    }

    @Test(arguments: [
        "bob-phone-7f3a", "bob-phone-7f3", "bob-7f3a", "bob-", "bob", "alice-phone-7f3a", "7f3a", "bob-phone-7F3A",
        "550e8400-e29b-41d4-a716-446655440000", "bob-☃-00ff", "bob-phone-abcdef0123456789", "",
    ])
    func everyConnShapeRoundTrips(conn: String) throws {
        let event = PresenceEvent(kind: .disconnect, user: "bob", conn: conn, gateway: "gw-1", timestamp: 42, id: nil)
        #expect(try roundTrip(event) == event)
        let withID = PresenceEvent(kind: .connect, user: "bob", conn: conn, gateway: "g", timestamp: 0, id: "e-1")
        #expect(try roundTrip(withID) == withID)
    }

    @Test func gatewayEventsRoundTripWithANullKey() throws {
        for event in [PresenceEvent.gateway(.gatewayDown, gateway: "gw-1", timestamp: 9), .gateway(.heartbeat, gateway: "gw-2", timestamp: 1, id: "h")] {
            var buffer = RecordBuffer()
            EventCodec.append(event, to: &buffer)
            #expect(buffer.key(at: 0) == nil)
            let decoded = try buffer.value(at: 0).withUnsafeBytes { try EventCodec.decode(key: nil, value: $0, timestamp: event.timestamp) }
            #expect(decoded == event)
            #expect(try NDJSONEventParser().parse(EventJSON.line(event)) == event)
        }
    }

    @Test func compactFormDropsTheUserPrefixAndPacksHex() {
        var buffer = RecordBuffer()
        EventCodec.append(PresenceEvent(kind: .connect, user: "u648930", conn: "u648930-tablet-1482", gateway: "gw-8", timestamp: 1), to: &buffer)
        // 2 packed hex bytes, flags, "gw-8" with its length, "tablet-", the tail.
        #expect(buffer.value(at: 0) == [0x14, 0x82, 0x91, 4] + Array("gw-8tablet-".utf8) + [0xFA])
    }

    @Test func longHexRunsPackTheirLastFourteenDigits() throws {
        let event = PresenceEvent(kind: .connect, user: "bob", conn: "bob-0123456789abcdef", gateway: "g", timestamp: 1)
        var buffer = RecordBuffer()
        EventCodec.append(event, to: &buffer)
        let value = buffer.value(at: 0)
        #expect(value.last == 0xFF)  // seven packed bytes
        #expect(Array(value.suffix(3)) == Array("01".utf8) + [0xFF])
        #expect(try roundTrip(event) == event)
    }

    @Test func valuesOfTheFirstLayoutAreRefusedByName() {
        // "u648930-tablet-1482" as layout 1 wrote it: flags, gateway, text, packed hex with its count.
        let layout1: [UInt8] = [0x51, 4] + Array("gw-8".utf8) + [7] + Array("tablet-".utf8) + [2, 0x14, 0x82]
        #expect { try layout1.withUnsafeBytes { _ = try EventCodec.view($0) } } throws: { error in
            "\(error)".contains("older PresenceLog")
        }
    }

    @Test func connIdentitiesTellPrefixedAndPlainConnsApart() throws {
        func identity(_ conn: String) throws -> [UInt8] {
            var buffer = RecordBuffer()
            EventCodec.append(PresenceEvent(kind: .connect, user: "u1", conn: conn, gateway: "g", timestamp: 1), to: &buffer)
            return try buffer.value(at: 0).withUnsafeBytes { value in
                let view = try EventCodec.view(value)
                return try withUnsafeTemporaryAllocation(byteCount: EventCodec.maxConnIdentityBytes, alignment: 1) { scratch in
                    let base = try #require(scratch.baseAddress)
                    return Array(UnsafeRawBufferPointer(start: base, count: view.writeConnIdentity(to: base)))
                }
            }
        }
        #expect(try identity("u1-phone") != identity("phone"))
        #expect(try identity("u1-ab12") != identity("ab12"))
        #expect(try identity("x-ab12") != identity("x-ab1"))
        #expect(try identity("u1-phone") == identity("u1-phone"))
    }

    @Test func malformedValuesAreErrorsNotCrashes() {
        var random = SystemRandomNumberGenerator()
        for length in 0..<40 {
            for _ in 0..<200 {
                let value = (0..<length).map { _ in UInt8.random(in: 0...255, using: &random) }
                _ = try? value.withUnsafeBytes { try EventCodec.view($0) }
            }
        }
        let truncated: [UInt8] = [0x01, 0x05, 0x61]
        #expect(throws: EventCodec.DecodeError.self) { try truncated.withUnsafeBytes { _ = try EventCodec.view($0) } }
    }

    @Test func jsonOutputParsesBackToTheSameEvent() throws {
        let parser = NDJSONEventParser()
        let events = [
            PresenceEvent(kind: .connect, user: "bob", conn: "bob-phone-7f3a", gateway: "gw-1", timestamp: 1_705_311_663_120),
            PresenceEvent(kind: .disconnect, user: "q\"uo\\te\n\u{1}", conn: "c\t", gateway: "g", timestamp: 0, id: "x"),
        ]
        for event in events {
            #expect(try parser.parse(EventJSON.line(event)) == event)
        }
        #expect(EventJSON.line(events[0], offset: 7) ==
            #"{"offset":7,"type":"connect","user":"bob","conn":"bob-phone-7f3a","gateway":"gw-1","ts":"2024-01-15T09:41:03.120Z"}"#)
    }
}
