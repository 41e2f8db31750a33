import Dispatch

/// One named log: a folder of segments, appended to by one owner at a time.
///
///     presence/
///       00000000000000000000.log         batches, see `RecordBatchHeader`
///       00000000000000000000.index       offset -> byte position, see `SegmentIndex`
///       00000000000000000000.timeindex   timestamp -> offset
///       00000000000000081920.log         the next segment, named by its first offset
///       ...
///       recovery-point                   segments below this offset were fsynced when sealed
///       .clean-shutdown                  present only while the log is closed cleanly
///
/// Durability and recovery:
/// - `append` writes batches to the active segment; `sync` makes them durable (fdatasync).
///   The writer (`LogWriter`) calls `sync` before acknowledging under `Durability.always`.
/// - A segment is sealed (fdatasync of log and indexes) before the next is created; then the
///   directory is fsynced and `recovery-point` rewritten atomically.
/// - `close` syncs everything and writes `.clean-shutdown`; `open` removes it. When it is missing
///   at open, every segment from the recovery point on is scanned batch by batch (framing, CRC,
///   every record, offsets continuing from the previous batch) and the log is truncated at the first
///   invalid batch; later segments are removed. What was cut is reported.
/// - After a failed write or fsync the log refuses further appends (the state of the page cache is
///   unknown); reopening recovers.
///
/// A `Log` is not thread-safe: one owner calls it (the `LogWriter`'s commit thread, or a tool).
public final class Log {
    public let directory: String
    public let configuration: LogConfiguration

    /// The offset the next record gets (Kafka's log end offset).
    public private(set) var endOffset: Int64
    /// Records below this offset are on stable storage.
    public private(set) var durableEndOffset: Int64
    /// What recovery found and cut when the log was opened, one line each (empty after a clean open).
    public private(set) var recoveryReport: [String] = []
    /// Whether the previous run closed the log cleanly.
    public let openedCleanly: Bool
    /// The largest record timestamp in the log (nil while it is empty).
    public private(set) var maxTimestamp: Int64?
    /// Where the batches of the last `append` went, in order: for a store that indexes records by their
    /// place in the log (the chat's message index) and reads them back with one positioned read.
    public private(set) var lastAppendBatches: [WrittenBatch] = []

    private var sealed: [SealedSegment]
    private var active: ActiveSegment
    private var failure: LogError?
    private var isClosed = false
    /// One encoder per compression thread; batches of a large append are compressed in parallel.
    private let encoders: [RecordBatchEncoder]

    /// A batch encoded by `encoders[encoder]`, at `start` in its output.
    private struct EncodedBatch {
        var header: RecordBatchHeader
        var encoder: Int
        var start: Int
    }

    struct SealedSegment {
        let baseOffset: Int64
        let size: Int64
    }

    /// The segment being appended to.
    final class ActiveSegment {
        let baseOffset: Int64
        let log: File
        let offsetIndex: File
        let timeIndex: File
        var size: Int64
        var indexBuilder: SegmentIndexBuilder

        init(baseOffset: Int64, log: File, offsetIndex: File, timeIndex: File, size: Int64, indexBuilder: SegmentIndexBuilder) {
            self.baseOffset = baseOffset
            self.log = log
            self.offsetIndex = offsetIndex
            self.timeIndex = timeIndex
            self.size = size
            self.indexBuilder = indexBuilder
        }
    }

    static let cleanShutdownName = ".clean-shutdown"
    static let recoveryPointName = "recovery-point"

    /// The file name stem of the segment starting at `baseOffset`: 20 zero-padded digits.
    public static func segmentName(_ baseOffset: Int64) -> String {
        let digits = String(baseOffset)
        return String(repeating: "0", count: max(0, 20 - digits.count)) + digits
    }

    /// The base offsets of the segments in `directory`, ascending.
    public static func segmentBaseOffsets(in directory: String) throws(LogError) -> [Int64] {
        try FileSystem.list(directory).compactMap { name -> Int64? in
            guard name.hasSuffix(".log") else { return nil }
            let stem = name.dropLast(4)
            guard stem.count == 20, stem.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
            return Int64(stem)
        }.sorted()
    }

    init(directory: String, configuration: LogConfiguration, sealed: [SealedSegment], active: ActiveSegment,
                 endOffset: Int64, openedCleanly: Bool, report: [String], maxTimestamp: Int64?) {
        self.maxTimestamp = maxTimestamp
        self.directory = directory
        self.configuration = configuration
        self.sealed = sealed
        self.active = active
        self.endOffset = endOffset
        self.durableEndOffset = endOffset
        self.openedCleanly = openedCleanly
        self.recoveryReport = report
        self.encoders = (0..<max(1, configuration.compressionThreads)).map { _ in
            RecordBatchEncoder(compressionLevel: configuration.compressionLevel)
        }
    }

    // MARK: Appending

    /// Appends every record of `records`, in order, as one or more batches. Returns the offsets of the first
    /// and last record. The records are written but not yet durable: call `sync`.
    @discardableResult
    public func append(_ records: RecordBuffer) throws(LogError) -> ClosedRange<Int64> {
        guard !records.isEmpty else { throw LogError(.invalidArgument, "nothing to append") }
        try checkWritable()
        let first = endOffset
        lastAppendBatches.removeAll(keepingCapacity: true)
        // Cut the records into batches (by count, bytes and time span), then compress them, on several
        // threads when there are several batches, and write them in order.
        let ranges = Self.batchRanges(records, configuration: configuration)
        for encoder in encoders { encoder.output.count = 0 }
        let workers = min(encoders.count, ranges.count)
        var encoded = [[EncodedBatch]](repeating: [], count: workers)
        if workers <= 1 {
            encoded[0] = Self.encode(records, ranges, firstOffset: first, worker: 0, of: 1, encoder: encoders[0])
        } else {
            // Worker w touches only encoders[w] and results[w]; `records` and `ranges` are only read.
            let shared = UnsafeSendable((encoders: encoders, ranges: ranges))
            encoded.withUnsafeMutableBufferPointer { results in
                let results = UnsafeSendable(results)
                DispatchQueue.concurrentPerform(iterations: workers) { worker in
                    results.value[worker] = Self.encode(records, shared.value.ranges, firstOffset: first, worker: worker, of: workers,
                                                        encoder: shared.value.encoders[worker])
                }
            }
        }
        let mark = AppendMark(active: active, size: active.size, index: active.indexBuilder.mark, maxTimestamp: maxTimestamp)
        for index in ranges.indices {
            let batch = encoded[index % workers][index / workers]
            do {
                try writeBatch(batch.header, bytes: UnsafeRawBufferPointer(start: encoders[batch.encoder].output.pointer + batch.start, count: batch.header.totalSize))
            } catch {
                throw undo(to: mark, firstOffset: first, after: error)
            }
        }
        return first...(endOffset - 1)
    }

    /// Appends `records` as the batches `encoded` holds, byte for byte but for each batch's base offset
    /// (which its CRC does not cover), set to where it lands: nothing is compressed again. `encoded`
    /// must be `records` encoded (`EncodedBatches(encoding:)`, or read back by `EncodedBatches.decode`).
    @discardableResult
    public func append(_ records: RecordBuffer, encoded: EncodedBatches) throws(LogError) -> ClosedRange<Int64> {
        guard encoded.recordCount == records.count else {
            throw LogError(.invalidArgument, "the encoded batches hold \(encoded.recordCount) records, not the \(records.count) appended")
        }
        return try append(encoded: [encoded])
    }

    /// Appends the records of every `parts` element, in order, as their batches (as `append(_:encoded:)`
    /// does), all or nothing: a write that fails leaves none of them in the log.
    @discardableResult
    public func append(encoded parts: [EncodedBatches]) throws(LogError) -> ClosedRange<Int64> {
        let total = parts.reduce(0) { $0 + $1.bytes.count }
        guard parts.contains(where: { $0.recordCount > 0 }) else { throw LogError(.invalidArgument, "nothing to append") }
        try checkWritable()
        let first = endOffset
        lastAppendBatches.removeAll(keepingCapacity: true)
        // A copy to patch the base offsets in (the bytes are shared and immutable).
        let scratch = encoders[0].output
        scratch.count = 0
        scratch.reserve(total)
        for part in parts {
            part.bytes.withUnsafeBytes { bytes in
                if let base = bytes.baseAddress { (scratch.pointer + scratch.count).copyMemory(from: base, byteCount: bytes.count) }
            }
            scratch.count += part.bytes.count
        }
        let mark = AppendMark(active: active, size: active.size, index: active.indexBuilder.mark, maxTimestamp: maxTimestamp)
        var position = 0
        var partFirst = first
        for part in parts {
            let partEnd = position + part.bytes.count
            while position < partEnd {
                let batch = scratch.pointer + position
                var header = RecordBatchHeader(UnsafeRawPointer(batch))
                header.baseOffset = partFirst + header.baseOffset
                batch.storeBigEndian(header.baseOffset, at: 0)
                do {
                    try writeBatch(header, bytes: UnsafeRawBufferPointer(start: batch, count: header.totalSize))
                } catch {
                    throw undo(to: mark, firstOffset: first, after: error)
                }
                position += header.totalSize
            }
            partFirst += Int64(part.recordCount)
        }
        return first...(endOffset - 1)
    }

    /// How an append of `records` is cut into batches: by count, bytes and time span.
    static func batchRanges(_ records: RecordBuffer, configuration: LogConfiguration) -> [Range<Int>] {
        var ranges: [Range<Int>] = []
        var start = 0
        let span = configuration.maxBatchTimestampSpan
        while start < records.count {
            var end = start
            var bytes = 0
            var lowest = records.entries[start].timestamp, highest = lowest
            while end < records.count && end - start < configuration.maxBatchRecords {
                let entry = records.entries[end]
                bytes += Int(entry.valueLength) + max(Int(entry.keyLength), 0) + 16
                if end > start && bytes > configuration.maxBatchBytes { break }
                let newLowest = min(lowest, entry.timestamp), newHighest = max(highest, entry.timestamp)
                if end > start && newHighest &- newLowest > span { break }
                lowest = newLowest
                highest = newHighest
                end += 1
            }
            ranges.append(start..<end)
            start = end
        }
        return ranges
    }

    /// Where the active segment stood before an append: what `undo` puts back.
    private struct AppendMark {
        let active: ActiveSegment
        let size: Int64
        let index: SegmentIndexBuilder.Mark
        let maxTimestamp: Int64?
    }

    /// After a write of an append failed: when it failed for want of space, takes back the segments the
    /// append rolled to (`removeSegments(after:)`), cuts the segment it started in and its indexes back
    /// to `mark` (nothing of the append stays, so nothing torn is ever followed by more) and answers
    /// `.noSpace`, leaving the log writable: the next append, once there is space, goes where this one
    /// would have. Any other failure (a failed fsync above all), or a failure to cut back, leaves the
    /// log refusing writes until it is opened again (recovery then cuts the torn tail).
    private func undo(to mark: AppendMark, firstOffset: Int64, after error: LogError) -> LogError {
        guard failure == nil, error.isOutOfSpace else {
            if failure == nil { failure = error }
            return error
        }
        do {
            if mark.active !== active || sealed.last?.baseOffset == mark.active.baseOffset {
                try removeSegments(after: mark.active.baseOffset)
                active = mark.active
            }
            try active.log.truncate(to: mark.size)
            try active.offsetIndex.truncate(to: Int64(mark.index.offsets) * 8)
            try active.timeIndex.truncate(to: Int64(mark.index.times) * 12)
            // The cut made durable: a roll had fsynced the first batches, and writeback may have written
            // others; after a crash they would come back as whole valid batches of a refused append.
            try active.log.syncData()
        } catch {
            failure = error
            return error
        }
        active.size = mark.size
        active.indexBuilder.rollBack(to: mark.index)
        endOffset = firstOffset
        // A roll made the append's first batches durable; what follows the cut is not, whatever it gets.
        durableEndOffset = min(durableEndOffset, firstOffset)
        maxTimestamp = mark.maxTimestamp
        lastAppendBatches.removeAll(keepingCapacity: true)
        return LogError(.noSpace, "\(directory): the filesystem is full (\(error.message)); nothing of this append was written, and writes resume once there is space")
    }

    /// Takes back the rolls of an append that failed for want of space: the segments after `base` hold
    /// nothing but that append's batches, so their files go, and so does the sealing of the segment at
    /// `base` (its final time entry goes with the caller's cut). A recovery point a roll wrote may stay
    /// ahead of the log: recovery verifies from the last segment at or before it, which is this one.
    private func removeSegments(after base: Int64) throws(LogError) {
        sealed.removeAll { $0.baseOffset >= base }
        // Newest first: a crash part way leaves the segments without a gap between them.
        let later = try Self.segmentBaseOffsets(in: directory).filter { $0 > base }
        for segment in later.reversed() {
            for path in [Self.logPath(directory, segment), Self.offsetIndexPath(directory, segment), Self.timeIndexPath(directory, segment)] {
                try FileSystem.remove(path)
            }
        }
        if !later.isEmpty { try FileSystem.syncDirectory(directory) }
    }

    /// Encodes batches `worker`, `worker + workers`, ... of `ranges`.
    private static func encode(_ records: RecordBuffer, _ ranges: [Range<Int>], firstOffset: Int64, worker: Int, of workers: Int,
                               encoder: RecordBatchEncoder) -> [EncodedBatch] {
        var result: [EncodedBatch] = []
        var index = worker
        while index < ranges.count {
            let start = encoder.output.count
            let header = encoder.encode(records, range: ranges[index], baseOffset: firstOffset + Int64(ranges[index].lowerBound))
            result.append(EncodedBatch(header: header, encoder: worker, start: start))
            index += workers
        }
        return result
    }

    private func checkWritable() throws(LogError) {
        if isClosed { throw LogError(.closed, "\(directory): the log is closed") }
        if let failure { throw LogError(.closed, "\(directory): the log refuses writes after an earlier failure (\(failure.message)); restart to recover") }
    }

    private func writeBatch(_ header: RecordBatchHeader, bytes: UnsafeRawBufferPointer) throws(LogError) {
        // A roll that fails for want of space is taken back with the rest of the append (`undo`).
        if shouldRoll(before: header) { try roll() }
        let position = active.size
        try active.log.write(bytes, at: position)
        active.size += Int64(header.totalSize)
        let added = active.indexBuilder.add(header, position: position)
        if let entry = added.offset {
            var one = SegmentIndex(); one.offsets = [entry]
            try active.offsetIndex.write(one.offsetBytes, at: Int64(active.indexBuilder.index.offsets.count - 1) * 8)
        }
        if let entry = added.time {
            var one = SegmentIndex(); one.times = [entry]
            try active.timeIndex.write(one.timeBytes, at: Int64(active.indexBuilder.index.times.count - 1) * 12)
        }
        endOffset = header.nextOffset
        maxTimestamp = max(maxTimestamp ?? header.maxTimestamp, header.maxTimestamp)
        lastAppendBatches.append(WrittenBatch(baseOffset: header.baseOffset, lastOffset: header.lastOffset,
                                              segment: active.baseOffset, position: position, size: Int32(header.totalSize)))
    }

    private func shouldRoll(before header: RecordBatchHeader) -> Bool {
        guard active.size > 0 else { return false }
        if active.size + Int64(header.totalSize) > Int64(configuration.segmentBytes) { return true }
        if let first = active.indexBuilder.firstBatchMaxTimestamp,
           header.maxTimestamp &- first > configuration.segmentMilliseconds { return true }
        if header.lastOffset - active.baseOffset > Int64(Int32.max) { return true }
        return false
    }

    /// Seals the active segment now and starts a new one, unless it is empty: an online erasure
    /// (`LogWriter.pause()`) then rewrites sealed segments only, never the one the writer appends to.
    public func sealActiveSegment() throws(LogError) {
        try checkWritable()
        guard active.size > 0 else { return }
        do { try roll() } catch {
            failure = error
            throw error
        }
    }

    /// Seals the active segment and starts a new one at `endOffset`.
    /// A failed fsync is never taken back or tried again (the kernel's pages are in an unknown state):
    /// it leaves the log refusing writes. A write that fails for want of space is the caller's to undo.
    private func roll() throws(LogError) {
        func sync(_ file: File) throws(LogError) {
            do { try file.syncData() } catch {
                failure = error
                throw error
            }
        }
        try sync(active.log)
        if let entry = active.indexBuilder.seal() {
            var one = SegmentIndex(); one.times = [entry]
            try active.timeIndex.write(one.timeBytes, at: Int64(active.indexBuilder.index.times.count - 1) * 12)
        }
        try sync(active.offsetIndex)
        try sync(active.timeIndex)
        sealed.append(SealedSegment(baseOffset: active.baseOffset, size: active.size))
        durableEndOffset = endOffset
        try Self.createSegmentFiles(directory, baseOffset: endOffset)
        do { try FileSystem.syncDirectory(directory) } catch {
            failure = error
            throw error
        }
        try Self.writeRecoveryPoint(directory, endOffset)
        active = try Self.openActive(directory, baseOffset: endOffset, size: 0,
                                     builder: SegmentIndexBuilder(baseOffset: endOffset, intervalBytes: configuration.indexIntervalBytes))
    }

    /// Makes every appended record durable.
    public func sync() throws(LogError) {
        try checkWritable()
        guard durableEndOffset < endOffset else { return }
        do {
            try active.log.syncData()
        } catch {
            failure = error
            throw error
        }
        durableEndOffset = endOffset
    }

    /// Syncs the log and its indexes and marks it cleanly closed. The log cannot be used afterwards.
    public func close() throws(LogError) {
        guard !isClosed else { return }
        if failure == nil {
            try sync()
            try active.offsetIndex.syncData()
            try active.timeIndex.syncData()
            try Self.writeRecoveryPoint(directory, active.baseOffset)
            try FileSystem.writeAtomically([], to: directory + "/" + Self.cleanShutdownName)
        }
        isClosed = true
    }

    /// The segments' base offsets and sizes, oldest first (the last is the active one).
    public var segments: [(baseOffset: Int64, size: Int64)] {
        sealed.map { ($0.baseOffset, $0.size) } + [(active.baseOffset, active.size)]
    }
}

/// Where one batch was written: its offsets, the segment (named by its base offset) and the byte position in
/// it. A reader with this needs no index to find the batch: one positioned read of `size` bytes.
public struct WrittenBatch: Sendable, Equatable {
    public let baseOffset: Int64
    public let lastOffset: Int64
    /// The base offset of the segment holding the batch.
    public let segment: Int64
    /// The batch's first byte in the segment's `.log` file.
    public let position: Int64
    /// The batch's bytes on disk (`RecordBatchHeader.totalSize`).
    public let size: Int32

    public init(baseOffset: Int64, lastOffset: Int64, segment: Int64, position: Int64, size: Int32) {
        self.baseOffset = baseOffset
        self.lastOffset = lastOffset
        self.segment = segment
        self.position = position
        self.size = size
    }
}

/// Carries a value the compiler cannot prove `Sendable` across threads, where the caller guarantees
/// the accesses do not race: `concurrentPerform`'s workers each writing only their own element (here),
/// a replay's reader thread that alone uses the `LogReader` from then on (`Replay`).
package struct UnsafeSendable<Value>: @unchecked Sendable {
    package let value: Value
    package init(_ value: Value) { self.value = value }
}
