import Testing
@testable import Presence

@Suite struct TimestampTests {
    @Test(arguments: [
        ("2024-01-15T09:41:03.120Z", Int64(1_705_311_663_120)),
        ("2024-01-15T09:41:03Z", 1_705_311_663_000),
        ("2024-01-15T09:41:03.1Z", 1_705_311_663_100),
        ("2024-01-15T09:41:03.123456789Z", 1_705_311_663_123),
        ("2024-01-15T10:41:03.120+01:00", 1_705_311_663_120),
        ("2024-01-15T04:11:03.120-0530", 1_705_311_663_120),
        ("2024-01-15t09:41:03.120z", 1_705_311_663_120),
        ("1970-01-01T00:00:00.000Z", 0),
        ("2024-02-29T00:00:00Z", 1_709_164_800_000),
        ("9999-12-31T23:59:59.999Z", 253_402_300_799_999),
    ])
    func parsesISO8601(text: String, expected: Int64) {
        #expect(Timestamp.parse(text) == expected)
    }

    @Test(arguments: [
        "2024-01-15T09:41:03.120", "2024-01-15 09:41:03Z", "2023-02-29T00:00:00Z", "2024-13-01T00:00:00Z",
        "2024-01-32T00:00:00Z", "2024-01-15T24:00:00Z", "2024-01-15T09:60:00Z", "2024-01-15T09:41:60Z",
        "2024-01-15T09:41:03.Z", "1969-12-31T23:59:59Z", "2024-01-15T09:41:03Z ", "24-01-15T09:41:03Z", "",
        "2024-01-15T09:41:03+25:00", "-5",
    ])
    func refusesMalformedOrOutOfRangeTimes(text: String) {
        #expect(Timestamp.parse(text) == nil)
    }

    /// `…Z` in 24 bytes takes a word-at-a-time fast path; the same time written with `+00:00` goes byte
    /// by byte. Damaged and random times must get the same answer from both.
    @Test func canonicalFastPathAgreesWithTheGeneralReader() {
        var random = SystemRandomNumberGenerator()
        let alphabet = Array("0123456789-:.TtZ /a".utf8) + [0x39 + 1, 0x30 - 1, 0xB0]
        for round in 0..<50_000 {
            var text = Array(Timestamp.format(Int64.random(in: 0...Timestamp.maxMilliseconds, using: &random)).utf8)
            if round % 2 == 1 {
                text[Int.random(in: 0..<23, using: &random)] = alphabet.randomElement(using: &random) ?? 0x30
            }
            let prefix = text.dropLast()  // without the Z
            let fast = (Array(prefix) + [0x5A]).withUnsafeBytes { Timestamp.parseISO8601($0) }
            let general = (Array(prefix) + Array("+00:00".utf8)).withUnsafeBytes { Timestamp.parseISO8601($0) }
            #expect(fast == general, "\(String(decoding: text, as: UTF8.self))")
        }
        for text in ["2023-02-29T00:00:00.000Z", "2024-02-29T00:00:00.000Z", "1969-12-31T23:59:59.999Z", "2024-04-31T00:00:00.000Z"] {
            let viaZone = text.dropLast() + "+00:00"
            #expect(Timestamp.parse(text) == Timestamp.parse(String(viaZone)), "\(text)")
        }
    }

    @Test func formatsAsUTCWithMilliseconds() {
        #expect(Timestamp.format(1_705_311_663_120) == "2024-01-15T09:41:03.120Z")
        #expect(Timestamp.format(0) == "1970-01-01T00:00:00.000Z")
        #expect(Timestamp.format(1_709_164_800_005) == "2024-02-29T00:00:00.005Z")
    }

    @Test func formatThenParseIsTheIdentityAcrossCenturies() {
        var random = SystemRandomNumberGenerator()
        for _ in 0..<20_000 {
            let ms = Int64.random(in: 0...Timestamp.maxMilliseconds, using: &random)
            #expect(Timestamp.parse(Timestamp.format(ms)) == ms)
        }
    }
}
