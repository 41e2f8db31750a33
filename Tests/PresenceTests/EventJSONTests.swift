import Foundation
import Testing
@testable import Presence

@Suite struct EventJSONTests {
    func literal(_ text: String) -> String {
        var out: [UInt8] = []
        EventJSON.appendString(text, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    @Test func plainStringsAreCopiedAndSpecialCharactersEscaped() throws {
        #expect(literal("hey bob, 9:42 — café 👋") == "\"hey bob, 9:42 — café 👋\"")
        #expect(literal("") == "\"\"")
        #expect(literal("say \"hi\"\\n\n\r\t\u{01}") == #""say \"hi\"\\n\n\r\t\u0001""#)
        // Whatever goes in comes back out of a JSON parser unchanged, bridged strings included.
        for text in ["plain", "quote \" and \\ backslash", "line\nbreak", "\u{1F}ctl", NSString(string: "bridged \"x\"") as String] {
            let parsed = try JSONSerialization.jsonObject(with: Data(("[" + literal(text) + "]").utf8)) as? [String]
            #expect(parsed == [text])
        }
    }
}
