/// Whole sealed segments removed from the front of a log (retention), as Kafka's `retention.ms` does:
/// never part of a segment, never the active (last) one.
///
/// The caller holds the data directory's lock and decides what may go (a checkpoint must cover it).
/// Removal goes oldest first, each segment's `.log` before its index files, the directory fsynced
/// after each: a crash leaves the log a suffix of what it was, and at worst index files without their
/// `.log`, which nothing reads (segments are listed by their `.log`) and the next pass removes.
public enum SegmentRetention {
    /// A sealed segment: its offsets, its newest record time (from the batch headers) and its size.
    public struct Segment: Sendable, Equatable {
        public var baseOffset: Int64
        public var endOffset: Int64
        /// The newest record time in it (ms); nil for an empty segment.
        public var maxTimestamp: Int64?
        public var bytes: Int64
    }

    /// The sealed segments of the log in `directory` (every segment but the last), oldest first, their
    /// newest record times read from the batch headers only (nothing is decompressed).
    public static func sealedSegments(directory: String,
                                      maxBatchSize: Int = LogConfiguration().maxBatchSizeOnDisk) throws(LogError) -> [Segment] {
        let bases = try Log.segmentBaseOffsets(in: directory)
        var segments: [Segment] = []
        for (index, base) in bases.enumerated().dropLast() {
            let path = Log.logPath(directory, base)
            let scanner = try SegmentScanner(file: try File.openForReading(path), from: 0, maxBatchSize: maxBatchSize)
            var newest: Int64?
            walk: while true {
                switch try scanner.next() {
                case .batch(let header, _, _):
                    newest = max(newest ?? header.maxTimestamp, header.maxTimestamp)
                case .end:
                    break walk
                case .incomplete(let position, _), .invalid(let position, _):
                    throw LogError(.corrupt, "\(path): a sealed segment is damaged at byte \(position); run `presence audit`")
                }
            }
            segments.append(Segment(baseOffset: base, endOffset: bases[index + 1], maxTimestamp: newest, bytes: scanner.fileSize))
        }
        return segments
    }

    /// Removes every segment that ends at or below `offset` (which must be a segment boundary), and
    /// index files left by an interrupted pass. Returns the segments and bytes removed.
    @discardableResult
    public static func remove(directory: String, below offset: Int64) throws(LogError) -> (segments: Int, bytes: Int64) {
        let bases = try Log.segmentBaseOffsets(in: directory)
        guard bases.contains(offset) else {
            throw LogError(.invalidArgument, "\(directory): offset \(offset) is not where a segment starts; nothing removed")
        }
        var removed = 0
        var bytes: Int64 = 0
        for base in bases where base < offset {
            let path = Log.logPath(directory, base)
            bytes += FileSystem.size(path) ?? 0
            try FileSystem.remove(path)
            try FileSystem.syncDirectory(directory)
            for index in [Log.offsetIndexPath(directory, base), Log.timeIndexPath(directory, base)] where FileSystem.exists(index) {
                try FileSystem.remove(index)
            }
            removed += 1
        }
        // Index files whose .log an interrupted pass already removed.
        for name in try FileSystem.list(directory) where name.hasSuffix(".index") || name.hasSuffix(".timeindex") {
            let stem = name.hasSuffix(".index") ? name.dropLast(6) : name.dropLast(10)
            if let base = Int64(stem), stem.count == 20, base < offset { try FileSystem.remove(directory + "/" + name) }
        }
        try FileSystem.syncDirectory(directory)
        return (removed, bytes)
    }
}
