/// Reads a log's segments from disk, checking every batch it hands out.
///
/// It takes no lock: it can read while another process appends. It sees the segments that existed
/// when it was opened. Every batch read is checked (framing, CRC-32C, offsets continuing from the
/// previous batch, every record's layout); a bad batch is a `.corrupt` error naming the file and byte
/// position. The one exception is the very end of the last segment of a log that is open or was not
/// closed cleanly: bytes there that do not form a whole valid batch are a write in progress or torn by
/// a crash — never acknowledged — so reading stops before them and `ReadSummary.tornTail` says where
/// they are. In a cleanly closed log they are corruption like any other.
public final class LogReader {
    public let directory: String
    public let maxBatchSize: Int
    /// The segments, oldest first.
    public let segments: [SegmentFile]
    /// Whether the log was closed cleanly (no writer since): then its tail cannot be torn.
    public let closedCleanly: Bool
    private let decoder = RecordBatchDecoder()

    /// A segment file on disk.
    public struct SegmentFile: Sendable {
        public let baseOffset: Int64
        public let path: String
        public let size: Int64
    }

    /// Where a read starts.
    public enum Start: Sendable, Equatable {
        case offset(Int64)
        /// The first records with a timestamp at or after this (ms); earlier records are skipped.
        case timestamp(Int64)
    }

    /// What a read saw, besides the records.
    public struct ReadSummary: Sendable, Equatable {
        /// Batches read and checked.
        public var batches = 0
        /// Records handed to the caller.
        public var records = 0
        /// The offset after the last batch read.
        public var endOffset: Int64 = 0
        /// Bytes at the end of the last segment that are not a whole valid batch: file, position, bytes, reason.
        public var tornTail: TornTail?
    }

    public struct TornTail: Sendable, Equatable, CustomStringConvertible {
        public let path: String
        public let position: Int64
        public let bytes: Int64
        public let reason: String
        public var description: String {
            "\(path): ignored \(bytes) bytes at byte \(position) (\(reason)); they were never acknowledged"
        }
    }

    /// A batch as `forEachBatch` reports it.
    public struct BatchInfo: Sendable {
        public let header: RecordBatchHeader
        public let segment: SegmentFile
        public let position: Int64
        /// The smallest record timestamp, when the records were decoded (`verify` or `decode`): the header
        /// has only the largest and a base for the deltas.
        public var smallestTimestamp: Int64?
    }

    /// Opens the log in `directory` for reading.
    public init(directory: String, maxBatchSize: Int = LogConfiguration().maxBatchSizeOnDisk) throws(LogError) {
        guard FileSystem.isDirectory(directory) else {
            throw LogError(.invalidArgument, "no log at '\(directory)' (the directory does not exist)")
        }
        self.directory = directory
        self.maxBatchSize = maxBatchSize
        self.closedCleanly = FileSystem.exists(directory + "/" + Log.cleanShutdownName)
        self.segments = try Log.segmentBaseOffsets(in: directory).map {
            let path = Log.logPath(directory, $0)
            return SegmentFile(baseOffset: $0, path: path, size: FileSystem.size(path) ?? 0)
        }
    }

    /// Calls `body` for every record from `start` on, in offset order, until it returns false.
    /// Records with an offset below (or a timestamp before) `start` are not passed to `body`.
    @discardableResult
    public func forEachRecord(from start: Start = .offset(0), _ body: (RecordView) throws -> Bool) throws -> ReadSummary {
        var handed = 0
        var summary = try forEachRecordBatch(from: start) { batch in
            for record in batch {
                handed += 1
                if try !body(record) { return false }
            }
            return true
        }
        summary.records = handed
        return summary
    }

    /// Calls `body` with the records of each batch from `start` on, in offset order, until it returns false:
    /// the fast path for consumers that work a batch at a time (the projector prefetches across it).
    /// The records point into the reader's buffers and are valid only during the call.
    @discardableResult
    public func forEachRecordBatch(from start: Start = .offset(0), _ body: (UnsafeBufferPointer<RecordView>) throws -> Bool) throws -> ReadSummary {
        try forEachRecordBatch(from: start) { records, _ in try body(records) }
    }

    /// As `forEachRecordBatch`, with the offset after each batch: after an erasure a batch may end
    /// past its last record, or hold none (its offsets are gaps), and a fold's next offset is the batch's end.
    @discardableResult
    public func forEachRecordBatch(from start: Start = .offset(0),
                                   _ body: (UnsafeBufferPointer<RecordView>, _ batchEnd: Int64) throws -> Bool) throws -> ReadSummary {
        var records = 0
        var summary = try walk(from: start, verify: true) { info, bytes in
            switch start {
            case .offset(let offset) where info.header.lastOffset < offset: return true
            case .timestamp(let timestamp) where info.header.maxTimestamp < timestamp: return true
            default: break
            }
            let views: UnsafeMutableBufferPointer<RecordView>
            do {
                views = try decoder.decodeRecords(bytes, header: info.header)
            } catch let error as BatchFormatError {
                throw LogError.corrupt(info.segment.path, position: info.position, error.reason)
            }
            // Drop what precedes the start: records before the offset (only in the batch it falls in),
            // records before the time (in any batch: a batch's times are not in order).
            var count = views.count
            switch start {
            case .offset(let offset) where info.header.baseOffset < offset:
                count = 0
                for i in views.indices where views[i].offset >= offset { views[count] = views[i]; count += 1 }
            case .timestamp(let timestamp):
                count = 0
                for i in views.indices where views[i].timestamp >= timestamp { views[count] = views[i]; count += 1 }
            default:
                break
            }
            records += count
            return try body(UnsafeBufferPointer(rebasing: views[0..<count]), info.header.nextOffset)
        }
        summary.records = records
        return summary
    }

    /// Calls `body` with each batch from `start` on (where it lies: segment and byte position) and its
    /// records, every one of them (also those before `start` in the batch it falls in), until it returns
    /// false: for a consumer that indexes records by their batch's place (the chat's message index). The
    /// records point into the reader's buffers and are valid only during the call.
    @discardableResult
    public func forEachLocatedBatch(from start: Int64 = 0, _ body: (BatchInfo, UnsafeBufferPointer<RecordView>) throws -> Bool) throws -> ReadSummary {
        try walk(from: .offset(start), verify: true) { info, bytes in
            if info.header.lastOffset < start { return true }
            let views: UnsafeMutableBufferPointer<RecordView>
            do {
                views = try decoder.decodeRecords(bytes, header: info.header)
            } catch let error as BatchFormatError {
                throw LogError.corrupt(info.segment.path, position: info.position, error.reason)
            }
            return try body(info, UnsafeBufferPointer(views))
        }
    }

    /// Calls `body` for every batch from `start` on with its header, until it returns false. With
    /// `verify`, each batch's CRC and records are checked first; with `decode`, its records are decoded
    /// (and their framing checked) to find its smallest timestamp.
    @discardableResult
    public func forEachBatch(from start: Start = .offset(0), verify: Bool, decode: Bool = false,
                             _ body: (BatchInfo) throws -> Bool) throws -> ReadSummary {
        try walk(from: start, verify: verify) { info, bytes in
            var info = info
            if verify || decode {
                var smallest = Int64.max
                do {
                    try decoder.forEachRecord(bytes, header: info.header) { smallest = min(smallest, $0.timestamp) }
                } catch let error as BatchFormatError {
                    throw LogError.corrupt(info.segment.path, position: info.position, error.reason)
                }
                if smallest != Int64.max { info.smallestTimestamp = smallest }
            }
            return try body(info)
        }
    }

    /// The shared walk: picks the segments and start positions, checks framing, offsets and (with `verify`) CRCs.
    private func walk(from start: Start, verify: Bool,
                      _ body: (BatchInfo, UnsafeRawBufferPointer) throws -> Bool) throws -> ReadSummary {
        var summary = ReadSummary()
        var first = 0
        if case .offset(let offset) = start, let index = segments.lastIndex(where: { $0.baseOffset <= offset }) {
            first = index
        }
        for index in first..<segments.count {
            let segment = segments[index]
            let isLast = index == segments.count - 1
            let tailMayBeTorn = isLast && !closedCleanly
            let file = try File.openForReading(segment.path)
            var position: Int64 = 0
            if let segmentIndex = loadIndex(segment) {
                switch start {
                case .offset(let offset):
                    position = segmentIndex.position(forOffset: offset, baseOffset: segment.baseOffset)
                case .timestamp(let timestamp):
                    if !isLast, let max = segmentIndex.maxTimestamp, max < timestamp {
                        summary.endOffset = segments[index + 1].baseOffset
                        continue
                    }
                    position = segmentIndex.position(forTimestamp: timestamp, baseOffset: segment.baseOffset)
                }
            }
            let scanner = try SegmentScanner(file: file, from: position, maxBatchSize: maxBatchSize)
            var expected: Int64? = position == 0 ? segment.baseOffset : nil
            scan: while true {
                let step = try scanner.next()
                func damaged(_ at: Int64, _ reason: String) throws -> Bool {
                    let size = scanner.fileSize
                    if tailMayBeTorn { summary.tornTail = TornTail(path: segment.path, position: at, bytes: size - at, reason: reason); return false }
                    throw LogError.corrupt(segment.path, position: at, reason)
                }
                switch step {
                case .end:
                    break scan
                case .incomplete(let at, let bytes):
                    if try !damaged(at, "incomplete batch (\(bytes) bytes)") { return summary }
                case .invalid(let at, let reason):
                    if try !damaged(at, reason) { return summary }
                case .batch(let header, let bytes, let at):
                    if let expected, header.baseOffset != expected {
                        throw LogError.corrupt(segment.path, position: at, "batch starts at offset \(header.baseOffset), expected \(expected)")
                    }
                    if verify && !RecordBatchDecoder.crcMatches(bytes, header: header) {
                        // A bad CRC on the file's last batch of the last segment is a torn write; anywhere else, damage.
                        if tailMayBeTorn && at + Int64(header.totalSize) == scanner.fileSize {
                            summary.tornTail = TornTail(path: segment.path, position: at, bytes: Int64(header.totalSize), reason: "bad CRC")
                            return summary
                        }
                        throw LogError.corrupt(segment.path, position: at, "batch has a bad CRC")
                    }
                    expected = header.nextOffset
                    summary.batches += 1
                    summary.endOffset = header.nextOffset
                    if try !body(BatchInfo(header: header, segment: segment, position: at), bytes) { return summary }
                }
            }
            if !isLast, let expected, expected != segments[index + 1].baseOffset {
                throw LogError.corrupt(segment.path, position: scanner.fileSize,
                                       "segment ends at offset \(expected) but the next segment starts at \(segments[index + 1].baseOffset)")
            }
        }
        return summary
    }

    /// The offset after the last whole batch, from batch headers only (no CRC checks): cheap, for
    /// deciding whether a checkpoint still fits the log.
    public func endOffsetFromHeaders() throws -> Int64 {
        guard let last = segments.last else { return 0 }
        var end = last.baseOffset
        _ = try walk(from: .offset(last.baseOffset), verify: false) { info, _ in
            end = info.header.nextOffset
            return true
        }
        return end
    }

    /// The segment's index, or nil when it is missing or inconsistent (the read then scans from byte 0).
    private func loadIndex(_ segment: SegmentFile) -> SegmentIndex? {
        guard let offsets = try? File.openForReading(Log.offsetIndexPath(directory, segment.baseOffset)).readAll(),
              let times = try? File.openForReading(Log.timeIndexPath(directory, segment.baseOffset)).readAll()
        else { return nil }
        return SegmentIndex.parse(offsetBytes: offsets, timeBytes: times, logSize: segment.size)
    }
}
