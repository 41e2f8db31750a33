/// A segment rewritten without some of its records, every other record kept at its offset (an
/// erasure), as Kafka's log cleaner does: each batch keeps its base offset and lastOffsetDelta, so the
/// segment starts and ends where it did and the offsets of the removed records become gaps; a batch
/// whose records all go stays as an empty batch (`RecordBatchEncoder.encode(kept:of:)`).
///
/// Crash safety, for one segment `NNN`: the new content is written to `NNN.log.forget` and fsynced;
/// the index files are removed (indexes are caches: readers scan without them, the writer rebuilds them)
/// and the directory fsynced; the new file is renamed over `NNN.log` and the directory fsynced; then
/// the index files are written again, atomically. A crash at any moment leaves either the old or the
/// new `NNN.log` whole (rename is atomic), at worst with a `.forget` file that `removeLeftovers`
/// deletes, or without its index files. The caller holds the data directory's lock.
public enum SegmentRewrite {
    /// The suffix of a segment being rewritten, beside its `.log`.
    public static let suffix = ".log.forget"

    /// What rewriting one segment did.
    public struct Result: Sendable, Equatable {
        public var removed: Int
        public var bytesBefore: Int64
        public var bytesAfter: Int64
    }

    /// Deletes `.forget` files an interrupted rewrite left (never renamed in: their segment is whole).
    public static func removeLeftovers(directory: String) throws(LogError) {
        var removed = false
        for name in try FileSystem.list(directory) where name.hasSuffix(suffix) {
            try FileSystem.remove(directory + "/" + name)
            removed = true
        }
        if removed { try FileSystem.syncDirectory(directory) }
    }

    /// The offsets of every record `select` picks, per segment (base offset), in order. Reads the
    /// whole log, checking each batch; a damaged or torn log is refused (recover it first).
    public static func find(directory: String, select: (RecordView) -> Bool) throws -> [(segment: Int64, offsets: [Int64])] {
        let reader = try LogReader(directory: directory)
        var found: [(segment: Int64, offsets: [Int64])] = []
        let summary = try reader.forEachLocatedBatch { info, records in
            for record in records where select(record) {
                if found.last?.segment != info.segment.baseOffset { found.append((info.segment.baseOffset, [])) }
                found[found.count - 1].offsets.append(record.offset)
            }
            return true
        }
        if let torn = summary.tornTail {
            throw LogError(.corrupt, "\(torn.description); open the log once (presence replay or serve) to recover it first")
        }
        return found
    }

    /// Rewrites the segment starting at `baseOffset` without the records `drop` picks (see the type's
    /// comment for the order of steps). `sealed`: whether it is not the log's last segment (its time
    /// index then ends with its largest timestamp, as the writer seals one).
    @discardableResult
    public static func rewrite(directory: String, baseOffset: Int64, sealed: Bool,
                               configuration: LogConfiguration = LogConfiguration(),
                               drop: (RecordView) -> Bool) throws -> Result {
        let path = Log.logPath(directory, baseOffset)
        let temporary = directory + "/" + Log.segmentName(baseOffset) + suffix
        let scanner = try SegmentScanner(file: try File.openForReading(path), from: 0, maxBatchSize: configuration.maxBatchSizeOnDisk)
        let decoder = RecordBatchDecoder()
        let encoder = RecordBatchEncoder(compressionLevel: configuration.compressionLevel)
        let out = try File.openForWriting(temporary, create: true)
        try out.truncate(to: 0)
        var builder = SegmentIndexBuilder(baseOffset: baseOffset, intervalBytes: configuration.indexIntervalBytes)
        var written: Int64 = 0
        var removed = 0
        var kept: [RecordView] = []
        scan: while true {
            switch try scanner.next() {
            case .end:
                break scan
            case .incomplete(let at, _), .invalid(let at, _):
                throw LogError.corrupt(path, position: at, "not a whole batch; nothing rewritten (run `presence audit`)")
            case .batch(let header, let bytes, let at):
                guard RecordBatchDecoder.crcMatches(bytes, header: header) else {
                    throw LogError.corrupt(path, position: at, "batch has a bad CRC; nothing rewritten")
                }
                kept.removeAll(keepingCapacity: true)
                var dropped = 0
                do {
                    try decoder.forEachRecord(bytes, header: header) { record in
                        if drop(record) { dropped += 1 } else { kept.append(record) }
                    }
                } catch let error as BatchFormatError {
                    throw LogError.corrupt(path, position: at, error.reason)
                }
                let batchHeader: RecordBatchHeader
                if dropped == 0 {
                    try out.write(bytes, at: written)
                    batchHeader = header
                } else {
                    encoder.output.count = 0
                    batchHeader = encoder.encode(kept: kept, of: header)
                    try out.write(encoder.output.bytes, at: written)
                    removed += dropped
                }
                _ = builder.add(batchHeader, position: written)
                written += Int64(batchHeader.totalSize)
            }
        }
        try out.syncData()
        let before = scanner.fileSize
        let offsetIndex = Log.offsetIndexPath(directory, baseOffset), timeIndex = Log.timeIndexPath(directory, baseOffset)
        for index in [offsetIndex, timeIndex] where FileSystem.exists(index) { try FileSystem.remove(index) }
        try FileSystem.syncDirectory(directory)
        try FileSystem.rename(temporary, to: path)
        try FileSystem.syncDirectory(directory)
        if sealed { _ = builder.seal() }
        try FileSystem.writeAtomically(builder.index.offsetBytes, to: offsetIndex)
        try FileSystem.writeAtomically(builder.index.timeBytes, to: timeIndex)
        return Result(removed: removed, bytesBefore: before, bytesAfter: written)
    }
}
