import NIOCore

/// The headers of a message (HPUB / HMSG), in their order, with the status line the server may add.
///
/// On the wire a header block is a version line, an optional status and description, then MIME-style
/// fields and an empty line:
///
/// ```
/// NATS/1.0 503␍␊                     <- version, then status and description (server to client only)
/// Nats-Msg-Id: order-17␍␊            <- one line per field, "name: value"
/// Nats-Expected-Last-Sequence: 41␍␊
/// ␍␊                                 <- end of the block
/// ```
///
/// The first two fields are kept inline, so a message with one or two headers (a JetStream publish with its
/// `Nats-Msg-Id` and `Nats-Expected-Last-Sequence`) costs no allocation beyond its strings.
public struct NATSHeaders: Sendable, Equatable {
    /// One `name: value` line.
    public struct Field: Sendable, Equatable {
        public var name: String
        public var value: String
        public init(name: String, value: String) {
            self.name = name
            self.value = value
        }
    }

    /// The status code of the version line (`503` for "no responders", `408`, `404`, `100` for JetStream), if any.
    public var status: Int?
    /// The text after the status code, if any ("Request Timeout", "Idle Heartbeat").
    public var statusDescription: String?

    private var first: Field?
    private var second: Field?
    private var rest: [Field] = []

    /// Empty headers.
    public init() {}

    /// Headers holding `fields` in order.
    public init(_ fields: [(String, String)]) {
        for (name, value) in fields { append(name, value) }
    }

    /// The number of fields.
    public var count: Int { (first == nil ? 0 : 1) + (second == nil ? 0 : 1) + rest.count }

    /// Whether there are no fields (a status line alone still counts as empty).
    public var isEmpty: Bool { first == nil }

    /// Adds a field after the others (a name may appear more than once).
    public mutating func append(_ name: String, _ value: String) {
        let field = Field(name: name, value: value)
        if first == nil { first = field } else if second == nil { second = field } else { rest.append(field) }
    }

    /// The fields in order.
    public var fields: [Field] {
        var all: [Field] = []
        all.reserveCapacity(count)
        forEachField { all.append($0) }
        return all
    }

    /// The first value of the field `name` (compared without regard to ASCII case), if there is one.
    public subscript(name: String) -> String? {
        var found: String?
        forEachField { field in
            if found == nil, field.name.lowercased() == name.lowercased() { found = field.value }
        }
        return found
    }

    /// All values of the field `name` (compared without regard to ASCII case), in order.
    public func values(for name: String) -> [String] {
        var found: [String] = []
        forEachField { field in
            if field.name.lowercased() == name.lowercased() { found.append(field.value) }
        }
        return found
    }

    func forEachField(_ body: (Field) -> Void) {
        if let first { body(first) }
        if let second { body(second) }
        for field in rest { body(field) }
    }

    // MARK: Wire form

    private static let version = "NATS/1.0"

    /// The number of bytes ``encode(into:)`` writes (HPUB announces it before the block).
    var encodedLength: Int {
        var length = Self.version.utf8.count + 2 + 2
        forEachField { length += $0.name.utf8.count + 2 + $0.value.utf8.count + 2 }
        return length
    }

    /// Writes the block a client sends: the version line (no status), the fields and the empty line.
    func encode(into buffer: inout ByteBuffer) {
        buffer.writeString(Self.version)
        buffer.writeCRLF()
        forEachField { field in
            buffer.writeString(field.name)
            buffer.writeInteger(UInt8(ascii: ":"))
            buffer.writeInteger(UInt8(ascii: " "))
            buffer.writeString(field.value)
            buffer.writeCRLF()
        }
        buffer.writeCRLF()
    }

    /// Why these headers cannot be sent, or nil: a field name must be printable ASCII without a colon or
    /// white space, and no value may hold a line break.
    func validationProblem() -> String? {
        var problem: String?
        forEachField { field in
            guard problem == nil else { return }
            if field.name.isEmpty || field.name.utf8.contains(where: { $0 <= 32 || $0 >= 127 || $0 == UInt8(ascii: ":") }) {
                problem = "header name '\(field.name)' must be printable ASCII without ':' or white space"
            } else if field.value.utf8.contains(where: { $0 == 13 || $0 == 10 }) {
                problem = "the value of header '\(field.name)' holds a line break"
            }
        }
        return problem
    }

    /// Parses a header block as the server sends it (HMSG); nil when it does not start with `NATS/1.0`.
    public static func parse(_ block: ByteBuffer) -> NATSHeaders? {
        var headers = NATSHeaders()
        var lines = block.readableBytesView.split(separator: 10, omittingEmptySubsequences: false).makeIterator()
        guard var statusLine = lines.next().map({ Array($0) }) else { return nil }
        if statusLine.last == 13 { statusLine.removeLast() }
        guard statusLine.starts(with: version.utf8) else { return nil }
        let afterVersion = statusLine.dropFirst(version.utf8.count).drop(while: { $0 == 32 || $0 == 9 })
        if !afterVersion.isEmpty {
            let code = afterVersion.prefix(while: { $0 != 32 && $0 != 9 })
            headers.status = Int(String(decoding: code, as: UTF8.self))
            let text = afterVersion.dropFirst(code.count).drop(while: { $0 == 32 || $0 == 9 })
            if !text.isEmpty { headers.statusDescription = String(decoding: text, as: UTF8.self) }
        }
        while let rawLine = lines.next() {
            var line = Array(rawLine)
            if line.last == 13 { line.removeLast() }
            if line.isEmpty { continue }
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { continue }
            let name = String(decoding: line[..<colon], as: UTF8.self)
            let value = line[(colon + 1)...].drop(while: { $0 == 32 || $0 == 9 })
            headers.append(name, String(decoding: value, as: UTF8.self))
        }
        return headers
    }

    /// The status code of a raw header block (`NATS/1.0 503`), read without allocating; nil when there is none.
    static func status(of block: ByteBuffer) -> Int? {
        block.withUnsafeReadableBytes { bytes -> Int? in
            // "NATS/1.0" is 8 bytes; a status is a space and three digits after it.
            guard bytes.count >= 12, bytes[8] == 32 else { return nil }
            var code = 0
            for index in 9..<12 {
                let digit = bytes[index]
                guard digit >= 48, digit <= 57 else { return nil }
                code = code * 10 + Int(digit - 48)
            }
            if bytes.count > 12, bytes[12] != 32, bytes[12] != 13, bytes[12] != 9 { return nil }
            return code
        }
    }
}

extension ByteBuffer {
    @inline(__always)
    mutating func writeCRLF() {
        writeInteger(UInt16(0x0D0A), endianness: .big)
    }

    /// Writes `value` in decimal ASCII, without building a String.
    @inline(__always)
    mutating func writeDecimal(_ value: UInt64) {
        if value < 10 {
            writeInteger(UInt8(48 &+ value))  // one digit: 48 + value < 58
            return
        }
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes on the stack; a UInt64 has 20 digits at most
        var count = 0
        var rest = value
        withUnsafeMutableBytes(of: &digits) { raw in
            while rest > 0 {
                raw[23 - count] = UInt8(48 &+ rest % 10)  // a digit: 48 + (0...9)
                rest /= 10
                count += 1
            }
            writeBytes(UnsafeRawBufferPointer(rebasing: raw[(24 - count)..<24]))
        }
    }
}
