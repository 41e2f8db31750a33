#if canImport(Glibc)
import Glibc
#endif
import SegmentLog

/// Why an NDJSON line was refused. `reason` reads as a sentence fragment after "line N: ".
public struct EventParseError: Error, Sendable, Equatable, CustomStringConvertible {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// Parses NDJSON presence events, one line at a time, and encodes them straight into a `RecordBuffer`.
///
/// The schema (README.md has the full table):
///
///     {"type":"connect","user":"bob","conn":"bob-phone-7f3a","gateway":"gw-1","ts":"2024-01-15T09:41:03.120Z"}
///
/// `type` is `connect`, `disconnect`, `gateway_down` or `heartbeat`; `user` and `conn` (connection
/// events only) and `gateway` are non-empty strings of at most 256 bytes; `ts` is an ISO-8601 string
/// with a zone or integer epoch milliseconds; `id` (optional) is a string of at most 256 bytes. Other
/// fields are ignored. A line is at most 64 KiB of UTF-8.
///
/// It is a hand-written scanner over the line's bytes: no `String` or dictionary per line.
public final class NDJSONEventParser {
    /// Decoded bytes of strings that held escapes (never longer than the line).
    private let scratch: UnsafeMutableRawPointer

    /// Where the key and value of the event being appended are built.
    private let value: UnsafeMutableRawPointer

    public init() {
        scratch = UnsafeMutableRawPointer.allocate(byteCount: PresenceEvent.Limits.lineBytes + 16, alignment: 8)
        value = UnsafeMutableRawPointer.allocate(byteCount: PresenceEvent.Limits.userBytes + EventCodec.maxValueBytes, alignment: 8)
    }

    deinit {
        scratch.deallocate()
        value.deallocate()
    }

    /// The fields of one line, pointing into the line or the scratch buffer.
    private struct Fields {
        var kind: EventKind?
        var user: UnsafeRawBufferPointer?
        var conn: UnsafeRawBufferPointer?
        var gateway: UnsafeRawBufferPointer?
        var timestamp: Int64?
        var id: UnsafeRawBufferPointer?
    }

    /// Parses `line` (without its newline) into an event.
    public func parse(_ line: UnsafeRawBufferPointer) throws(EventParseError) -> PresenceEvent {
        var fields = Fields()
        try parseFields(line, into: &fields)
        guard let kind = fields.kind, let gateway = fields.gateway, let timestamp = fields.timestamp
        else { throw EventParseError("internal: fields missing after validation") }
        return PresenceEvent(kind: kind, user: fields.user.map { String(decoding: $0, as: UTF8.self) } ?? "",
                             conn: fields.conn.map { String(decoding: $0, as: UTF8.self) } ?? "",
                             gateway: String(decoding: gateway, as: UTF8.self), timestamp: timestamp,
                             id: fields.id.map { String(decoding: $0, as: UTF8.self) })
    }

    /// Parses a line given as a string.
    public func parse(_ line: String) throws(EventParseError) -> PresenceEvent {
        let bytes = Array(line.utf8)
        let result: Result<PresenceEvent, EventParseError> = bytes.withUnsafeBytes { raw in
            do throws(EventParseError) { return .success(try parse(raw)) } catch { return .failure(error) }
        }
        return try result.get()
    }

    /// Parses `line` and appends it as a record to `buffer`; on error nothing is appended.
    public func append(_ line: UnsafeRawBufferPointer, to buffer: inout RecordBuffer) throws(EventParseError) {
        var fields = Fields()
        try parseFields(line, into: &fields)
        try append(fields, to: &buffer)
    }

    /// Parses `line`, admits its event time through `lateArrivals`, and appends it as a record to
    /// `buffer`; on error (a bad line, or an event older than the horizon allows) nothing is appended.
    public func append(_ line: UnsafeRawBufferPointer, to buffer: inout RecordBuffer,
                       admittedBy lateArrivals: inout LateArrivalGuard) throws(EventParseError) {
        var fields = Fields()
        try parseFields(line, into: &fields)
        if let timestamp = fields.timestamp { try lateArrivals.admit(timestamp) }
        try append(fields, to: &buffer)
    }

    /// As `append(_:to:admittedBy:)`, for a sender bound to one gateway (a gateway's token): a valid
    /// line whose `gateway` is not `gateway` is not admitted or appended, and its gateway is returned so
    /// the caller can refuse it by name. Nil when the line was appended.
    public func append(_ line: UnsafeRawBufferPointer, to buffer: inout RecordBuffer, admittedBy lateArrivals: inout LateArrivalGuard,
                       boundTo gateway: [UInt8]) throws(EventParseError) -> String? {
        var fields = Fields()
        try parseFields(line, into: &fields)
        if let named = fields.gateway, !named.elementsEqual(gateway) { return String(decoding: named, as: UTF8.self) }
        if let timestamp = fields.timestamp { try lateArrivals.admit(timestamp) }
        try append(fields, to: &buffer)
        return nil
    }

    private func append(_ fields: Fields, to buffer: inout RecordBuffer) throws(EventParseError) {
        guard let kind = fields.kind, let gateway = fields.gateway, let timestamp = fields.timestamp
        else { throw EventParseError("internal: fields missing after validation") }
        // The key (the user id) and the value are built side by side, so the buffer takes them in one copy.
        var keyLength = -1
        if let user = fields.user, let userBase = user.baseAddress {
            value.copyShort(from: userBase, count: user.count)
            keyLength = user.count
        }
        let valueStart = max(keyLength, 0)
        let none = UnsafeRawBufferPointer(start: value, count: 0)
        let count = EventCodec.writeValue(kind: kind, user: fields.user ?? none, conn: fields.conn ?? none, gateway: gateway,
                                          id: fields.id, to: value + valueStart)
        buffer.append(timestamp: timestamp, keyLength: keyLength,
                      keyAndValue: UnsafeRawBufferPointer(start: value, count: valueStart + count))
    }

    // MARK: Scanning

    private func parseFields(_ line: UnsafeRawBufferPointer, into fields: inout Fields) throws(EventParseError) {
        guard line.count <= PresenceEvent.Limits.lineBytes else {
            throw EventParseError("line is \(line.count) bytes; the limit is \(PresenceEvent.Limits.lineBytes)")
        }
        guard let base = line.baseAddress else { throw EventParseError("empty line") }
        if !isASCII(line) && String(validating: line, as: UTF8.self) == nil {
            throw EventParseError("line is not valid UTF-8")
        }
        if !Self.canonicalFields(base, line.count, into: &fields) {
            fields = Fields()
            try scanFields(base, line.count, into: &fields)
        }

        guard let kind = fields.kind else { throw EventParseError("missing field \"type\"") }
        if kind.isGatewayEvent {
            if fields.user != nil { throw EventParseError("field \"user\" does not belong in a \(kind.name) event") }
            if fields.conn != nil { throw EventParseError("field \"conn\" does not belong in a \(kind.name) event") }
        } else {
            if fields.user == nil { throw EventParseError("missing field \"user\"") }
            if fields.conn == nil { throw EventParseError("missing field \"conn\"") }
        }
        if fields.gateway == nil { throw EventParseError("missing field \"gateway\"") }
        if fields.timestamp == nil { throw EventParseError("missing field \"ts\"") }
        if !kind.isGatewayEvent {
            try checkLength(fields.user, "user id", limit: PresenceEvent.Limits.userBytes)
            try checkLength(fields.conn, "conn", limit: PresenceEvent.Limits.fieldBytes)
        }
        try checkLength(fields.gateway, "gateway", limit: PresenceEvent.Limits.fieldBytes)
        if fields.id != nil { try checkLength(fields.id, "id", limit: PresenceEvent.Limits.fieldBytes) }
    }

    /// The general reader: any field order, whitespace, escapes, unknown fields (skipped). Checks the
    /// JSON and each field's type; which fields an event needs is checked by the caller.
    private func scanFields(_ base: UnsafeRawPointer, _ count: Int, into fields: inout Fields) throws(EventParseError) {
        var scanner = JSONScanner(base: base, end: count, scratch: scratch)
        var seen: UInt8 = 0

        // { "key": value, ... }
        scanner.skipSpace()
        try scanner.expect(123, "expected '{' at the start of the event")
        scanner.skipSpace()
        if scanner.peek() == 125 {
            scanner.i += 1
        } else {
            while true {
                scanner.skipSpace()
                let key = try scanner.string()
                scanner.skipSpace()
                try scanner.expect(58, "expected ':' after a field name")
                scanner.skipSpace()
                let bit = Self.fieldBit(key)
                if bit != 0 && seen & bit != 0 {
                    throw EventParseError("field \"\(String(decoding: key, as: UTF8.self))\" appears twice")
                }
                seen |= bit
                switch bit {
                case 1:
                    fields.timestamp = try scanner.timestamp()
                case 2:
                    if scanner.peek() == 110 {
                        try scanner.literal("null")
                    } else {
                        fields.id = try scanner.requireString("id")
                    }
                case 4:
                    let name = try scanner.requireString("type")
                    if let kind = Self.kind(name) {
                        fields.kind = kind
                    } else {
                        throw EventParseError("unknown event type \"\(String(decoding: name.prefix(64), as: UTF8.self))\" (expected connect, disconnect, gateway_down or heartbeat)")
                    }
                case 8: fields.user = try scanner.requireString("user")
                case 16: fields.conn = try scanner.requireString("conn")
                case 32: fields.gateway = try scanner.requireString("gateway")
                default: try scanner.skipValue(depth: 1)
                }
                scanner.skipSpace()
                if scanner.peek() == 44 { scanner.i += 1; continue }
                try scanner.expect(125, "expected ',' or '}'")
                break
            }
        }
        scanner.skipSpace()
        guard scanner.i == scanner.end else { throw scanner.syntax("unexpected bytes after the event object") }
    }

    /// The fields of a line in the canonical form: the schema's field order, no whitespace, no escapes,
    /// no `id`, `ts` a string or digits, as in
    /// `{"type":"connect","user":"bob","conn":"bob-phone-7f3a","gateway":"gw-1","ts":"2024-01-15T09:41:03.120Z"}`
    /// (and `{"type":"heartbeat","gateway":"gw-1","ts":1705311663120}`). Gateways write this form, and
    /// reading it with fixed-position compares instead of the general loop makes ingest's parse about a
    /// third cheaper. Nil for any other line, which `scanFields` then reads (and explains, if it is
    /// bad): the fast path accepts nothing the general one would refuse and gives the same fields.
    /// False (with `fields` partly filled) for a line in any other form.
    @inline(__always)
    private static func canonicalFields(_ p: UnsafeRawPointer, _ n: Int, into fields: inout Fields) -> Bool {
        guard n >= 40, p.loadUnaligned(as: UInt64.self) == 0x3A22_6570_7974_227B,  // {"type":
              p.load(fromByteOffset: 8, as: UInt8.self) == 34,
              let kindEnd = plainStringEnd(p, from: 9, n),
              let kind = kind(UnsafeRawBufferPointer(start: p + 9, count: kindEnd - 9))
        else { return false }
        fields.kind = kind
        var i = kindEnd + 1
        if !kind.isGatewayEvent {
            guard let user = shortNamedString(p, n, at: i, name: 0x3A22_7265_7375_222C),  // ,"user":
                  let conn = shortNamedString(p, n, at: user.next, name: 0x3A22_6E6E_6F63_222C)  // ,"conn":
            else { return false }
            fields.user = user.value
            fields.conn = conn.value
            i = conn.next
        }
        guard n - i >= 12, p.loadUnaligned(fromByteOffset: i, as: UInt64.self) == 0x6177_6574_6167_222C,  // ,"gatewa
              p.loadUnaligned(fromByteOffset: i + 8, as: UInt32.self) == 0x223A_2279,  // y":"
              let gatewayEnd = plainStringEnd(p, from: i + 12, n)
        else { return false }
        fields.gateway = UnsafeRawBufferPointer(start: p + i + 12, count: gatewayEnd - i - 12)
        i = gatewayEnd + 1
        // ,"ts": then the time, then the closing brace as the line's last byte.
        guard n - i >= 8, p.loadUnaligned(fromByteOffset: i, as: UInt64.self) & 0xFFFF_FFFF_FFFF == 0x3A22_7374_222C,
              p.load(fromByteOffset: n - 1, as: UInt8.self) == 125
        else { return false }
        i += 6
        if p.load(fromByteOffset: i, as: UInt8.self) == 34 {
            guard let timeEnd = plainStringEnd(p, from: i + 1, n), timeEnd == n - 2,
                  let ms = Timestamp.parseISO8601(UnsafeRawBufferPointer(start: p + i + 1, count: timeEnd - i - 1))
            else { return false }
            fields.timestamp = ms
        } else {
            // Epoch milliseconds: 1 to 15 digits (the largest allowed has 15), nothing else.
            let digits = n - 1 - i
            guard digits >= 1 && digits <= 15 else { return false }
            var ms: Int64 = 0
            for j in i..<(n - 1) {
                let c = p.load(fromByteOffset: j, as: UInt8.self)
                guard c >= 48 && c <= 57 else { return false }
                ms = ms * 10 + Int64(c - 48)
            }
            guard ms <= Timestamp.maxMilliseconds else { return false }
            fields.timestamp = ms
        }
        return true
    }

    /// `,"name":"…"` at `i` for a four-letter name, whose first eight bytes are `name` (little-endian):
    /// the string's bytes and the index after its closing quote.
    @inline(__always)
    private static func shortNamedString(_ p: UnsafeRawPointer, _ n: Int, at i: Int, name: UInt64) -> (value: UnsafeRawBufferPointer, next: Int)? {
        guard n - i >= 9, p.loadUnaligned(fromByteOffset: i, as: UInt64.self) == name, p.load(fromByteOffset: i + 8, as: UInt8.self) == 34,
              let end = plainStringEnd(p, from: i + 9, n)
        else { return nil }
        return (UnsafeRawBufferPointer(start: p + i + 9, count: end - i - 9), end + 1)
    }

    /// The index of the quote that ends the string whose first byte is at `start`, if no escape or
    /// control character comes first.
    @inline(__always)
    private static func plainStringEnd(_ p: UnsafeRawPointer, from start: Int, _ n: Int) -> Int? {
        let i = firstSpecialByte(p, from: start, n)
        return i < n && p.load(fromByteOffset: i, as: UInt8.self) == 34 ? i : nil
    }

    // Field names and kinds compared as little-endian words: "type" is 0x65707974, and so on.

    /// The bit of a known field name, 0 for any other.
    @inline(__always)
    private static func fieldBit(_ key: UnsafeRawBufferPointer) -> UInt8 {
        guard let p = key.baseAddress else { return 0 }
        switch key.count {
        case 2:
            let word = p.loadUnaligned(as: UInt16.self)
            return word == 0x7374 ? 1 : word == 0x6469 ? 2 : 0  // "ts", "id"
        case 4:
            switch p.loadUnaligned(as: UInt32.self) {
            case 0x6570_7974: return 4  // "type"
            case 0x7265_7375: return 8  // "user"
            case 0x6E6E_6F63: return 16  // "conn"
            default: return 0
            }
        case 7:
            // "gate" and "eway" (bytes 3 to 6).
            return p.loadUnaligned(as: UInt32.self) == 0x6574_6167 && p.loadUnaligned(fromByteOffset: 3, as: UInt32.self) == 0x7961_7765 ? 32 : 0
        default:
            return 0
        }
    }

    /// The event kind a `type` value names.
    @inline(__always)
    private static func kind(_ name: UnsafeRawBufferPointer) -> EventKind? {
        guard let p = name.baseAddress else { return nil }
        switch name.count {
        case 7:  // "conn" + "nect"
            return p.loadUnaligned(as: UInt32.self) == 0x6E6E_6F63 && p.loadUnaligned(fromByteOffset: 3, as: UInt32.self) == 0x7463_656E ? .connect : nil
        case 10:  // "disc" + "conn" + "nect"
            return p.loadUnaligned(as: UInt32.self) == 0x6373_6964 && p.loadUnaligned(fromByteOffset: 3, as: UInt32.self) == 0x6E6E_6F63
                && p.loadUnaligned(fromByteOffset: 6, as: UInt32.self) == 0x7463_656E ? .disconnect : nil
        case 12:
            return memcmp(p, "gateway_down", 12) == 0 ? .gatewayDown : nil
        case 9:
            return memcmp(p, "heartbeat", 9) == 0 ? .heartbeat : nil
        default:
            return nil
        }
    }

    @inline(__always)
    private func checkLength(_ field: UnsafeRawBufferPointer?, _ name: String, limit: Int) throws(EventParseError) {
        let count = field?.count ?? 0
        if count == 0 { throw EventParseError("\(name) is empty") }
        if count > limit { throw EventParseError("\(name) is \(count) bytes; the limit is \(limit)") }
    }

    @inline(__always)
    private func isASCII(_ line: UnsafeRawBufferPointer) -> Bool {
        guard let base = line.baseAddress else { return true }
        var i = 0
        var accumulated: UInt64 = 0
        while line.count - i >= 32 {
            accumulated |= base.loadUnaligned(fromByteOffset: i, as: UInt64.self) | base.loadUnaligned(fromByteOffset: i + 8, as: UInt64.self)
                | base.loadUnaligned(fromByteOffset: i + 16, as: UInt64.self) | base.loadUnaligned(fromByteOffset: i + 24, as: UInt64.self)
            i += 32
        }
        while line.count - i >= 8 {
            accumulated |= base.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            i += 8
        }
        while i < line.count {
            accumulated |= UInt64(base.load(fromByteOffset: i, as: UInt8.self))
            i += 1
        }
        return accumulated & 0x8080_8080_8080_8080 == 0
    }
}

/// The index of the first quote, backslash or control character at or after `start`, or `n` if none:
/// eight bytes at a time (for each byte, a subtraction that borrows into bit 7 only from a byte below
/// the bound; the lowest flagged byte is always a true one).
@inline(__always)
func firstSpecialByte(_ p: UnsafeRawPointer, from start: Int, _ n: Int) -> Int {
    var i = start
    while n - i >= 8 {
        let word = p.loadUnaligned(fromByteOffset: i, as: UInt64.self)
        let quotes = word ^ 0x2222_2222_2222_2222
        let slashes = word ^ 0x5C5C_5C5C_5C5C_5C5C
        let found = ((quotes &- 0x0101_0101_0101_0101) & ~quotes | (slashes &- 0x0101_0101_0101_0101) & ~slashes
            | (word &- 0x2020_2020_2020_2020) & ~word) & 0x8080_8080_8080_8080
        if found != 0 { return i + found.trailingZeroBitCount >> 3 }
        i += 8
    }
    while i < n {
        let c = p.load(fromByteOffset: i, as: UInt8.self)
        if c == 34 || c == 92 || c < 0x20 { return i }
        i += 1
    }
    return n
}
