#if canImport(Glibc)
import Glibc
#endif

/// What `presence log-info` and the server's `GET /v1/log` say about a log: each segment's offsets,
/// events, batches, time range and bytes, and their total. Read without a lock, beside a writer.
public struct LogSummary: Sendable {
    /// One segment, or the whole log (`total`).
    public struct Segment: Sendable, Equatable {
        public var baseOffset: Int64
        /// The offset after its last record.
        public var endOffset: Int64
        public var batches = 0
        public var records: Int64 = 0
        /// The smallest and largest record times (ms); `Int64.max`/`.min` while it holds no record.
        public var firstTimestamp = Int64.max
        public var maxTimestamp = Int64.min
        /// The .log file's bytes, and its two indexes'.
        public var bytes: Int64 = 0
        public var indexBytes: Int64 = 0

        public init(baseOffset: Int64, endOffset: Int64, bytes: Int64 = 0) {
            self.baseOffset = baseOffset
            self.endOffset = endOffset
            self.bytes = bytes
        }

        /// Log bytes per event, or nil for an empty segment.
        public var bytesPerEvent: Double? { records == 0 ? nil : Double(bytes) / Double(records) }
    }

    public var directory: String
    public var segments: [Segment]
    public var total: Segment
    /// What the reader stopped before (a torn tail that was never acknowledged), if anything.
    public var tornTail: LogReader.TornTail?

    /// Reads every batch of the log in `directory` (decompressing it for its smallest time; `verify` also
    /// checks CRCs and records, and throws `LogError.corrupt` naming the file and byte of the first bad one).
    public static func read(directory: String, verify: Bool = false) throws -> LogSummary {
        let reader = try LogReader(directory: directory)
        var stats = reader.segments.map { Segment(baseOffset: $0.baseOffset, endOffset: $0.baseOffset, bytes: $0.size) }
        var positions: [String: Int] = [:]
        for (index, segment) in reader.segments.enumerated() {
            positions[segment.path] = index
            let stem = String(segment.path.dropLast(4))
            stats[index].indexBytes = (fileSize(stem + ".index") ?? 0) + (fileSize(stem + ".timeindex") ?? 0)
        }
        let summary = try reader.forEachBatch(verify: verify, decode: true) { batch in
            guard let index = positions[batch.segment.path] else { return true }
            stats[index].batches += 1
            stats[index].records += Int64(batch.header.recordsCount)
            stats[index].endOffset = batch.header.nextOffset
            stats[index].firstTimestamp = min(stats[index].firstTimestamp, batch.smallestTimestamp ?? batch.header.maxTimestamp)
            stats[index].maxTimestamp = max(stats[index].maxTimestamp, batch.header.maxTimestamp)
            return true
        }
        let total = stats.reduce(into: Segment(baseOffset: stats.first?.baseOffset ?? 0, endOffset: summary.endOffset)) {
            $0.batches += $1.batches
            $0.records += $1.records
            $0.firstTimestamp = min($0.firstTimestamp, $1.firstTimestamp)
            $0.maxTimestamp = max($0.maxTimestamp, $1.maxTimestamp)
            $0.bytes += $1.bytes
            $0.indexBytes += $1.indexBytes
        }
        return LogSummary(directory: reader.directory, segments: stats, total: total, tornTail: summary.tornTail)
    }

    private static func fileSize(_ path: String) -> Int64? {
        var info = stat()
        return stat(path, &info) == 0 ? Int64(info.st_size) : nil
    }
}
