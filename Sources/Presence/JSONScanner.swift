#if canImport(Glibc)
import Glibc
#endif

/// A cursor over one line's bytes with the JSON pieces the event schema needs. A value type with
/// mutating methods, so the hot loop pays no reference counting or dynamic exclusivity checks.
struct JSONScanner {
    let base: UnsafeRawPointer
    let end: Int
    /// Where strings with escapes are decoded to (room for a whole line).
    let scratch: UnsafeMutableRawPointer
    var scratchUsed = 0
    var i = 0

    init(base: UnsafeRawPointer, end: Int, scratch: UnsafeMutableRawPointer) {
        self.base = base
        self.end = end
        self.scratch = scratch
    }

    @inline(__always) func peek() -> UInt8? { i < end ? base.load(fromByteOffset: i, as: UInt8.self) : nil }

    @inline(__always) mutating func skipSpace() {
        while i < end {
            let c = base.load(fromByteOffset: i, as: UInt8.self)
            if c == 32 || c == 9 || c == 10 || c == 13 { i += 1 } else { break }
        }
    }

    func syntax(_ what: String) -> EventParseError {
        EventParseError("malformed JSON at byte \(i + 1): \(what)")
    }

    @inline(__always) mutating func expect(_ byte: UInt8, _ what: @autoclosure () -> String) throws(EventParseError) {
        guard peek() == byte else { throw syntax(what()) }
        i += 1
    }

    mutating func requireString(_ name: String) throws(EventParseError) -> UnsafeRawBufferPointer {
        guard peek() == 34 else { throw EventParseError("field \"\(name)\" must be a string") }
        return try string()
    }

    /// Reads a string starting at its opening quote. Without escapes it points into the line.
    mutating func string() throws(EventParseError) -> UnsafeRawBufferPointer {
        try expect(34, "expected a string")
        let start = i
        i = firstSpecialByte(base, from: i, end)
        guard i < end else { throw syntax("unterminated string") }
        let c = base.load(fromByteOffset: i, as: UInt8.self)
        if c == 34 {
            i += 1
            return UnsafeRawBufferPointer(start: base + start, count: i - 1 - start)
        }
        if c < 0x20 { throw syntax("control character in a string") }
        return try escapedString(from: start)  // a backslash
    }

    /// The slow path of `string`: decodes escapes into the scratch buffer.
    private mutating func escapedString(from start: Int) throws(EventParseError) -> UnsafeRawBufferPointer {
        let out = scratch + scratchUsed
        var n = i - start
        out.copyMemory(from: base + start, byteCount: n)
        while i < end {
            let c = base.load(fromByteOffset: i, as: UInt8.self)
            if c == 34 {
                i += 1
                scratchUsed += n
                return UnsafeRawBufferPointer(start: out, count: n)
            }
            if c < 0x20 { throw syntax("control character in a string") }
            if c != 92 {
                out.storeBytes(of: c, toByteOffset: n, as: UInt8.self)
                n += 1
                i += 1
                continue
            }
            i += 1
            guard let escape = peek() else { break }
            i += 1
            let simple: UInt8?
            switch escape {
            case 34: simple = 34
            case 92: simple = 92
            case 47: simple = 47
            case 98: simple = 8
            case 102: simple = 12
            case 110: simple = 10
            case 114: simple = 13
            case 116: simple = 9
            case 117: simple = nil
            default: throw syntax("invalid escape \\\(Character(Unicode.Scalar(escape)))")
            }
            if let simple {
                out.storeBytes(of: simple, toByteOffset: n, as: UInt8.self)
                n += 1
                continue
            }
            var scalar = try hex4()
            if scalar >= 0xD800 && scalar < 0xDC00 {
                guard peek() == 92, i + 1 < end, base.load(fromByteOffset: i + 1, as: UInt8.self) == 117 else {
                    throw syntax("unpaired surrogate in \\u escape")
                }
                i += 2
                let low = try hex4()
                guard low >= 0xDC00 && low < 0xE000 else { throw syntax("unpaired surrogate in \\u escape") }
                scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
            } else if scalar >= 0xDC00 && scalar < 0xE000 {
                throw syntax("unpaired surrogate in \\u escape")
            }
            guard let unicode = Unicode.Scalar(scalar) else { throw syntax("invalid \\u escape") }
            for unit in UTF8.encode(unicode) ?? UTF8.EncodedScalar() {
                out.storeBytes(of: unit, toByteOffset: n, as: UInt8.self)
                n += 1
            }
        }
        throw syntax("unterminated string")
    }

    private mutating func hex4() throws(EventParseError) -> UInt32 {
        guard end - i >= 4 else { throw syntax("truncated \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let c = base.load(fromByteOffset: i, as: UInt8.self)
            let digit: UInt32
            switch c {
            case 48...57: digit = UInt32(c - 48)
            case 97...102: digit = UInt32(c - 87)
            case 65...70: digit = UInt32(c - 55)
            default: throw syntax("invalid \\u escape")
            }
            value = value << 4 | digit
            i += 1
        }
        return value
    }

    /// Reads `ts`: an ISO-8601 string or integer epoch milliseconds.
    mutating func timestamp() throws(EventParseError) -> Int64 {
        if peek() == 34 {
            let text = try string()
            guard let ms = Timestamp.parseISO8601(text) else {
                throw EventParseError("bad timestamp \"\(String(decoding: text.prefix(64), as: UTF8.self))\": expected ISO-8601 with a zone, e.g. 2024-01-15T09:41:03.120Z, between 1970 and 9999")
            }
            return ms
        }
        guard let c = peek(), c == 45 || (c >= 48 && c <= 57) else {
            throw EventParseError("field \"ts\" must be an ISO-8601 string or integer epoch milliseconds")
        }
        let (integer, text) = try number()
        guard let ms = integer else {
            throw EventParseError("bad timestamp \(String(decoding: text.prefix(64), as: UTF8.self)): epoch milliseconds must be a whole number")
        }
        guard ms >= 0 && ms <= Timestamp.maxMilliseconds else {
            throw EventParseError("bad timestamp \(ms): epoch milliseconds must be between 0 (1970) and \(Timestamp.maxMilliseconds) (year 9999)")
        }
        return ms
    }

    /// Scans a JSON number; returns its value when it is an integer that fits in 64 bits, else nil.
    mutating func number() throws(EventParseError) -> (integer: Int64?, text: UnsafeRawBufferPointer) {
        let start = i
        var negative = false
        if peek() == 45 { negative = true; i += 1 }
        var value: Int64 = 0
        var overflow = false
        var digits = 0
        while let c = peek(), c >= 48 && c <= 57 {
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(Int64(c - 48))
            overflow = overflow || o1 || o2
            value = a
            digits += 1
            i += 1
        }
        guard digits > 0 else { throw syntax("invalid number") }
        var integral = true
        if peek() == 46 {
            integral = false
            i += 1
            var fraction = 0
            while let c = peek(), c >= 48 && c <= 57 { i += 1; fraction += 1 }
            guard fraction > 0 else { throw syntax("invalid number") }
        }
        if peek() == 101 || peek() == 69 {
            integral = false
            i += 1
            if peek() == 43 || peek() == 45 { i += 1 }
            var exponent = 0
            while let c = peek(), c >= 48 && c <= 57 { i += 1; exponent += 1 }
            guard exponent > 0 else { throw syntax("invalid number") }
        }
        let text = UnsafeRawBufferPointer(start: base + start, count: i - start)
        guard integral && !overflow else { return (nil, text) }
        return (negative ? -value : value, text)
    }

    mutating func literal(_ word: StaticString) throws(EventParseError) {
        let count = word.utf8CodeUnitCount
        guard end - i >= count, memcmp(base + i, word.utf8Start, count) == 0 else { throw syntax("expected a value") }
        i += count
    }

    /// Skips any JSON value (for fields the schema does not know).
    mutating func skipValue(depth: Int) throws(EventParseError) {
        guard depth < 64 else { throw syntax("nesting deeper than 64") }
        skipSpace()
        guard let c = peek() else { throw syntax("expected a value") }
        switch c {
        case 34:
            _ = try string()
        case 123, 91:
            let close: UInt8 = c == 123 ? 125 : 93
            i += 1
            skipSpace()
            if peek() == close { i += 1; return }
            while true {
                if c == 123 {
                    skipSpace()
                    _ = try string()
                    skipSpace()
                    try expect(58, "expected ':' after a field name")
                }
                try skipValue(depth: depth + 1)
                skipSpace()
                if peek() == 44 { i += 1; continue }
                try expect(close, c == 123 ? "expected ',' or '}'" : "expected ',' or ']'")
                return
            }
        case 116: try literal("true")
        case 102: try literal("false")
        case 110: try literal("null")
        case 45, 48...57: _ = try number()
        default: throw syntax("expected a value")
        }
    }
}
