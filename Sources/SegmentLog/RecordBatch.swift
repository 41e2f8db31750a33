/// Kafka's RecordBatch, magic 2 (KIP-98), the unit this log writes, checksums and reads.
///
///     byte  0  baseOffset            int64   offset of the first record
///           8  batchLength           int32   bytes after this field
///          12  partitionLeaderEpoch  int32   -1
///          16  magic                 int8    2
///          17  crc                   uint32  CRC-32C of bytes 21 ..< end
///          21  attributes            int16   bits 0-2 codec (3 = LZ4), bit 3 timestamp type (0 = create time)
///          23  lastOffsetDelta       int32   records - 1 as written; an erasure keeps it when it
///                                                removes records (offsets then have gaps, as in Kafka's
///                                                compacted logs), so it may exceed recordsCount - 1
///          27  baseTimestamp         int64   base of the records' timestamp deltas, ms: Kafka's producer
///                                                uses the first record's; this log the midpoint of the
///                                                smallest and largest, so deltas stay within two bytes
///          35  maxTimestamp          int64   largest record timestamp, ms
///          43  producerId            int64   -1
///          51  producerEpoch         int16   -1
///          53  baseSequence          int32   -1
///          57  recordsCount          int32   0 for a batch an erasure emptied: attributes 0, no
///                                                records section, timestamps the original maximum
///                                                (Kafka's `writeEmptyHeader`)
///          61  records               one LZ4 frame holding every record, back to back
///
/// All integers big-endian. Each record inside the frame:
///
///     length          varint   bytes after this field
///     attributes      int8     0
///     timestampDelta  varlong  timestamp - baseTimestamp
///     offsetDelta     varint   offset - baseOffset: 0, 1, 2 ... as written; increasing, at most
///                              lastOffsetDelta, after an erasure
///     keyLength       varint   -1 for a null key
///     key             bytes
///     valueLength     varint
///     value           bytes
///     headersCount    varint   0
///
/// Varints are zig-zag encoded, 7 bits a byte, low bits first.
public struct RecordBatchHeader: Sendable, Equatable {
    public static let size = 61
    /// The bytes before `batchLength` counts: baseOffset and batchLength itself.
    public static let logOverhead = 12
    static let crcStart = 21
    public static let magic: UInt8 = 2
    /// The largest offset any log, batch or checkpoint may name: no log holds 2^62 records, and a batch
    /// starting past it could overflow `lastOffset` (a crafted header is corruption, not a crash).
    public static let maxOffset: Int64 = 1 << 62
    static let lz4Codec: Int16 = 3

    public var baseOffset: Int64
    public var batchLength: Int32
    public var partitionLeaderEpoch: Int32
    public var magic: UInt8
    public var crc: UInt32
    public var attributes: Int16
    public var lastOffsetDelta: Int32
    public var baseTimestamp: Int64
    public var maxTimestamp: Int64
    public var producerId: Int64
    public var producerEpoch: Int16
    public var baseSequence: Int32
    public var recordsCount: Int32

    /// The whole batch's size on disk.
    public var totalSize: Int { Int(batchLength) + Self.logOverhead }
    /// The offset of the batch's last record.
    public var lastOffset: Int64 { baseOffset + Int64(lastOffsetDelta) }
    /// The offset after the batch.
    public var nextOffset: Int64 { lastOffset + 1 }
    /// The compression codec: 0 none, 1 gzip, 2 snappy, 3 LZ4, 4 zstd.
    public var codec: Int16 { attributes & 0x7 }

    /// Reads a header from 61 bytes at `pointer`.
    init(_ pointer: UnsafeRawPointer) {
        baseOffset = pointer.loadBigEndian(at: 0, as: Int64.self)
        batchLength = pointer.loadBigEndian(at: 8, as: Int32.self)
        partitionLeaderEpoch = pointer.loadBigEndian(at: 12, as: Int32.self)
        magic = pointer.load(fromByteOffset: 16, as: UInt8.self)
        crc = pointer.loadBigEndian(at: 17, as: UInt32.self)
        attributes = pointer.loadBigEndian(at: 21, as: Int16.self)
        lastOffsetDelta = pointer.loadBigEndian(at: 23, as: Int32.self)
        baseTimestamp = pointer.loadBigEndian(at: 27, as: Int64.self)
        maxTimestamp = pointer.loadBigEndian(at: 35, as: Int64.self)
        producerId = pointer.loadBigEndian(at: 43, as: Int64.self)
        producerEpoch = pointer.loadBigEndian(at: 51, as: Int16.self)
        baseSequence = pointer.loadBigEndian(at: 53, as: Int32.self)
        recordsCount = pointer.loadBigEndian(at: 57, as: Int32.self)
    }

    /// Reads the batch header at the start of `bytes`, or nil when fewer than 61 bytes are there.
    public init?(bytes: UnsafeRawBufferPointer) {
        guard bytes.count >= Self.size, let base = bytes.baseAddress else { return nil }
        self.init(base)
    }

    /// What is wrong with the header on its own, before its bytes are read: nil when it is plausible.
    /// `maxBatchSize` bounds the length a batch may claim.
    package func structuralProblem(maxBatchSize: Int) -> String? {
        if batchLength < Int32(Self.size - Self.logOverhead) { return "batch claims an impossible length \(batchLength)" }
        if totalSize > maxBatchSize { return "batch claims \(totalSize) bytes, more than the \(maxBatchSize)-byte limit" }
        if magic != Self.magic { return "batch has magic \(magic), expected 2" }
        if recordsCount < 0 || lastOffsetDelta < 0 || recordsCount > 0 && lastOffsetDelta < recordsCount - 1 {
            return "batch has \(recordsCount) records but lastOffsetDelta \(lastOffsetDelta)"
        }
        if baseOffset < 0 { return "batch has a negative base offset \(baseOffset)" }
        if baseOffset > Self.maxOffset { return "batch has a base offset \(baseOffset) past any log's end (\(Self.maxOffset))" }
        return nil
    }
}

/// One record read from a batch. Its key and value point into the reader's buffer and are valid only
/// inside the closure that receives them.
///
/// 40 bytes: the key and value are kept as start and count (-1 for null), not as optional buffer
/// pointers (24 bytes each), since a batch's records are written into an array and read back for
/// every event.
public struct RecordView {
    public let offset: Int64
    public let timestamp: Int64
    @usableFromInline let keyStart: UnsafeRawPointer?
    @usableFromInline let valueStart: UnsafeRawPointer?
    @usableFromInline let keyCount: Int32
    @usableFromInline let valueCount: Int32

    /// nil for a null key.
    @inlinable public var key: UnsafeRawBufferPointer? {
        keyCount < 0 ? nil : UnsafeRawBufferPointer(start: keyStart, count: Int(keyCount))
    }

    /// nil for a null value.
    @inlinable public var value: UnsafeRawBufferPointer? {
        valueCount < 0 ? nil : UnsafeRawBufferPointer(start: valueStart, count: Int(valueCount))
    }

    /// Keys and values are under 2 GiB (a batch is far smaller).
    @inlinable
    public init(offset: Int64, timestamp: Int64, key: UnsafeRawBufferPointer?, value: UnsafeRawBufferPointer?) {
        self.offset = offset
        self.timestamp = timestamp
        keyStart = key?.baseAddress
        keyCount = key.map { Int32(truncatingIfNeeded: $0.count) } ?? -1
        valueStart = value?.baseAddress
        valueCount = value.map { Int32(truncatingIfNeeded: $0.count) } ?? -1
    }
}

/// Builds batches from a `RecordBuffer`, reusing its buffers from batch to batch.
final class RecordBatchEncoder {
    /// Buffers here and in the decoder start small and grow with the batches (to about 1 MiB for full
    /// ones): a short-lived reader or writer (recovery, an audit, a page of history) sets aside little.
    private let records = ScratchBuffer(capacity: 64 << 10)
    private let compressor: LZ4Frame.Compressor

    /// 0 for LZ4 fast, 1...12 for LZ4 HC.
    let compressionLevel: Int

    init(compressionLevel: Int) {
        self.compressionLevel = compressionLevel
        compressor = LZ4Frame.Compressor(level: compressionLevel)
    }

    /// The encoded batch after `encode`.
    let output = ScratchBuffer(capacity: 64 << 10)

    /// Encodes `buffer`'s records `range` as one batch starting at `baseOffset`, appended to `output`
    /// (callers empty it, `output.count = 0`, when they are done with what it holds). Returns the header.
    @discardableResult
    func encode(_ buffer: RecordBuffer, range: Range<Int>, baseOffset: Int64) -> RecordBatchHeader {
        precondition(!range.isEmpty, "a batch holds at least one record")
        var minTimestamp = Int64.max, maxTimestamp = Int64.min
        for index in range {
            minTimestamp = min(minTimestamp, buffer.entries[index].timestamp)
            maxTimestamp = max(maxTimestamp, buffer.entries[index].timestamp)
        }
        // The midpoint: deltas within ±8191 ms take two bytes, so a batch spanning 16383 ms needs no third.
        let baseTimestamp = minTimestamp &+ (maxTimestamp &- minTimestamp &+ 1) / 2
        records.count = 0
        buffer.storage.withUnsafeBytes { storage in
            guard let storageBase = storage.baseAddress else { return }
            for index in range {
                let entry = buffer.entries[index]
                let timestampDelta = entry.timestamp &- baseTimestamp
                let offsetDelta = Int64(index - range.lowerBound)
                let keyStart = storageBase + Int(entry.start)
                let keyLength = Int(entry.keyLength)
                appendRecord(timestampDelta: timestampDelta, offsetDelta: offsetDelta, key: keyStart, keyLength: keyLength,
                             value: keyStart + max(keyLength, 0), valueLength: Int(entry.valueLength))
            }
        }
        return appendBatch(baseOffset: baseOffset, partitionLeaderEpoch: -1, attributes: RecordBatchHeader.lz4Codec,
                           lastOffsetDelta: Int32(range.count - 1), baseTimestamp: baseTimestamp, maxTimestamp: maxTimestamp,
                           producerId: -1, producerEpoch: -1, baseSequence: -1, count: Int32(range.count))
    }

    /// Appends one record (Kafka's record v2: its length, attributes 0, the timestamp and offset deltas,
    /// the key and the value, each with its length, -1 for null, and no headers) to `records`.
    @inline(__always)
    private func appendRecord(timestampDelta: Int64, offsetDelta: Int64, key: UnsafeRawPointer?, keyLength: Int,
                              value: UnsafeRawPointer?, valueLength: Int) {
        let bodyLength = 1 + Varint.size(timestampDelta) + Varint.size(offsetDelta)
            + Varint.size(Int64(keyLength)) + max(keyLength, 0)
            + Varint.size(Int64(valueLength)) + max(valueLength, 0) + 1
        records.reserve(bodyLength + 5)
        var cursor = records.pointer + records.count
        cursor += Varint.write(Int64(bodyLength), to: cursor)
        cursor.storeBytes(of: 0, as: UInt8.self)
        cursor += 1
        cursor += Varint.write(timestampDelta, to: cursor)
        cursor += Varint.write(offsetDelta, to: cursor)
        cursor += Varint.write(Int64(keyLength), to: cursor)
        if let key, keyLength > 0 {
            cursor.copyShort(from: key, count: keyLength)
            cursor += keyLength
        }
        cursor += Varint.write(Int64(valueLength), to: cursor)
        if let value, valueLength > 0 {
            cursor.copyShort(from: value, count: valueLength)
            cursor += valueLength
        }
        cursor.storeBytes(of: 0, as: UInt8.self)
        cursor += 1
        records.count = cursor - records.pointer
    }

    /// Appends to `output` the batch of what `records` holds (LZ4-compressed; nothing at all when `count`
    /// is 0: an empty batch, attributes 0), with this header, its CRC last; returns the header.
    private func appendBatch(baseOffset: Int64, partitionLeaderEpoch: Int32, attributes: Int16, lastOffsetDelta: Int32,
                             baseTimestamp: Int64, maxTimestamp: Int64, producerId: Int64, producerEpoch: Int16,
                             baseSequence: Int32, count: Int32) -> RecordBatchHeader {
        let start = output.count
        output.reserve(RecordBatchHeader.size + LZ4Frame.bound(records.count))
        let header = output.pointer + start
        let frameSize = count == 0 ? 0 : LZ4Frame.compress(records.bytes, to: header + RecordBatchHeader.size, with: compressor)
        let total = RecordBatchHeader.size + frameSize
        output.count = start + total
        header.storeBigEndian(baseOffset, at: 0)
        header.storeBigEndian(Int32(total - RecordBatchHeader.logOverhead), at: 8)
        header.storeBigEndian(partitionLeaderEpoch, at: 12)
        header.storeBytes(of: RecordBatchHeader.magic, toByteOffset: 16, as: UInt8.self)
        header.storeBigEndian(attributes, at: 21)
        header.storeBigEndian(lastOffsetDelta, at: 23)
        header.storeBigEndian(baseTimestamp, at: 27)
        header.storeBigEndian(maxTimestamp, at: 35)
        header.storeBigEndian(producerId, at: 43)
        header.storeBigEndian(producerEpoch, at: 51)
        header.storeBigEndian(baseSequence, at: 53)
        header.storeBigEndian(count, at: 57)
        let crc = CRC32C.checksum(UnsafeRawBufferPointer(start: header + RecordBatchHeader.crcStart, count: total - RecordBatchHeader.crcStart))
        header.storeBigEndian(crc, at: 17)
        return RecordBatchHeader(header)
    }
}

extension RecordBatchEncoder {
    /// Encodes `kept`, records of the batch `original` (in offset order, their offsets and timestamps as
    /// they were), as that batch rewritten without the others: same base offset and lastOffsetDelta, so
    /// every kept record keeps its offset and the batch still ends where it did (an erasure's gaps). With
    /// nothing kept it is an empty batch as Kafka's `writeEmptyHeader` makes: 61 bytes, attributes 0, no
    /// records, both timestamps the original's maximum (time order and the time index stay as they were).
    /// Appended to `output`; returns the header.
    @discardableResult
    func encode(kept: [RecordView], of original: RecordBatchHeader) -> RecordBatchHeader {
        var minTimestamp = Int64.max, maxTimestamp = Int64.min
        for record in kept {
            minTimestamp = min(minTimestamp, record.timestamp)
            maxTimestamp = max(maxTimestamp, record.timestamp)
        }
        let baseTimestamp = kept.isEmpty ? original.maxTimestamp : minTimestamp &+ (maxTimestamp &- minTimestamp &+ 1) / 2
        if kept.isEmpty { maxTimestamp = original.maxTimestamp }
        records.count = 0
        for record in kept {
            let key = record.key, value = record.value
            appendRecord(timestampDelta: record.timestamp &- baseTimestamp, offsetDelta: record.offset &- original.baseOffset,
                         key: key?.baseAddress, keyLength: key.map { $0.count } ?? -1,
                         value: value?.baseAddress, valueLength: value.map { $0.count } ?? -1)
        }
        return appendBatch(baseOffset: original.baseOffset, partitionLeaderEpoch: original.partitionLeaderEpoch,
                           attributes: kept.isEmpty ? 0 : RecordBatchHeader.lz4Codec, lastOffsetDelta: original.lastOffsetDelta,
                           baseTimestamp: baseTimestamp, maxTimestamp: maxTimestamp, producerId: original.producerId,
                           producerEpoch: original.producerEpoch, baseSequence: original.baseSequence, count: Int32(kept.count))
    }
}

/// Checks and unpacks batches: CRC, decompression, and every record's framing.
package final class RecordBatchDecoder {
    /// Decompressed records of the last batch.
    private let scratch = ScratchBuffer(capacity: 64 << 10)
    /// The most bytes a batch may decompress to.
    let decompressedLimit: Int

    package init(decompressedLimit: Int = 256 << 20) {
        self.decompressedLimit = decompressedLimit
    }

    /// Whether the CRC stored in the batch at `batch` matches its bytes.
    package static func crcMatches(_ batch: UnsafeRawBufferPointer, header: RecordBatchHeader) -> Bool {
        guard let base = batch.baseAddress else { return false }
        let covered = UnsafeRawBufferPointer(start: base + RecordBatchHeader.crcStart, count: header.totalSize - RecordBatchHeader.crcStart)
        return CRC32C.checksum(covered) == header.crc
    }

    /// Calls `body` for each record of the batch whose `header.totalSize` bytes are at `batch`.
    /// Throws a reason (without file or position: the caller adds them) when the records are malformed.
    /// The CRC is not checked here; see `crcMatches`.
    func forEachRecord(
        _ batch: UnsafeRawBufferPointer, header: RecordBatchHeader,
        _ body: (RecordView) throws -> Void
    ) throws {
        try parse(try recordBytes(batch, header: header), header: header, body)
    }

    /// Where `decodeRecords` puts the records of the last batch.
    private var views = UnsafeMutableBufferPointer<RecordView>.allocate(capacity: 256)

    deinit { views.deallocate() }

    /// How many records `decodeRecords` has room for now (for tests).
    var recordCapacity: Int { views.count }

    /// Decodes every record of the batch, as `forEachRecord` does, into a buffer that stays valid until
    /// the next call. The read path's loop: storing each record is inlined, where `forEachRecord` calls
    /// a closure for each.
    package func decodeRecords(_ batch: UnsafeRawBufferPointer, header: RecordBatchHeader) throws -> UnsafeMutableBufferPointer<RecordView> {
        let bytes = try recordBytes(batch, header: header)
        // Room grows with the records read, never to what the header claims: a small batch of highly
        // compressible bytes may claim millions.
        guard var out = views.baseAddress else { return views }
        var capacity = views.count
        var count = 0
        try parse(bytes, header: header) { record in
            if count == capacity {
                growViews(keeping: count, to: min(Int(header.recordsCount), 2 * capacity))
                guard let base = views.baseAddress else { return }
                out = base
                capacity = views.count
            }
            (out + count).initialize(to: record)
            count += 1
        }
        return UnsafeMutableBufferPointer(rebasing: views[0..<count])
    }

    /// Replaces `views` with room for `capacity` records, keeping the first `count`.
    private func growViews(keeping count: Int, to capacity: Int) {
        let grown = UnsafeMutableBufferPointer<RecordView>.allocate(capacity: capacity)
        if let from = views.baseAddress, let to = grown.baseAddress { to.moveInitialize(from: from, count: count) }
        views.deallocate()
        views = grown
    }

    /// The batch's records as bytes: its payload, decompressed if need be. Checks that the bytes can
    /// hold the record count the header claims (each record takes at least seven).
    private func recordBytes(_ batch: UnsafeRawBufferPointer, header: RecordBatchHeader) throws -> UnsafeRawBufferPointer {
        guard let base = batch.baseAddress else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        let payload = UnsafeRawBufferPointer(start: base + RecordBatchHeader.size, count: header.totalSize - RecordBatchHeader.size)
        let records: UnsafeRawBufferPointer
        switch header.codec {
        case 0:
            records = payload
        case RecordBatchHeader.lz4Codec:
            do {
                try LZ4Frame.decompress(payload, into: scratch, limit: decompressedLimit)
            } catch {
                throw BatchFormatError(reason: error.reason)
            }
            records = scratch.bytes
        default:
            throw BatchFormatError(reason: "batch uses compression codec \(header.codec); only none and LZ4 are supported")
        }
        guard Int(header.recordsCount) <= records.count / 7 else {
            throw BatchFormatError(reason: "batch claims \(header.recordsCount) records but holds \(records.count) bytes of records")
        }
        return records
    }

    @inline(__always)
    private func parse(_ records: UnsafeRawBufferPointer, header: RecordBatchHeader, _ body: (RecordView) throws -> Void) throws {
        guard header.recordsCount > 0, let start = records.baseAddress else {
            guard records.isEmpty else { throw BatchFormatError(reason: "batch has \(records.count) bytes after its last record") }
            return
        }
        let end = records.count
        var position = 0
        // Offset deltas increase, at most lastOffsetDelta: 0, 1, 2 ... unless an erasure removed records.
        var previousDelta: Int64 = -1
        let lastDelta = Int64(header.lastOffsetDelta)
        for index in 0..<Int(header.recordsCount) {
            guard let (length, lengthSize) = Varint.read(start + position, available: end - position),
                  length >= 0, Int(length) <= end - position - lengthSize
            else { throw BatchFormatError(reason: "record \(index) has a bad length") }
            position += lengthSize
            let recordEnd = position + Int(length)
            var cursor = position + 1  // attributes
            guard cursor <= recordEnd,
                  let (timestampDelta, s1) = Varint.read(start + cursor, available: recordEnd - cursor)
            else { throw BatchFormatError(reason: "record \(index) is cut short") }
            cursor += s1
            guard let (offsetDelta, s2) = Varint.read(start + cursor, available: recordEnd - cursor),
                  offsetDelta > previousDelta, offsetDelta <= lastDelta
            else { throw BatchFormatError(reason: "record \(index) has an offset delta out of sequence") }
            previousDelta = offsetDelta
            cursor += s2
            guard let (keyLength, s3) = Varint.read(start + cursor, available: recordEnd - cursor),
                  keyLength >= -1, keyLength <= Int64(recordEnd - cursor - s3)
            else { throw BatchFormatError(reason: "record \(index) has a bad key length") }
            cursor += s3
            let key = keyLength >= 0 ? UnsafeRawBufferPointer(start: start + cursor, count: Int(keyLength)) : nil
            cursor += max(Int(keyLength), 0)
            guard let (valueLength, s4) = Varint.read(start + cursor, available: recordEnd - cursor),
                  valueLength >= -1, valueLength <= Int64(recordEnd - cursor - s4)
            else { throw BatchFormatError(reason: "record \(index) has a bad value length") }
            cursor += s4
            let value = valueLength >= 0 ? UnsafeRawBufferPointer(start: start + cursor, count: Int(valueLength)) : nil
            cursor += max(Int(valueLength), 0)
            guard let (headerCount, s5) = Varint.read(start + cursor, available: recordEnd - cursor), headerCount >= 0
            else { throw BatchFormatError(reason: "record \(index) has a bad header count") }
            cursor += s5
            // Headers are skipped: this log never writes them, but other Kafka writers may.
            for _ in 0..<headerCount {
                for _ in 0..<2 {
                    guard let (fieldLength, size) = Varint.read(start + cursor, available: recordEnd - cursor),
                          fieldLength >= -1, fieldLength <= Int64(recordEnd - cursor - size)
                    else { throw BatchFormatError(reason: "record \(index) has a malformed header") }
                    cursor += size + max(Int(fieldLength), 0)
                }
            }
            guard cursor == recordEnd else { throw BatchFormatError(reason: "record \(index) length does not match its fields") }
            position = recordEnd
            try body(RecordView(offset: header.baseOffset &+ offsetDelta, timestamp: header.baseTimestamp &+ timestampDelta,
                                key: key, value: value))
        }
        guard position == end else { throw BatchFormatError(reason: "batch has \(end - position) bytes after its last record") }
    }
}

/// Why a batch's records could not be read.
package struct BatchFormatError: Error {
    package let reason: String
}
