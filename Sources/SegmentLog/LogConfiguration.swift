/// When appended records reach stable storage.
public enum Durability: Sendable, Equatable, CustomStringConvertible {
    /// fsync before a commit is acknowledged: nothing acknowledged is lost on a crash. The default.
    case always
    /// fsync at most this many milliseconds after an append; appends are acknowledged before that.
    case interval(milliseconds: Int)
    /// fsync only when a segment is sealed and on close.
    case never

    /// Parses `always`, `interval:MS` or `never`.
    public init?(parsing text: String) {
        switch text {
        case "always": self = .always
        case "never": self = .never
        default:
            guard text.hasPrefix("interval:"), let ms = Int(text.dropFirst("interval:".count)), ms > 0 else { return nil }
            self = .interval(milliseconds: ms)
        }
    }

    public var description: String {
        switch self {
        case .always: "always"
        case .never: "never"
        case .interval(let ms): "interval:\(ms)"
        }
    }
}

/// How a log writes: segment size and age, index density, batch bounds, durability, commit window.
/// Validated once when the log opens.
public struct LogConfiguration: Sendable, Equatable {
    /// Roll to a new segment before one grows past this many bytes. Default 64 MiB.
    public var segmentBytes: Int = 64 << 20
    /// Roll when a batch's largest timestamp is this many ms past the first batch's of the segment. Default 1 h.
    public var segmentMilliseconds: Int64 = 3_600_000
    /// Bytes of batches between two index entries. Default 4096, as Kafka.
    public var indexIntervalBytes: Int = 4096
    /// The most records in one batch. 8192 keeps record offset deltas within two bytes.
    public var maxBatchRecords: Int = 8192
    /// A batch ends before a record that would make its timestamps span more than this (ms, largest
    /// minus smallest). 16383 ms keeps every timestamp delta within two bytes (the batch's base is the
    /// midpoint), while a batch still holds enough records for LZ4 to find repeats.
    public var maxBatchTimestampSpan: Int64 = 16383
    /// The most uncompressed record bytes in one batch.
    public var maxBatchBytes: Int = 1 << 20
    /// The largest batch a reader accepts (a length above it is corruption).
    public var maxBatchSizeOnDisk: Int = 64 << 20
    public var durability: Durability = .always
    /// 0: LZ4's fast compressor (as `lz4 -1`); 1 to 12: LZ4 HC at that level (smaller, slower to write,
    /// as fast to read). Any level writes plain LZ4 frames.
    public var compressionLevel: Int = 4
    /// Threads that compress the batches of one large append in parallel.
    public var compressionThreads: Int = 2
    /// How long the writer waits, once a request is pending, for more to join the same commit (not
    /// after an idle window: then the request is committed at once).
    public var commitWindowMicroseconds: Int = 2_000
    /// A commit starts at once when this many records are pending.
    public var commitMaxRecords: Int = 131_072
    /// A commit starts at once when this many payload bytes are pending.
    public var commitMaxBytes: Int = 8 << 20

    public init() {}

    /// What is wrong with the configuration, if anything.
    public func validate() throws(LogError) {
        func require(_ condition: Bool, _ message: String) throws(LogError) {
            if !condition { throw LogError(.invalidArgument, message) }
        }
        try require(segmentBytes >= 4096 && segmentBytes <= Int(Int32.max), "segment size must be between 4096 bytes and 2 GiB, got \(segmentBytes)")
        try require(segmentMilliseconds > 0, "segment age must be positive, got \(segmentMilliseconds) ms")
        try require(indexIntervalBytes > 0, "index interval must be positive")
        try require(maxBatchRecords > 0 && maxBatchBytes > 0, "batch bounds must be positive")
        try require((1...64).contains(compressionThreads), "compression threads must be between 1 and 64")
        try require((0...12).contains(compressionLevel), "compression level must be 0 (LZ4 fast) to 12 (LZ4 HC), got \(compressionLevel)")
        try require(commitWindowMicroseconds >= 0 && commitWindowMicroseconds <= 1_000_000, "commit window must be between 0 and 1 s")
        if case .interval(let ms) = durability { try require(ms > 0, "fsync interval must be positive") }
    }
}
