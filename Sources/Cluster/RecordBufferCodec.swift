import NIOCore
import SegmentLog

/// How a request's records travel in one JetStream message. One message is one request of the node (a
/// gateway's POST, a socket's connect): the unit that is acknowledged, de-duplicated by `Nats-Msg-Id`,
/// and materialized as one append.
///
/// Version 2 (written): the records as Kafka batches, LZ4-compressed once by the node that took the
/// request (`EncodedBatches`); every node writes those batches to its log as they are.
///
///     u8  version (2)
///     varint count (records)
///     the batches, offsets from 0
///
/// Version 1 (still read): per record its time, key and value, lengths as unsigned LEB128 varints.
///
///     u8  version (1)
///     varint count
///     count × (i64 timestamp little-endian, u8 flags (bit 0: key present), varint key length, key,
///              varint value length, value)
public enum RecordBufferCodec {
    static let version: UInt8 = 2

    public struct DecodeError: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    /// A message's records and, from a version-2 message, their batches as the stream carried them.
    public struct Decoded: Sendable {
        public var records: RecordBuffer
        public var batches: EncodedBatches?
    }

    /// A version-2 message of `records`, cut into batches as `configuration` cuts an append.
    public static func encode(_ records: RecordBuffer, configuration: LogConfiguration = .init()) -> ByteBuffer {
        let batches = EncodedBatches(encoding: records, configuration: configuration)
        var out = ByteBuffer()
        out.reserveCapacity(batches.bytes.count + 11)
        out.writeInteger(version)
        writeVarint(UInt64(records.count), to: &out)
        out.writeBytes(batches.bytes)
        return out
    }

    /// The records of a message of either version.
    public static func decode(_ input: ByteBuffer) throws(DecodeError) -> RecordBuffer {
        try decodeMessage(input).records
    }

    /// The records of a message of either version, with its batches when it is of version 2.
    public static func decodeMessage(_ input: ByteBuffer) throws(DecodeError) -> Decoded {
        do {
            return try input.withUnsafeReadableBytes { bytes in
                var reader = Reader(bytes: bytes)
                switch try reader.byte() {
                case 1: return Decoded(records: try decodeVersion1(&reader), batches: nil)
                case 2:
                    let count = try reader.varint()
                    let decoded: (batches: EncodedBatches, records: RecordBuffer)
                    do {
                        decoded = try EncodedBatches.decode(UnsafeRawBufferPointer(rebasing: bytes[reader.position...]))
                    } catch let error as EncodedBatches.DecodeError {
                        throw DecodeError(description: error.description)
                    }
                    guard UInt64(decoded.records.count) == count else {
                        throw DecodeError(description: "the message claims \(count) records and holds \(decoded.records.count)")
                    }
                    return Decoded(records: decoded.records, batches: decoded.batches)
                case let other: throw DecodeError(description: "a message of version \(other), not 1 or 2")
                }
            }
        } catch let error as DecodeError {
            throw error
        } catch {
            throw DecodeError(description: "\(error)")
        }
    }

    /// A version-1 message of `records` (what nodes wrote before version 2; for tests and the fuzz
    /// target's seeds).
    package static func encodeVersion1(_ records: RecordBuffer) -> ByteBuffer {
        var out = ByteBuffer()
        out.reserveCapacity(records.payloadBytes + 16 * records.count + 8)
        out.writeInteger(UInt8(1))
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

    /// A version-1 message's records, after its version byte; read in place, keys and values going from
    /// the message's bytes straight into the RecordBuffer.
    private static func decodeVersion1(_ reader: inout Reader) throws(DecodeError) -> RecordBuffer {
        let count = try reader.varint()
        guard count <= UInt64(reader.bytes.count) else { throw DecodeError(description: "the message claims \(count) records in \(reader.bytes.count) bytes") }
        var records = RecordBuffer()
        for _ in 0..<count {
            let timestamp = try reader.int64()
            let flags = try reader.byte()
            let key = try reader.bytes(Int(clamping: try reader.varint()), what: "a key")
            let value = try reader.bytes(Int(clamping: try reader.varint()), what: "a value")
            records.append(timestamp: timestamp, key: flags & 1 == 1 ? key : nil, value: value)
        }
        guard reader.position == reader.bytes.count else { throw DecodeError(description: "\(reader.bytes.count - reader.position) bytes after the last record") }
        return records
    }

    /// A cursor over a message's bytes; every read is checked against its end.
    private struct Reader {
        let bytes: UnsafeRawBufferPointer
        var position = 0

        mutating func byte() throws(DecodeError) -> UInt8 {
            guard position < bytes.count else { throw DecodeError(description: "a record is cut short") }
            defer { position += 1 }
            return bytes[position]
        }

        mutating func int64() throws(DecodeError) -> Int64 {
            guard bytes.count - position >= 8 else { throw DecodeError(description: "a record is cut short") }
            defer { position += 8 }
            return Int64(littleEndian: bytes.loadUnaligned(fromByteOffset: position, as: Int64.self))
        }

        mutating func varint() throws(DecodeError) -> UInt64 {
            var value: UInt64 = 0
            var shift: UInt64 = 0
            while shift < 64 {
                let byte = try byte()
                value |= UInt64(byte & 0x7F) << shift
                if byte & 0x80 == 0 { return value }
                shift += 7
            }
            throw DecodeError(description: "a length is longer than 64 bits")
        }

        mutating func bytes(_ count: Int, what: String) throws(DecodeError) -> UnsafeRawBufferPointer {
            guard count <= bytes.count - position else { throw DecodeError(description: "\(what) runs past the message") }
            defer { position += count }
            return UnsafeRawBufferPointer(rebasing: bytes[position..<position + count])
        }
    }

    static func writeVarint(_ value: UInt64, to out: inout ByteBuffer) {
        var value = value
        while value >= 0x80 {
            out.writeInteger(UInt8(value & 0x7F) | 0x80)
            value >>= 7
        }
        out.writeInteger(UInt8(value))
    }

}
