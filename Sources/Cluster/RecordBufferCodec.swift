import NIOCore
import SegmentLog

/// How a request's records travel in one JetStream message: a version byte, then per record its time,
/// key and value, lengths as unsigned LEB128 varints (a null key as length 0 with a flag).
///
///     u8  version (1)
///     varint count
///     count × (i64 timestamp little-endian, u8 flags (bit 0: key present), varint key length, key,
///              varint value length, value)
///
/// One message is one request of the node (a gateway's POST, a socket's connect): the unit that is
/// acknowledged, de-duplicated by `Nats-Msg-Id`, and materialized as one append.
public enum RecordBufferCodec {
    static let version: UInt8 = 1

    public struct DecodeError: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    public static func encode(_ records: RecordBuffer) -> ByteBuffer {
        var out = ByteBuffer()
        out.reserveCapacity(records.payloadBytes + 16 * records.count + 8)
        out.writeInteger(version)
        writeVarint(UInt64(records.count), to: &out)
        for index in 0..<records.count {
            out.writeInteger(records.timestamp(at: index), endianness: .little)
            records.withRecord(at: index) { key, value in
                out.writeInteger(UInt8(key == nil ? 0 : 1))
                writeVarint(UInt64(key?.count ?? 0), to: &out)
                if let key { out.writeBytes(key) }
                writeVarint(UInt64(value.count), to: &out)
                out.writeBytes(value)
            }
        }
        return out
    }

    public static func decode(_ input: ByteBuffer) throws(DecodeError) -> RecordBuffer {
        var buffer = input
        guard buffer.readInteger(as: UInt8.self) == version else { throw DecodeError(description: "not a version-\(version) record message") }
        let count = try readVarint(&buffer)
        guard count <= UInt64(buffer.readableBytes) else { throw DecodeError(description: "the message claims \(count) records in \(buffer.readableBytes) bytes") }
        var records = RecordBuffer()
        for _ in 0..<count {
            guard let timestamp = buffer.readInteger(endianness: .little, as: Int64.self), let flags = buffer.readInteger(as: UInt8.self) else {
                throw DecodeError(description: "a record is cut short")
            }
            let keyLength = Int(try readVarint(&buffer))
            guard keyLength <= buffer.readableBytes, let key = buffer.readBytes(length: keyLength) else { throw DecodeError(description: "a key runs past the message") }
            let valueLength = Int(try readVarint(&buffer))
            guard valueLength <= buffer.readableBytes, let value = buffer.readBytes(length: valueLength) else { throw DecodeError(description: "a value runs past the message") }
            records.append(timestamp: timestamp, key: flags & 1 == 1 ? key : nil, value: value)
        }
        guard buffer.readableBytes == 0 else { throw DecodeError(description: "\(buffer.readableBytes) bytes after the last record") }
        return records
    }

    static func writeVarint(_ value: UInt64, to out: inout ByteBuffer) {
        var value = value
        while value >= 0x80 {
            out.writeInteger(UInt8(value & 0x7F) | 0x80)
            value >>= 7
        }
        out.writeInteger(UInt8(value))
    }

    static func readVarint(_ buffer: inout ByteBuffer) throws(DecodeError) -> UInt64 {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while shift < 64 {
            guard let byte = buffer.readInteger(as: UInt8.self) else { throw DecodeError(description: "a length is cut short") }
            value |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return value }
            shift += 7
        }
        throw DecodeError(description: "a length is longer than 64 bits")
    }
}
