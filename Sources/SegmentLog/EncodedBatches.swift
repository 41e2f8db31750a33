import Foundation

/// Records encoded as Kafka RecordBatches (LZ4, CRC) whose offsets count from 0: how a cluster node
/// ships a request's records. The node that takes the request compresses them once; every node's log
/// then takes the bytes as they are (`Log.append(_:encoded:)` sets each batch's base offset, which the
/// CRC does not cover), so no node compresses them again and every node writes the same bytes.
///
/// Made only by `init(encoding:)` or by `decode`, which checks every batch: the bytes are always
/// well-formed batches holding `recordCount` records at relative offsets 0, 1, 2 ... without gaps.
public struct EncodedBatches: Sendable {
    /// The batches, one after the other.
    public let bytes: [UInt8]
    public let recordCount: Int

    /// Encodes `records`, cut into batches as `configuration` cuts an append.
    public init(encoding records: RecordBuffer, configuration: LogConfiguration = .init()) {
        recordCount = records.count
        guard !records.isEmpty else {
            bytes = []
            return
        }
        bytes = Pools.encoders.with(level: configuration.compressionLevel) { encoder in
            encoder.output.count = 0
            for range in Log.batchRanges(records, configuration: configuration) {
                encoder.encode(records, range: range, baseOffset: Int64(range.lowerBound))
            }
            return Array(encoder.output.bytes)
        }
    }

    private init(bytes: [UInt8], recordCount: Int) {
        self.bytes = bytes
        self.recordCount = recordCount
    }

    /// Why bytes are not encoded batches.
    public struct DecodeError: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    /// The most bytes of keys and values one message may decompress to (`decode`), and one batch.
    public static let decodedLimit = 64 << 20
    static let batchDecodedLimit = 16 << 20

    /// Reads the batches in `bytes`, checking each (its header, its CRC, every record's framing, offsets
    /// that follow on from the batch before without a gap, `maxBatchSize` and the decompression limits)
    /// and that its header says what this log's encoder writes, since the log trusts a written batch's
    /// header (its maximum timestamp places it in the time index and decides retention and segment
    /// rolls); returns the batches with their records.
    public static func decode(_ bytes: UnsafeRawBufferPointer, maxBatchSize: Int = 64 << 20) throws(DecodeError) -> (batches: EncodedBatches, records: RecordBuffer) {
        var records = RecordBuffer()
        var position = 0
        var next: Int64 = 0
        let failure: DecodeError? = Pools.decoders.with { decoder in
            while position < bytes.count {
                let rest = UnsafeRawBufferPointer(rebasing: bytes[position...])
                guard let header = RecordBatchHeader(bytes: rest) else {
                    return DecodeError(description: "\(rest.count) bytes after the last batch, too few for a batch header")
                }
                if let problem = header.structuralProblem(maxBatchSize: maxBatchSize) {
                    return DecodeError(description: "batch at byte \(position): \(problem)")
                }
                guard header.totalSize <= rest.count else {
                    return DecodeError(description: "batch at byte \(position) claims \(header.totalSize) bytes; \(rest.count) are left")
                }
                guard header.recordsCount > 0, header.lastOffsetDelta == header.recordsCount - 1, header.baseOffset == next else {
                    return DecodeError(description: "batch at byte \(position) holds offsets \(header.baseOffset)+\(header.lastOffsetDelta) (\(header.recordsCount) records); expected \(header.recordsCount) records from offset \(next) without gaps")
                }
                guard header.attributes == RecordBatchHeader.lz4Codec, header.partitionLeaderEpoch == -1, header.producerId == -1,
                      header.producerEpoch == -1, header.baseSequence == -1 else {
                    return DecodeError(description: "batch at byte \(position) has a header this log does not write (attributes \(header.attributes), producer \(header.producerId))")
                }
                let batch = UnsafeRawBufferPointer(rebasing: rest[0..<header.totalSize])
                guard RecordBatchDecoder.crcMatches(batch, header: header) else {
                    return DecodeError(description: "batch at byte \(position) fails its CRC")
                }
                let views: UnsafeMutableBufferPointer<RecordView>
                do {
                    views = try decoder.decodeRecords(batch, header: header)
                } catch let error as BatchFormatError {
                    return DecodeError(description: "batch at byte \(position): \(error.reason)")
                } catch {
                    return DecodeError(description: "batch at byte \(position): \(error)")
                }
                guard views.count == Int(header.recordsCount) else {
                    return DecodeError(description: "batch at byte \(position) holds \(views.count) records, not the \(header.recordsCount) it claims")
                }
                var payload = 0, newest = Int64.min
                for view in views {
                    payload += (view.key?.count ?? 0) + (view.value?.count ?? 0)
                    newest = max(newest, view.timestamp)
                }
                guard newest == header.maxTimestamp else {
                    return DecodeError(description: "batch at byte \(position) claims a newest record time of \(header.maxTimestamp); its records' newest is \(newest)")
                }
                guard records.payloadBytes + payload <= decodedLimit else {
                    return DecodeError(description: "the message decompresses to more than \(decodedLimit >> 20) MiB of records")
                }
                if records.isEmpty {
                    // Room for the whole message, guessed from its first batch (one batch, most often),
                    // and never more than the limit.
                    let share = min(Double(bytes.count) / Double(header.totalSize), 64)
                    records.reserve(records: Int(Double(views.count) * share) + 1,
                                    bytes: min(Int(Double(payload) * share), decodedLimit) + 64)
                }
                for view in views {
                    guard let value = view.value else { return DecodeError(description: "batch at byte \(position) holds a record with a null value") }
                    records.append(timestamp: view.timestamp, key: view.key, value: value)
                }
                next += Int64(header.recordsCount)
                position += header.totalSize
            }
            return nil
        }
        if let failure { throw failure }
        return (EncodedBatches(bytes: Array(bytes), recordCount: records.count), records)
    }
}

/// Encoders and decoders kept for reuse (each holds megabytes of buffers): taken for one call, by one
/// thread at a time.
private enum Pools {
    static let encoders = Pool<RecordBatchEncoder>()
    static let decoders = Pool<RecordBatchDecoder>()
}

private final class Pool<Item: AnyObject>: @unchecked Sendable {
    // @unchecked: `items` is touched only under `lock`; an item taken out is used by one caller alone.
    private let lock = NSLock()
    private var items: [Item] = []
    private let kept = 4

    func with<R>(make: () -> Item, _ body: (Item) -> R) -> R {
        let item = lock.withLock { items.popLast() } ?? make()
        defer { lock.withLock { if items.count < kept { items.append(item) } } }
        return body(item)
    }
}

extension Pool where Item == RecordBatchEncoder {
    /// An encoder at `level` (the pool holds encoders of the level first asked for; another level gets a fresh one).
    func with<R>(level: Int, _ body: (RecordBatchEncoder) -> R) -> R {
        with(make: { RecordBatchEncoder(compressionLevel: level) }) { encoder in
            encoder.compressionLevel == level ? body(encoder) : body(RecordBatchEncoder(compressionLevel: level))
        }
    }
}

extension Pool where Item == RecordBatchDecoder {
    func with<R>(_ body: (RecordBatchDecoder) -> R) -> R {
        with(make: { RecordBatchDecoder(decompressedLimit: EncodedBatches.batchDecodedLimit) }, body)
    }
}
