/// The rules every JSON the server reads is held to, events or not: valid UTF-8, valid JSON (escapes
/// included: a `\ud800` without its low half is refused), nesting at most 64 deep, nothing after the
/// value, and no field twice in one object, which parsers would otherwise settle differently (one
/// keeps the first, another the last). The messages are the event parser's ("malformed JSON at byte
/// 14: unpaired surrogate in \u escape", "field \"content\" appears twice").
///
/// For cold paths (a message body, a WebSocket frame): it reads the whole value once, before a
/// `Decodable` decode takes the fields.
public enum StrictJSON {
    /// Throws the first reason `bytes` breaks the rules.
    public static func check(_ bytes: [UInt8]) throws(EventParseError) {
        guard String(validating: bytes, as: UTF8.self) != nil else { throw EventParseError("not valid UTF-8") }
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: bytes.count + 16, alignment: 8)
        defer { scratch.deallocate() }
        let outcome: EventParseError? = bytes.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else { return EventParseError("empty: expected a JSON value") }
            var scanner = JSONScanner(base: base, end: raw.count, scratch: scratch)
            do throws(EventParseError) {
                try value(&scanner, depth: 0)
                scanner.skipSpace()
                guard scanner.i == scanner.end else { throw scanner.syntax("unexpected bytes after the value") }
                return nil
            } catch {
                return error
            }
        }
        if let outcome { throw outcome }
    }

    private static func value(_ scanner: inout JSONScanner, depth: Int) throws(EventParseError) {
        guard depth < 64 else { throw scanner.syntax("nesting deeper than 64") }
        scanner.skipSpace()
        guard let c = scanner.peek() else { throw scanner.syntax("expected a value") }
        switch c {
        case 123:  // {
            scanner.i += 1
            scanner.skipSpace()
            if scanner.peek() == 125 { scanner.i += 1; return }
            var names = Set<[UInt8]>()
            while true {
                scanner.skipSpace()
                let name = Array(try scanner.string())
                guard names.insert(name).inserted else {
                    throw EventParseError("field \"\(String(decoding: name.prefix(64), as: UTF8.self))\" appears twice")
                }
                scanner.skipSpace()
                try scanner.expect(58, "expected ':' after a field name")
                try value(&scanner, depth: depth + 1)
                scanner.skipSpace()
                if scanner.peek() == 44 { scanner.i += 1; continue }
                try scanner.expect(125, "expected ',' or '}'")
                return
            }
        case 91:  // [
            scanner.i += 1
            scanner.skipSpace()
            if scanner.peek() == 93 { scanner.i += 1; return }
            while true {
                try value(&scanner, depth: depth + 1)
                scanner.skipSpace()
                if scanner.peek() == 44 { scanner.i += 1; continue }
                try scanner.expect(93, "expected ',' or ']'")
                return
            }
        case 34: _ = try scanner.string()
        case 116: try scanner.literal("true")
        case 102: try scanner.literal("false")
        case 110: try scanner.literal("null")
        case 45, 48...57: _ = try scanner.number()
        default: throw scanner.syntax("expected a value")
        }
    }
}
