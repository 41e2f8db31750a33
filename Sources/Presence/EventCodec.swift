import SegmentLog

/// The binary form of a presence event inside a log record. The record's key is the user id (UTF-8)
/// and its timestamp the event time; the value holds the rest:
///
///     byte 0      flags: bits 0-3 kind (1 connect, 2 disconnect, 3 gateway_down, 4 heartbeat)
///                        bit 4    conn is stored without its "<user>-" prefix
///                        bit 5    an id follows
///                        bit 6    conn ends in packed hex digits
///     varint n    gateway length, then n bytes of gateway
///     varint n    conn text length, then n bytes (without the "<user>-" prefix with bit 4, without
///                 the packed hex digits with bit 6)
///     varint m    (bit 6) m bytes of packed hex: 2m lowercase hex digits, high nibble first, that end the conn
///     varint n    (bit 5) id length, then n bytes of id
///
/// Gateway events (3, 4) have a null key and hold only the gateway (and the id, with bit 5).
///
/// Varints are unsigned LEB128. Conn ids are usually minted from the user id and random hex
/// (`bob-phone-7f3a`, UUIDs): dropping the prefix saves a user id's worth of bytes per event, and
/// packing the trailing hex halves the part that no compressor can shrink. The encoding is
/// canonical: equal events have equal bytes.
public enum EventCodec {
    static let relativeConn: UInt8 = 0x10
    static let hasID: UInt8 = 0x20
    static let packedHex: UInt8 = 0x40
    /// Trailing hex runs shorter than this stay as text.
    static let minimumPackedDigits = 4

    /// The most bytes a value can take (fields at their 256-byte limits).
    public static let maxValueBytes = 1 + 3 * (2 + PresenceEvent.Limits.fieldBytes) + 2 + PresenceEvent.Limits.fieldBytes / 2

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
        var flags = kind.rawValue
        if kind.isGatewayEvent {
            if id != nil { flags |= hasID }
            out.storeBytes(of: flags, as: UInt8.self)
            var position = 1 + writeField(gateway, to: out + 1)
            if let id { position += writeField(id, to: out + position) }
            return position
        }
        var connBytes = conn
        if conn.count > user.count + 1, let connBase = conn.baseAddress, let userBase = user.baseAddress,
           conn[user.count] == 45, memcmp(connBase, userBase, user.count) == 0 {
            flags |= relativeConn
            connBytes = UnsafeRawBufferPointer(rebasing: conn[(user.count + 1)...])
        }
        if id != nil { flags |= hasID }
        // The longest even run of lowercase hex digits at the end of the conn.
        var run = 0
        while run < connBytes.count {
            let c = connBytes[connBytes.count - 1 - run]
            guard (c >= 48 && c <= 57) || (c >= 97 && c <= 102) else { break }
            run += 1
        }
        run &= ~1
        if run >= minimumPackedDigits { flags |= packedHex } else { run = 0 }
        out.storeBytes(of: flags, as: UInt8.self)
        var position = 1
        position += writeField(gateway, to: out + position)
        position += writeField(UnsafeRawBufferPointer(rebasing: connBytes[..<(connBytes.count - run)]), to: out + position)
        if run > 0 {
            position += Varint.writeUnsigned(UInt64(run / 2), to: out + position)
            var i = connBytes.count - run
            while i < connBytes.count {
                out.storeBytes(of: nibble(connBytes[i]) << 4 | nibble(connBytes[i + 1]), toByteOffset: position, as: UInt8.self)
                position += 1
                i += 2
            }
        }
        if let id { position += writeField(id, to: out + position) }
        return position
    }

    @inline(__always)
    private static func writeField(_ field: UnsafeRawBufferPointer, to out: UnsafeMutableRawPointer) -> Int {
        let size = Varint.writeUnsigned(UInt64(field.count), to: out)
        if let base = field.baseAddress, field.count > 0 { (out + size).copyMemory(from: base, byteCount: field.count) }
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
        /// Packed trailing hex digits of the conn (two a byte), if any.
        public let connHex: UnsafeRawBufferPointer?
        public let id: UnsafeRawBufferPointer?
        /// The conn's encoded bytes (text and packed hex with their lengths). With the user id they identify
        /// a connection: the encoding is canonical, so the same (user, conn) always gives the same bytes.
        public let connIdentity: UnsafeRawBufferPointer

        /// Appends the conn's full text, given the record's user id.
        public func appendConn(user: UnsafeRawBufferPointer, to out: inout [UInt8]) {
            if connIsRelative {
                out.append(contentsOf: user)
                out.append(45)
            }
            out.append(contentsOf: storedConn)
            if let connHex {
                let digits = Array("0123456789abcdef".utf8)
                for byte in connHex {
                    out.append(digits[Int(byte >> 4)])
                    out.append(digits[Int(byte & 15)])
                }
            }
        }
    }

    /// Why a value could not be decoded.
    public struct DecodeError: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    /// Decodes a value without copying; throws when it is malformed.
    @inline(__always)
    public static func view(_ value: UnsafeRawBufferPointer) throws(DecodeError) -> View {
        guard let base = value.baseAddress, value.count >= 2 else { throw DecodeError(description: "event value is too short") }
        let flags = value[0]
        guard let kind = EventKind(rawValue: flags & 0x0F), flags & 0x80 == 0 else {
            throw DecodeError(description: "event value has unknown kind or flags 0x\(String(flags, radix: 16))")
        }
        var position = 1
        @inline(__always) func field() throws(DecodeError) -> UnsafeRawBufferPointer {
            guard let (length, size) = Varint.readUnsigned(base + position, available: value.count - position),
                  length <= UInt64(value.count - position - size)
            else { throw DecodeError(description: "event value has a field running past its end") }
            position += size
            let bytes = UnsafeRawBufferPointer(start: base + position, count: Int(length))
            position += Int(length)
            return bytes
        }
        if kind.isGatewayEvent {
            guard flags & (relativeConn | packedHex) == 0 else { throw DecodeError(description: "gateway event value has conn flags") }
            let gateway = try field()
            let id = flags & hasID != 0 ? try field() : nil
            guard position == value.count else { throw DecodeError(description: "event value has \(value.count - position) stray bytes") }
            return View(kind: kind, gateway: gateway, storedConn: UnsafeRawBufferPointer(start: base, count: 0), connIsRelative: false,
                        connHex: nil, id: id, connIdentity: UnsafeRawBufferPointer(start: base, count: 0))
        }
        let gateway = try field()
        let connStart = position
        let conn = try field()
        let hex = flags & packedHex != 0 ? try field() : nil
        let connEnd = position
        let id = flags & hasID != 0 ? try field() : nil
        guard position == value.count else { throw DecodeError(description: "event value has \(value.count - position) stray bytes") }
        return View(kind: kind, gateway: gateway, storedConn: conn, connIsRelative: flags & relativeConn != 0,
                    connHex: hex, id: id, connIdentity: UnsafeRawBufferPointer(start: base + connStart, count: connEnd - connStart))
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
