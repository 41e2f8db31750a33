import SegmentLog
import Testing
@testable import Presence

@Suite struct ParserTests {
    let parser = NDJSONEventParser()

    @Test func readsTheDocumentedSchema() throws {
        let event = try parser.parse(#"{"type":"connect","user":"bob","conn":"bob-phone-7f3a","gateway":"gw-1","ts":"2024-01-15T09:41:03.120Z"}"#)
        #expect(event == PresenceEvent(kind: .connect, user: "bob", conn: "bob-phone-7f3a", gateway: "gw-1", timestamp: 1_705_311_663_120))
        let other = try parser.parse(#" { "ts" : 1705311663120 , "gateway":"gw-2", "id":"evt-9", "conn":"c", "user":"ałice ☃", "type":"disconnect" } "#)
        #expect(other == PresenceEvent(kind: .disconnect, user: "ałice ☃", conn: "c", gateway: "gw-2", timestamp: 1_705_311_663_120, id: "evt-9"))
    }

    @Test func decodesEscapesAndIgnoresUnknownFields() throws {
        let line = #"{"type":"connect","user":"b\"o\\b\u00e9\ud83d\ude00","conn":"c\n1","gateway":"gw","ts":5,"extra":{"a":[1,2.5e3,true,null,"x"]},"id":null}"#
        let event = try parser.parse(line)
        #expect(event.user == "b\"o\\bé😀")
        #expect(event.conn == "c\n1")
        #expect(event.id == nil)
    }

    @Test(arguments: [
        (#"{"type":"conect","user":"b","conn":"c","gateway":"g","ts":1}"#, "unknown event type \"conect\""),
        (#"{"user":"b","conn":"c","gateway":"g","ts":1}"#, "missing field \"type\""),
        (#"{"type":"connect","conn":"c","gateway":"g","ts":1}"#, "missing field \"user\""),
        (#"{"type":"connect","user":"b","gateway":"g","ts":1}"#, "missing field \"conn\""),
        (#"{"type":"connect","user":"b","conn":"c","ts":1}"#, "missing field \"gateway\""),
        (#"{"type":"connect","user":"b","conn":"c","gateway":"g"}"#, "missing field \"ts\""),
        (#"{"type":"connect","user":5,"conn":"c","gateway":"g","ts":1}"#, "field \"user\" must be a string"),
        (#"{"type":"connect","user":"b","conn":"c","gateway":"g","ts":true}"#, "field \"ts\" must be"),
        (#"{"type":"connect","user":"b","conn":"c","gateway":"g","ts":1.5}"#, "must be a whole number"),
        (#"{"type":"connect","user":"b","conn":"c","gateway":"g","ts":-1}"#, "bad timestamp -1"),
        (#"{"type":"connect","user":"b","conn":"c","gateway":"g","ts":"yesterday"}"#, "bad timestamp \"yesterday\""),
        (#"{"type":"connect","user":"","conn":"c","gateway":"g","ts":1}"#, "user id is empty"),
        (#"{"type":"connect","user":"b","conn":"","gateway":"g","ts":1}"#, "conn is empty"),
        (#"{"type":"connect","user":"b","user":"c","conn":"c","gateway":"g","ts":1}"#, "field \"user\" appears twice"),
        (#"{"type":"connect","user":"b","conn":"c","gateway":"g","ts":1"#, "malformed JSON"),
        (#"{"type":"connect","user":"b","conn":"c","gateway":"g","ts":1}}"#, "malformed JSON"),
        (#"["connect"]"#, "malformed JSON"),
        (#"{"type":"connect","user":"b\x","conn":"c","gateway":"g","ts":1}"#, "invalid escape"),
        (#"{"type":"connect","user":"\ud83d","conn":"c","gateway":"g","ts":1}"#, "unpaired surrogate"),
    ])
    func rejectsBadLinesWithAReason(line: String, reason: String) {
        let error = #expect(throws: EventParseError.self) { try parser.parse(line) }
        #expect(error?.reason.contains(reason) == true, "\(error?.reason ?? "no error") does not mention \(reason)")
    }

    @Test func rejectsOversizeFieldsAndLines() {
        let longUser = String(repeating: "u", count: 257)
        let error = #expect(throws: EventParseError.self) {
            try parser.parse(#"{"type":"connect","user":"\#(longUser)","conn":"c","gateway":"g","ts":1}"#)
        }
        #expect(error?.reason == "user id is 257 bytes; the limit is 256")
        #expect(throws: Never.self) {
            try parser.parse(#"{"type":"connect","user":"\#(String(repeating: "u", count: 256))","conn":"c","gateway":"g","ts":1}"#)
        }
        let padding = String(repeating: " ", count: 64 * 1024)
        let long = #"{"type":"connect","user":"b","conn":"c","gateway":"g","ts":1}"# + padding
        let lineError = #expect(throws: EventParseError.self) { try parser.parse(long) }
        #expect(lineError?.reason.contains("the limit is 65536") == true)
    }

    @Test func rejectsInvalidUTF8() {
        var bytes = Array(#"{"type":"connect","user":"b","conn":"c","gateway":"g","ts":1}"#.utf8)
        bytes[27] = 0xFF
        let error = #expect(throws: EventParseError.self) { try bytes.withUnsafeBytes { _ = try parser.parse($0) } }
        #expect(error?.reason == "line is not valid UTF-8")
    }

    /// Lines in the canonical form take a fast path; a leading space sends the same line through the
    /// general scanner. Random damage to canonical lines (quotes, escapes, digits, letters, bytes cut)
    /// must get the same verdict and the same event from both.
    @Test func canonicalFastPathAgreesWithTheGeneralScanner() {
        let lines = [
            #"{"type":"connect","user":"u648930","conn":"u648930-tablet-1482","gateway":"gw-8","ts":"2024-01-15T00:00:00.079Z"}"#,
            #"{"type":"disconnect","user":"bob","conn":"bob-phone-7f3a","gateway":"gw-1","ts":1705311663120}"#,
            #"{"type":"gateway_down","gateway":"gw-11","ts":"2024-02-29T23:59:59.999Z"}"#,
            #"{"type":"heartbeat","gateway":"gw-2","ts":253402300799999}"#,
        ]
        let replacements = Array(#"" \{}:,0195aZT.-xé"#.utf8) + [0x00, 0x80]
        var random = SystemRandomNumberGenerator()
        var agreed = 0
        for _ in 0..<20_000 {
            var bytes = Array(lines.randomElement(using: &random)?.utf8 ?? "".utf8)
            for _ in 0..<Int.random(in: 0...2, using: &random) {
                let at = Int.random(in: 0..<bytes.count, using: &random)
                switch Int.random(in: 0..<3, using: &random) {
                case 0: bytes[at] = replacements.randomElement(using: &random) ?? 32
                case 1: bytes.remove(at: at)
                default: bytes.insert(replacements.randomElement(using: &random) ?? 32, at: at)
                }
            }
            let fast = bytes.withUnsafeBytes { raw in Result { () throws(EventParseError) in try parser.parse(raw) } }
            let general = ([32] + bytes).withUnsafeBytes { raw in Result { () throws(EventParseError) in try parser.parse(raw) } }
            switch (fast, general) {
            case (.success(let a), .success(let b)):
                #expect(a == b, "\(String(decoding: bytes, as: UTF8.self))")
                agreed += 1
            case (.failure, .failure):
                agreed += 1
            default:
                Issue.record("fast path and scanner disagree on \(String(decoding: bytes, as: UTF8.self)): \(fast) vs \(general)")
            }
        }
        #expect(agreed == 20_000)
    }

    @Test func badLineAppendsNothing() {
        var buffer = RecordBuffer()
        let bad = Array(#"{"type":"connect","user":"b","conn":"c","gateway":"g","ts":"no"}"#.utf8)
        #expect(throws: EventParseError.self) { try bad.withUnsafeBytes { try parser.append($0, to: &buffer) } }
        #expect(buffer.isEmpty && buffer.payloadBytes == 0)
    }
}

@Suite struct NDJSONLinesTests {
    @Test func linesAreCutAtNewlinesTrimmedOfOneCarriageReturnAndBlankOnesSkippedButCounted() {
        let input = "a\r\n\n  \t\r\nb\r\r\nc"
        var seen: [(Int, String)] = []
        Array(input.utf8).withUnsafeBytes { raw in
            NDJSONLines.forEach(in: raw) { number, line in seen.append((number, String(decoding: line, as: UTF8.self))) }
        }
        #expect(seen.map(\.0) == [1, 4, 5] && seen.map(\.1) == ["a", "b\r", "c"])
    }
}
