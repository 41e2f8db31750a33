import Foundation
import SegmentLog

/// What `ConversationStore` knows at a log offset, so that a restart reads only the log after it:
/// `DATA/messages-index/checkpoint`, replaced whole (temp file, fsync, rename) and checked by a CRC. It
/// is a cache like the index: deleted, torn or not fitting the log, it is ignored and the store is
/// rebuilt from the log (then a new one is written).
///
/// Big-endian; strings are a uint16 length and UTF-8 bytes:
///
///     magic             "PLCHATC1"
///     version           uint32  1
///     next offset       int64   the log offset the checkpoint covers up to (not included)
///     last batch        int64 segment, int64 position, uint32 CRC: the batch holding next offset - 1
///                       (all -1 / 0 when the log was empty), read back at open to know it is this log
///     index generation  uint64  the message index file's (`MessageIndex`)
///     index end         int64   the index's allocated end at the checkpoint
///     newest            int64   the newest record time (ms; Int64.min when none)
///     client-id window  int64   the window the client ids were kept for (ms)
///     conversations     uint32 count, then each, in creation order (its number is its place):
///                         id string, created int64, last seq uint32, last time int64,
///                         members uint16 count + strings,
///                         index pages uint32 count + uint32 units,
///                         newest message: uint32 length + its JSON (0: none; its seq and time are the
///                         last seq and last time above)
///     client ids        uint32 count, then each: fingerprint uint64, seq uint32, time int64
///     crc               uint32  CRC-32C of every byte before it
struct ChatCheckpoint: Equatable {
    static let magic = Array("PLCHATC1".utf8)
    static let version: UInt32 = 1
    static let fileName = "checkpoint"

    struct Conversation: Equatable {
        var id: String
        var members: [String]
        var createdAt: Int64
        var lastSeq: Int
        var lastTimestamp: Int64
        var pages: [UInt32]
        /// The newest message's JSON (as `Message.json`) and time.
        var newestJSON: [UInt8]?
    }

    struct BatchMark: Equatable {
        var segment: Int64
        var position: Int64
        var crc: UInt32
    }

    var nextOffset: Int64
    var lastBatch: BatchMark?
    var indexGeneration: UInt64
    var indexEnd: Int64
    var newest: Int64
    var clientIDWindow: Int64
    var conversations: [Conversation]
    var clientIDs: [(fingerprint: UInt64, entry: ClientIDWindow.Entry)]

    static func == (a: ChatCheckpoint, b: ChatCheckpoint) -> Bool {
        a.nextOffset == b.nextOffset && a.lastBatch == b.lastBatch && a.indexGeneration == b.indexGeneration && a.indexEnd == b.indexEnd
            && a.newest == b.newest && a.clientIDWindow == b.clientIDWindow && a.conversations == b.conversations
            && a.clientIDs.count == b.clientIDs.count
            && zip(a.clientIDs, b.clientIDs).allSatisfy { $0.fingerprint == $1.fingerprint && $0.entry == $1.entry }
    }

    /// The checkpoint's bytes.
    func encoded() -> [UInt8] {
        var out = ByteWriter()
        out.bytes(Self.magic)
        out.u32(Self.version)
        out.i64(nextOffset)
        out.i64(lastBatch?.segment ?? -1)
        out.i64(lastBatch?.position ?? -1)
        out.u32(lastBatch?.crc ?? 0)
        out.u64(indexGeneration)
        out.i64(indexEnd)
        out.i64(newest)
        out.i64(clientIDWindow)
        out.u32(UInt32(conversations.count))
        for conversation in conversations {
            out.string(conversation.id)
            out.i64(conversation.createdAt)
            out.u32(UInt32(truncatingIfNeeded: conversation.lastSeq))
            out.i64(conversation.lastTimestamp)
            out.u16(UInt16(truncatingIfNeeded: conversation.members.count))
            for member in conversation.members { out.string(member) }
            out.u32(UInt32(conversation.pages.count))
            for page in conversation.pages { out.u32(page) }
            if let json = conversation.newestJSON {
                out.u32(UInt32(json.count))
                out.bytes(json)
            } else {
                out.u32(0)
            }
        }
        out.u32(UInt32(clientIDs.count))
        for (fingerprint, entry) in clientIDs {
            out.u64(fingerprint)
            out.u32(entry.seq)
            out.i64(entry.timestamp)
        }
        out.u32(CRC32C.checksum(out.buffer))
        return out.buffer
    }

    /// Why a checkpoint file was not used.
    struct Unusable: Error, CustomStringConvertible {
        let description: String
    }

    /// Reads a checkpoint from `bytes` (the file at `path`, named in errors).
    static func decode(_ bytes: [UInt8], path: String) throws -> ChatCheckpoint {
        guard bytes.count >= 16, Array(bytes[0..<8]) == magic else { throw Unusable(description: "\(path): not a chat checkpoint") }
        let stored = bytes.withUnsafeBytes { UInt32(bigEndian: $0.loadUnaligned(fromByteOffset: bytes.count - 4, as: UInt32.self)) }
        guard CRC32C.checksum(Array(bytes[0..<(bytes.count - 4)])) == stored else {
            throw Unusable(description: "\(path): bad CRC (torn or damaged; \(bytes.count) bytes)")
        }
        var input = ByteReader(bytes: bytes, limit: bytes.count - 4, path: path)
        input.at = 8
        guard try input.u32() == version else { throw Unusable(description: "\(path): version is not \(version)") }
        let nextOffset = try input.i64()
        let segment = try input.i64(), position = try input.i64(), crc = try input.u32()
        var checkpoint = ChatCheckpoint(
            nextOffset: nextOffset,
            lastBatch: segment < 0 ? nil : BatchMark(segment: segment, position: position, crc: crc),
            indexGeneration: try input.u64(), indexEnd: try input.i64(), newest: try input.i64(), clientIDWindow: try input.i64(),
            conversations: [], clientIDs: [])
        let count = Int(try input.u32())
        checkpoint.conversations.reserveCapacity(count)
        for _ in 0..<count {
            let id = try input.string()
            let createdAt = try input.i64()
            let lastSeq = Int(try input.u32())
            let lastTimestamp = try input.i64()
            var members: [String] = []
            for _ in 0..<Int(try input.u16()) { members.append(try input.string()) }
            let pageCount = Int(try input.u32())
            var pages: [UInt32] = []
            pages.reserveCapacity(pageCount)
            for _ in 0..<pageCount { pages.append(try input.u32()) }
            let jsonLength = Int(try input.u32())
            let json = jsonLength == 0 ? nil : try input.bytes(jsonLength)
            checkpoint.conversations.append(Conversation(id: id, members: members, createdAt: createdAt, lastSeq: lastSeq,
                                                         lastTimestamp: lastTimestamp, pages: pages, newestJSON: json))
        }
        let ids = Int(try input.u32())
        checkpoint.clientIDs.reserveCapacity(ids)
        for _ in 0..<ids {
            let fingerprint = try input.u64()
            let seq = try input.u32()
            checkpoint.clientIDs.append((fingerprint, ClientIDWindow.Entry(seq: seq, timestamp: try input.i64())))
        }
        guard input.at == input.limit else { throw Unusable(description: "\(path): \(input.limit - input.at) stray bytes before the CRC") }
        return checkpoint
    }
}

/// Big-endian integers and length-prefixed strings appended to a byte array.
struct ByteWriter {
    var buffer: [UInt8] = []

    mutating func bytes(_ bytes: [UInt8]) { buffer.append(contentsOf: bytes) }
    mutating func u16(_ value: UInt16) { withUnsafeBytes(of: value.bigEndian) { buffer.append(contentsOf: $0) } }
    mutating func u32(_ value: UInt32) { withUnsafeBytes(of: value.bigEndian) { buffer.append(contentsOf: $0) } }
    mutating func u64(_ value: UInt64) { withUnsafeBytes(of: value.bigEndian) { buffer.append(contentsOf: $0) } }
    mutating func i64(_ value: Int64) { withUnsafeBytes(of: value.bigEndian) { buffer.append(contentsOf: $0) } }
    mutating func string(_ text: String) {
        let utf8 = Array(text.utf8.prefix(Int(UInt16.max)))
        u16(UInt16(utf8.count))
        buffer.append(contentsOf: utf8)
    }
}

/// Reads what `ByteWriter` wrote, never past `limit`; a short read names the file and the byte.
struct ByteReader {
    let bytes: [UInt8]
    let limit: Int
    let path: String
    var at = 0

    private mutating func take(_ count: Int) throws -> Range<Int> {
        guard count >= 0, limit - at >= count else {
            throw ChatCheckpoint.Unusable(description: "\(path): cut short at byte \(at) (needs \(count) more bytes)")
        }
        defer { at += count }
        return at..<(at + count)
    }

    private mutating func integer<T: FixedWidthInteger>(_ type: T.Type) throws -> T {
        let range = try take(MemoryLayout<T>.size)
        return bytes.withUnsafeBytes { T(bigEndian: $0.loadUnaligned(fromByteOffset: range.lowerBound, as: T.self)) }
    }

    mutating func u16() throws -> UInt16 { try integer(UInt16.self) }
    mutating func u32() throws -> UInt32 { try integer(UInt32.self) }
    mutating func u64() throws -> UInt64 { try integer(UInt64.self) }
    mutating func i64() throws -> Int64 { try integer(Int64.self) }
    mutating func bytes(_ count: Int) throws -> [UInt8] { Array(bytes[try take(count)]) }
    mutating func string() throws -> String {
        let count = Int(try u16())
        return String(decoding: bytes[try take(count)], as: UTF8.self)
    }
}
