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

    private init(directory: String, configuration: LogConfiguration, sealed: [SealedSegment], active: ActiveSegment,
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

    // MARK: Opening and recovery

    /// Opens the log in `directory` (creating it), recovering it when it was not closed cleanly.
    /// `report` receives one line for each thing recovery did.
    ///
    /// The caller must hold the data directory's lock (`DataDirectory`).
    public static func open(directory: String, configuration: LogConfiguration = LogConfiguration(),
                            report: (String) -> Void = { _ in }) throws(LogError) -> Log {
        try configuration.validate()
        try FileSystem.createDirectory(directory)
        var lines: [String] = []
        func note(_ line: String) {
            lines.append(line)
            report(line)
        }
        // Leftovers of an interrupted atomic write, and indexes whose log is gone.
        let names = try FileSystem.list(directory)
        for name in names where name.hasSuffix(".tmp") {
            try FileSystem.remove(directory + "/" + name)
        }
        var bases = try segmentBaseOffsets(in: directory)
        let baseSet = Set(bases.map(segmentName))
        for name in names where name.hasSuffix(".index") || name.hasSuffix(".timeindex") {
            let stem = String(name.prefix(while: { $0 != "." }))
            if !baseSet.contains(stem) { try FileSystem.remove(directory + "/" + name) }
        }

        let markerPath = directory + "/" + cleanShutdownName
        let clean = FileSystem.exists(markerPath) || bases.isEmpty
        let recoveryPoint = clean ? Int64.max : readRecoveryPoint(directory)
        let isNew = bases.isEmpty
        if isNew {
            bases = [0]
            try createSegmentFiles(directory, baseOffset: 0)
            try FileSystem.syncDirectory(directory)
        }

        // Scan what may hold unsynced bytes: on an unclean open, every segment from the one holding the
        // recovery point; on a clean open, the last segment's headers only (to find the end).
        let firstToVerify = clean ? bases.count : max(0, (bases.lastIndex(where: { $0 <= recoveryPoint }) ?? 0))
        var sealed: [SealedSegment] = []
        var active: ActiveSegment?
        var endOffset: Int64 = bases[0]
        var maxTimestamp: Int64?
        func noteTimestamp(_ timestamp: Int64?) {
            if let timestamp, timestamp != Int64.min { maxTimestamp = max(maxTimestamp ?? timestamp, timestamp) }
        }
        var index = 0
        while index < bases.count {
            let base = bases[index]
            let isLast = index == bases.count - 1
            let verify = index >= firstToVerify
            if !verify && !isLast {
                let size = FileSystem.size(logPath(directory, base)) ?? 0
                noteTimestamp(try ensureIndexes(directory, baseOffset: base, logSize: size, configuration: configuration))
                sealed.append(SealedSegment(baseOffset: base, size: size))
                endOffset = bases[index + 1]
                index += 1
                continue
            }
            let scan = try scanSegment(directory, baseOffset: base, expectedBase: index == 0 ? nil : endOffset,
                                       verify: verify || !clean, configuration: configuration)
            if let cut = scan.cut {
                let path = logPath(directory, base)
                note("\(path): \(cut.reason) at byte \(scan.validBytes); truncated \(cut.bytes) bytes")
                let file = try File.openForWriting(path)
                try file.truncate(to: scan.validBytes)
                try file.syncData()
                for later in bases[(index + 1)...] {
                    let laterSize = FileSystem.size(logPath(directory, later)) ?? 0
                    note("\(logPath(directory, later)): removed, \(laterSize) bytes after the truncation point")
                    for suffix in [".log", ".index", ".timeindex"] {
                        try FileSystem.remove(directory + "/" + segmentName(later) + suffix)
                    }
                }
                bases.removeSubrange((index + 1)...)
                try FileSystem.syncDirectory(directory)
            }
            endOffset = scan.endOffset
            noteTimestamp(scan.builder.maxTimestamp)
            if index == bases.count - 1 {
                active = try openActive(directory, baseOffset: base, size: scan.validBytes, builder: scan.builder)
            } else {
                try writeIndexFiles(directory, baseOffset: base, builder: scan.builder, sealing: true)
                sealed.append(SealedSegment(baseOffset: base, size: scan.validBytes))
            }
            index += 1
        }
        guard let active else { throw LogError(.corrupt, "\(directory): no active segment after recovery") }
        if !clean && !isNew && lines.isEmpty { note("\(directory): not closed cleanly; scanned from offset \(bases[firstToVerify]) and found no damage") }
        try FileSystem.remove(markerPath)
        try FileSystem.syncDirectory(directory)
        return Log(directory: directory, configuration: configuration, sealed: sealed, active: active,
                   endOffset: endOffset, openedCleanly: clean, report: lines, maxTimestamp: maxTimestamp)
    }

    private struct ScanResult {
        var validBytes: Int64
        var endOffset: Int64
        var builder: SegmentIndexBuilder
        var cut: (reason: String, bytes: Int64)?
    }

    /// Walks a segment, rebuilding its index; with `verify`, checks each batch's CRC and records.
    /// Stops at the first batch that is not valid and reports it as `cut`.
    private static func scanSegment(_ directory: String, baseOffset: Int64, expectedBase: Int64?, verify: Bool,
                                    configuration: LogConfiguration) throws(LogError) -> ScanResult {
        let file = try File.openForReading(logPath(directory, baseOffset))
        let scanner = try SegmentScanner(file: file, from: 0, maxBatchSize: configuration.maxBatchSizeOnDisk)
        let decoder = RecordBatchDecoder()
        var builder = SegmentIndexBuilder(baseOffset: baseOffset, intervalBytes: configuration.indexIntervalBytes)
        var next = baseOffset
        if let expectedBase, expectedBase != baseOffset {
            return ScanResult(validBytes: 0, endOffset: expectedBase, builder: builder,
                              cut: ("segment is named \(baseOffset) but the previous one ends at \(expectedBase)", scanner.fileSize))
        }
        while true {
            let position = scanner.position
            func cut(_ reason: String) -> ScanResult {
                ScanResult(validBytes: position, endOffset: next, builder: builder, cut: (reason, scanner.fileSize - position))
            }
            switch try scanner.next() {
            case .end:
                return ScanResult(validBytes: position, endOffset: next, builder: builder, cut: nil)
            case .incomplete(_, let bytes):
                return cut("incomplete batch (\(bytes) bytes)")
            case .invalid(_, let reason):
                return cut(reason)
            case .batch(let header, let bytes, _):
                if header.baseOffset != next { return cut("batch starts at offset \(header.baseOffset), expected \(next)") }
                if verify {
                    if !RecordBatchDecoder.crcMatches(bytes, header: header) { return cut("bad CRC") }
                    do {
                        try decoder.forEachRecord(bytes, header: header) { _ in }
                    } catch let error as BatchFormatError {
                        return cut(error.reason)
                    } catch {
                        return cut("\(error)")
                    }
                }
                _ = builder.add(header, position: position)
                next = header.nextOffset
            }
        }
    }

    private static func readRecoveryPoint(_ directory: String) -> Int64 {
        guard let file = try? File.openForReading(directory + "/" + recoveryPointName),
              let bytes = try? file.readAll() else { return 0 }
        let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n")
        guard lines.count >= 2, lines[0] == "1", let offset = Int64(lines[1]) else { return 0 }
        return offset
    }

    private static func writeRecoveryPoint(_ directory: String, _ offset: Int64) throws(LogError) {
        try FileSystem.writeAtomically(Array("1\n\(offset)\n".utf8), to: directory + "/" + recoveryPointName)
    }

    static func logPath(_ directory: String, _ base: Int64) -> String { directory + "/" + segmentName(base) + ".log" }
    static func offsetIndexPath(_ directory: String, _ base: Int64) -> String { directory + "/" + segmentName(base) + ".index" }
    static func timeIndexPath(_ directory: String, _ base: Int64) -> String { directory + "/" + segmentName(base) + ".timeindex" }

    private static func createSegmentFiles(_ directory: String, baseOffset: Int64) throws(LogError) {
        for path in [logPath(directory, baseOffset), offsetIndexPath(directory, baseOffset), timeIndexPath(directory, baseOffset)] {
            let file = try File.openForWriting(path, create: true)
            try file.truncate(to: 0)
        }
    }

    /// Checks a sealed segment's index files and rebuilds them from the log when they are missing or inconsistent.
    /// Returns the segment's largest timestamp (its time index's last entry).
    private static func ensureIndexes(_ directory: String, baseOffset: Int64, logSize: Int64,
                                      configuration: LogConfiguration) throws(LogError) -> Int64? {
        if let offsets = try? File.openForReading(offsetIndexPath(directory, baseOffset)).readAll(),
           let times = try? File.openForReading(timeIndexPath(directory, baseOffset)).readAll(),
           let index = SegmentIndex.parse(offsetBytes: offsets, timeBytes: times, logSize: logSize),
           logSize == 0 || !times.isEmpty {
            return index.maxTimestamp
        }
        let scan = try scanSegment(directory, baseOffset: baseOffset, expectedBase: nil, verify: false, configuration: configuration)
        try writeIndexFiles(directory, baseOffset: baseOffset, builder: scan.builder, sealing: true)
        return scan.builder.maxTimestamp
    }

    /// Writes a segment's index files whole. With `sealing`, adds the final time entry and fsyncs them.
    private static func writeIndexFiles(_ directory: String, baseOffset: Int64, builder: SegmentIndexBuilder,
                                        sealing: Bool) throws(LogError) {
        var builder = builder
        if sealing { _ = builder.seal() }
        let index = builder.index
        let offsetFile = try File.openForWriting(offsetIndexPath(directory, baseOffset), create: true)
        try offsetFile.truncate(to: 0)
        try offsetFile.write(index.offsetBytes, at: 0)
        let timeFile = try File.openForWriting(timeIndexPath(directory, baseOffset), create: true)
        try timeFile.truncate(to: 0)
        try timeFile.write(index.timeBytes, at: 0)
        if sealing {
            try offsetFile.syncData()
            try timeFile.syncData()
        }
    }

    private static func openActive(_ directory: String, baseOffset: Int64, size: Int64,
                                   builder: SegmentIndexBuilder) throws(LogError) -> ActiveSegment {
        try writeIndexFiles(directory, baseOffset: baseOffset, builder: builder, sealing: false)
        return ActiveSegment(
            baseOffset: baseOffset,
            log: try File.openForWriting(logPath(directory, baseOffset)),
            offsetIndex: try File.openForWriting(offsetIndexPath(directory, baseOffset)),
            timeIndex: try File.openForWriting(timeIndexPath(directory, baseOffset)),
            size: size, indexBuilder: builder)
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

    /// Where the active segment stood before an append: what `undo` puts back.
    private struct AppendMark {
        let active: ActiveSegment
        let size: Int64
        let index: SegmentIndexBuilder.Mark
        let maxTimestamp: Int64?
    }

    /// After a write of an append failed: when it failed for want of space in the segment it started in,
    /// cuts the segment and its indexes back to `mark` (nothing of the append stays, so nothing torn is
    /// ever followed by more) and answers `.noSpace`, leaving the log writable: the next append, once
    /// there is space, goes where this one would have. Any other failure, or a failure to cut back,
    /// leaves the log refusing writes until it is opened again (recovery then cuts the torn tail).
    private func undo(to mark: AppendMark, firstOffset: Int64, after error: LogError) -> LogError {
        guard failure == nil, error.isOutOfSpace, mark.active === active else {
            if failure == nil { failure = error }
            return error
        }
        do {
            try active.log.truncate(to: mark.size)
            try active.offsetIndex.truncate(to: Int64(mark.index.offsets) * 8)
            try active.timeIndex.truncate(to: Int64(mark.index.times) * 12)
        } catch {
            failure = error
            return error
        }
        active.size = mark.size
        active.indexBuilder.rollBack(to: mark.index)
        endOffset = firstOffset
        maxTimestamp = mark.maxTimestamp
        lastAppendBatches.removeAll(keepingCapacity: true)
        return LogError(.noSpace, "\(directory): the filesystem is full (\(error.message)); nothing of this append was written, and writes resume once there is space")
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
        if shouldRoll(before: header) {
            // A roll that fails part way (the old segment sealed, the new one not open) is not undone.
            do { try roll() } catch {
                failure = error
                throw error
            }
        }
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

    /// Seals the active segment and starts a new one at `endOffset`.
    private func roll() throws(LogError) {
        try active.log.syncData()
        if let entry = active.indexBuilder.seal() {
            var one = SegmentIndex(); one.times = [entry]
            try active.timeIndex.write(one.timeBytes, at: Int64(active.indexBuilder.index.times.count - 1) * 12)
        }
        try active.offsetIndex.syncData()
        try active.timeIndex.syncData()
        sealed.append(SealedSegment(baseOffset: active.baseOffset, size: active.size))
        durableEndOffset = endOffset
        try Self.createSegmentFiles(directory, baseOffset: endOffset)
        try FileSystem.syncDirectory(directory)
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
