import SegmentLog

/// The binary form of a presence event inside a log record. The record's key is the user id (UTF-8)
/// and its timestamp the event time; the value holds the rest (layout 2):
///
///     m bytes     packed hex: 2m lowercase hex digits, high nibble first, that end the conn (m = 0...7)
///     byte        flags: bit 7 always set (layout 2)
///                        bits 0-3 kind (1 connect, 2 disconnect, 3 gateway_down, 4 heartbeat)
///                        bit 4    conn is stored without its "<user>-" prefix
///                        bit 5    an id follows the gateway
///     varint n    gateway length, then n bytes of gateway
///     varint n    (bit 5) id length, then n bytes of id
///     ...         the conn's text: every byte up to the tail (without the "<user>-" prefix with bit 4,
///                 without the packed hex digits)
///     byte        tail: 0xF8 | m
///
/// Gateway events (3, 4) have a null key, no packed hex and no conn text.
///
/// Varints are unsigned LEB128. Conn ids are usually minted from the user id and random hex
/// (`bob-phone-7f3a`, UUIDs): dropping the prefix saves a user id's worth of bytes per event, and
/// packing the trailing hex halves the part that no compressor can shrink. The order is for LZ4: the
/// random bytes (packed hex) sit next to the record's key and timestamp and offset deltas, so that
/// they form one run of literals, and everything that repeats from event to event (flags, gateway,
/// the conn's text, the tail, the next record's header) one long match that starts with the most
/// telling bytes (kind and gateway). Finding the flags takes the tail, read first. Measured on the
/// benchmark stream: 16.6 bytes/event with the hex at the end of the value, 15.8 in this order.
/// The encoding is canonical: equal events have equal bytes.
public enum EventCodec {
    @usableFromInline static let layoutBit: UInt8 = 0x80
    @usableFromInline static let relativeConn: UInt8 = 0x10
    @usableFromInline static let hasID: UInt8 = 0x20
    @usableFromInline static let tailMark: UInt8 = 0xF8
    /// Trailing hex runs shorter than this stay as text; longer ones have their last `maximumPackedDigits`
    /// digits packed.
    static let minimumPackedDigits = 4
    static let maximumPackedDigits = 14

    /// The most bytes a value can take (fields at their 256-byte limits).
    public static let maxValueBytes = maximumPackedDigits / 2 + 1 + 2 * (2 + PresenceEvent.Limits.fieldBytes) + PresenceEvent.Limits.fieldBytes + 1
    /// The most bytes `View.writeConnIdentity` writes.
    public static let maxConnIdentityBytes = 2 + maximumPackedDigits / 2 + PresenceEvent.Limits.fieldBytes

    /// Appends the value bytes for an event to `out`.
    public static func appendValue(kind: EventKind, user: UnsafeRawBufferPointer, conn: UnsafeRawBufferPointer,
                                   gateway: UnsafeRawBufferPointer, id: UnsafeRawBufferPointer?, to out: inout [UInt8]) {
        withUnsafeTemporaryAllocation(byteCount: maxValueBytes, alignment: 1) { scratch in
            guard let base = scratch.baseAddress else { return }
            let count = writeValue(kind: kind, user: user, conn: conn, gateway: gateway, id: id, to: base)
            out.append(contentsOf: UnsafeRawBufferPointer(start: base, count: count))
        }
    }

    /// Writes the value bytes for an event at `out`, which has room for `maxValueBytes`; returns their count.
    /// Fields must keep `PresenceEvent.Limits`.
    @inline(__always)
    public static func writeValue(kind: EventKind, user: UnsafeRawBufferPointer, conn: UnsafeRawBufferPointer,
                                  gateway: UnsafeRawBufferPointer, id: UnsafeRawBufferPointer?, to out: UnsafeMutableRawPointer) -> Int {
        var flags = kind.rawValue | layoutBit
        if id != nil { flags |= hasID }
        if kind.isGatewayEvent {
            out.storeBytes(of: flags, as: UInt8.self)
            var position = 1 + writeField(gateway, to: out + 1)
            if let id { position += writeField(id, to: out + position) }
            out.storeBytes(of: tailMark, toByteOffset: position, as: UInt8.self)
            return position + 1
        }
        var connBytes = conn
        if conn.count > user.count + 1, let connBase = conn.baseAddress, let userBase = user.baseAddress,
           conn[user.count] == 45, memcmp(connBase, userBase, user.count) == 0 {
            flags |= relativeConn
            connBytes = UnsafeRawBufferPointer(rebasing: conn[(user.count + 1)...])
        }
        // The last digits of the longest even run of lowercase hex digits at the end of the conn.
        var run = 0
        while run < min(connBytes.count, maximumPackedDigits) {
            let c = connBytes[connBytes.count - 1 - run]
            guard (c >= 48 && c <= 57) || (c >= 97 && c <= 102) else { break }
            run += 1
        }
        run &= ~1
        if run < minimumPackedDigits { run = 0 }
        var position = 0
        var i = connBytes.count - run
        while i < connBytes.count {
            out.storeBytes(of: nibble(connBytes[i]) << 4 | nibble(connBytes[i + 1]), toByteOffset: position, as: UInt8.self)
            position += 1
            i += 2
        }
        out.storeBytes(of: flags, toByteOffset: position, as: UInt8.self)
        position += 1
        position += writeField(gateway, to: out + position)
        if let id { position += writeField(id, to: out + position) }
        let textCount = connBytes.count - run
        if let base = connBytes.baseAddress, textCount > 0 { (out + position).copyShort(from: base, count: textCount) }
        position += textCount
        out.storeBytes(of: tailMark | UInt8(run / 2), toByteOffset: position, as: UInt8.self)
        return position + 1
    }

    @inline(__always)
    private static func writeField(_ field: UnsafeRawBufferPointer, to out: UnsafeMutableRawPointer) -> Int {
        let size = Varint.writeUnsigned(UInt64(field.count), to: out)
        if let base = field.baseAddress, field.count > 0 { (out + size).copyShort(from: base, count: field.count) }
        return size + field.count
    }

    @inline(__always)
    private static func nibble(_ c: UInt8) -> UInt8 { c <= 57 ? c - 48 : c - 87 }

    /// The fields of an encoded value, pointing into the value's bytes.
    public struct View {
        public let kind: EventKind
        public let gateway: UnsafeRawBufferPointer
        /// The conn's text part as stored: without the `<user>-` prefix when `connIsRelative`, and without
        /// the packed hex digits `connHex` holds.
        public let storedConn: UnsafeRawBufferPointer
        public let connIsRelative: Bool
        /// Packed trailing hex digits of the conn (two a byte); empty when there are none.
        public let connHex: UnsafeRawBufferPointer
        public let id: UnsafeRawBufferPointer?

        @usableFromInline
        init(kind: EventKind, gateway: UnsafeRawBufferPointer, storedConn: UnsafeRawBufferPointer, connIsRelative: Bool,
             connHex: UnsafeRawBufferPointer, id: UnsafeRawBufferPointer?) {
            self.kind = kind
            self.gateway = gateway
            self.storedConn = storedConn
            self.connIsRelative = connIsRelative
            self.connHex = connHex
            self.id = id
        }

        /// Appends the conn's full text, given the record's user id.
        public func appendConn(user: UnsafeRawBufferPointer, to out: inout [UInt8]) {
            if connIsRelative {
                out.append(contentsOf: user)
                out.append(45)
            }
            out.append(contentsOf: storedConn)
            let digits: StaticString = "0123456789abcdef"
            for byte in connHex {
                out.append(digits.utf8Start[Int(byte >> 4)])
                out.append(digits.utf8Start[Int(byte & 15)])
            }
        }

        /// Writes at `out` (room for `maxConnIdentityBytes`) bytes that, after the user id, identify the
        /// connection: `0xFE | relative`, the packed digits' count, the packed digits, the conn's text.
        /// Equal for equal (user, conn) and different otherwise, since the encoding is canonical; and
        /// since no UTF-8 user id holds a 0xFE or 0xFF byte, user id + identity never equals another
        /// user id + identity. Returns the count. Inlinable: the projector calls it for every event.
        @inlinable @inline(__always)
        public func writeConnIdentity(to out: UnsafeMutableRawPointer) -> Int {
            out.storeBytes(of: connIsRelative ? 0xFF : 0xFE, as: UInt8.self)
            out.storeBytes(of: UInt8(truncatingIfNeeded: connHex.count), toByteOffset: 1, as: UInt8.self)
            var position = 2
            if let base = connHex.baseAddress, connHex.count > 0 {
                (out + position).copyShort(from: base, count: connHex.count)
                position += connHex.count
            }
            if let base = storedConn.baseAddress, storedConn.count > 0 {
                (out + position).copyShort(from: base, count: storedConn.count)
                position += storedConn.count
            }
            return position
        }
    }

    /// Why a value could not be decoded.
    public struct DecodeError: Error, CustomStringConvertible, Sendable {
        public let description: String
        @usableFromInline init(description: String) { self.description = description }
    }

    /// Decodes a value without copying; throws when it is malformed.
    /// Inlinable: the reader, the projector and the benchmarks call it once per record.
    @inlinable @inline(__always)
    public static func view(_ value: UnsafeRawBufferPointer) throws(DecodeError) -> View {
        guard let base = value.baseAddress, value.count >= 3 else { throw DecodeError(description: "event value is too short") }
        let end = value.count - 1
        let tail = value[end]
        guard tail & tailMark == tailMark else {
            throw DecodeError(description: "event value ends in 0x\(String(tail, radix: 16)), not a layout-2 tail (a log written by an older PresenceLog?)")
        }
        let packed = Int(tail & 0x07)
        guard packed + 2 <= end else { throw DecodeError(description: "event value is too short for its \(packed) packed hex bytes") }
        let flags = value[packed]
        let kind: EventKind
        switch flags & 0xCF {  // the layout bit, bit 6 (never set) and the kind
        case 0x81: kind = .connect
        case 0x82: kind = .disconnect
        case 0x83: kind = .gatewayDown
        case 0x84: kind = .heartbeat
        default: throw DecodeError(description: "event value has unknown kind or flags 0x\(String(flags, radix: 16))")
        }
        var position = packed + 1
        @inline(__always) func field() throws(DecodeError) -> UnsafeRawBufferPointer {
            guard let (length, size) = Varint.readUnsigned(base + position, available: end - position),
                  length <= UInt64(end - position - size)
            else { throw DecodeError(description: "event value has a field running past its end") }
            position += size
            let bytes = UnsafeRawBufferPointer(start: base + position, count: Int(length))
            position += Int(length)
            return bytes
        }
        let gateway = try field()
        let id = flags & hasID != 0 ? try field() : nil
        let text = UnsafeRawBufferPointer(start: base + position, count: end - position)
        if kind.isGatewayEvent {
            guard packed == 0, flags & relativeConn == 0 else { throw DecodeError(description: "gateway event value has conn flags or packed hex") }
            guard text.isEmpty else { throw DecodeError(description: "event value has \(text.count) stray bytes") }
        }
        return View(kind: kind, gateway: gateway, storedConn: text, connIsRelative: flags & relativeConn != 0,
                    connHex: UnsafeRawBufferPointer(start: base, count: packed), id: id)
    }

    /// Decodes a record into an event.
    public static func decode(key: UnsafeRawBufferPointer?, value: UnsafeRawBufferPointer?, timestamp: Int64) throws(DecodeError) -> PresenceEvent {
        guard let value else { throw DecodeError(description: "presence record has no value") }
        let view = try view(value)
        if view.kind.isGatewayEvent {
            guard key == nil else { throw DecodeError(description: "gateway event record has a key") }
            return PresenceEvent.gateway(view.kind, gateway: String(decoding: view.gateway, as: UTF8.self), timestamp: timestamp,
                                         id: view.id.map { String(decoding: $0, as: UTF8.self) })
        }
        guard let key, key.count > 0 else { throw DecodeError(description: "connection event record has no user id key") }
        let user = String(decoding: key, as: UTF8.self)
        var conn: [UInt8] = []
        view.appendConn(user: key, to: &conn)
        return PresenceEvent(kind: view.kind, user: user, conn: String(decoding: conn, as: UTF8.self),
                             gateway: String(decoding: view.gateway, as: UTF8.self), timestamp: timestamp,
                             id: view.id.map { String(decoding: $0, as: UTF8.self) })
    }

    /// Appends `event` as a record to `buffer`.
    public static func append(_ event: PresenceEvent, to buffer: inout RecordBuffer) {
        let user = Array(event.user.utf8), conn = Array(event.conn.utf8), gateway = Array(event.gateway.utf8)
        let id = event.id.map { Array($0.utf8) }
        user.withUnsafeBytes { user in
            conn.withUnsafeBytes { conn in
                gateway.withUnsafeBytes { gateway in
                    buffer.append(timestamp: event.timestamp, writeKey: { key in
                        guard !event.kind.isGatewayEvent else { return false }
                        key.append(contentsOf: user)
                        return true
                    }) { out in
                        guard let id else {
                            appendValue(kind: event.kind, user: user, conn: conn, gateway: gateway, id: nil, to: &out)
                            return
                        }
                        id.withUnsafeBytes { id in
                            appendValue(kind: event.kind, user: user, conn: conn, gateway: gateway, id: id, to: &out)
                        }
                    }
                }
            }
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
