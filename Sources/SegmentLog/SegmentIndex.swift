/// A segment's two sparse indexes, laid out as Kafka lays them. Both are caches: the log rebuilds them
/// from the `.log` file when they are missing or do not make sense.
///
/// `.index`, 8 bytes an entry, big-endian:
///
///     relativeOffset  int32   last offset of the batch - segment base offset
///     position        int32   byte position of that batch in the .log file
///
/// `.timeindex`, 12 bytes an entry, big-endian:
///
///     timestamp       int64   largest record timestamp in the segment up to this batch
///     relativeOffset  int32   last offset of the first batch that reached that timestamp
///
/// An entry is added before a batch once `indexIntervalBytes` of batches were written since the
/// previous one; a time entry only when the largest timestamp grew. A sealed segment's time index
/// ends with an entry for its largest timestamp.
struct SegmentIndex: Sendable, Equatable {
    struct OffsetEntry: Sendable, Equatable {
        var relativeOffset: Int32
        var position: Int32
    }

    struct TimeEntry: Sendable, Equatable {
        var timestamp: Int64
        var relativeOffset: Int32
    }

    static let offsetEntrySize = 8
    static let timeEntrySize = 12

    var offsets: [OffsetEntry] = []
    var times: [TimeEntry] = []

    /// The largest timestamp of the time index, if it has an entry.
    var maxTimestamp: Int64? { times.last?.timestamp }

    /// Parses index files; nil when their bytes are inconsistent with each other or with a log of `logSize` bytes.
    static func parse(offsetBytes: [UInt8], timeBytes: [UInt8], logSize: Int64) -> SegmentIndex? {
        guard offsetBytes.count % offsetEntrySize == 0, timeBytes.count % timeEntrySize == 0 else { return nil }
        var index = SegmentIndex()
        let valid: Bool = offsetBytes.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else { return true }
            index.offsets.reserveCapacity(raw.count / offsetEntrySize)
            for at in stride(from: 0, to: raw.count, by: offsetEntrySize) {
                let entry = OffsetEntry(relativeOffset: base.loadBigEndian(at: at, as: Int32.self),
                                        position: base.loadBigEndian(at: at + 4, as: Int32.self))
                if entry.relativeOffset < 0 || entry.position < 0 || Int64(entry.position) >= logSize { return false }
                if let last = index.offsets.last, entry.relativeOffset <= last.relativeOffset || entry.position <= last.position { return false }
                index.offsets.append(entry)
            }
            return true
        }
        guard valid else { return nil }
        let timesValid: Bool = timeBytes.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else { return true }
            for at in stride(from: 0, to: raw.count, by: timeEntrySize) {
                let entry = TimeEntry(timestamp: base.loadBigEndian(at: at, as: Int64.self),
                                      relativeOffset: base.loadBigEndian(at: at + 8, as: Int32.self))
                if entry.relativeOffset < 0 { return false }
                if let last = index.times.last, entry.timestamp <= last.timestamp || entry.relativeOffset < last.relativeOffset { return false }
                index.times.append(entry)
            }
            return true
        }
        guard timesValid else { return nil }
        return index
    }

    /// The byte position from which to scan for `offset`: the position of the last indexed batch that ends
    /// at or before `offset`, or 0.
    func position(forOffset offset: Int64, baseOffset: Int64) -> Int64 {
        let relative = offset - baseOffset
        guard relative > 0 else { return 0 }
        var low = 0, high = offsets.count
        while low < high {
            let mid = (low + high) / 2
            if Int64(offsets[mid].relativeOffset) <= relative { low = mid + 1 } else { high = mid }
        }
        return low == 0 ? 0 : Int64(offsets[low - 1].position)
    }

    /// The byte position from which to scan for records with timestamp >= `timestamp`: every record before
    /// it has a smaller timestamp.
    func position(forTimestamp timestamp: Int64, baseOffset: Int64) -> Int64 {
        var low = 0, high = times.count
        while low < high {
            let mid = (low + high) / 2
            if times[mid].timestamp < timestamp { low = mid + 1 } else { high = mid }
        }
        guard low > 0 else { return 0 }
        // times[low - 1] has a smaller timestamp: every batch before the one it names is older still.
        return position(forOffset: baseOffset + Int64(times[low - 1].relativeOffset), baseOffset: baseOffset)
    }

    /// Serialized `.index` bytes.
    var offsetBytes: [UInt8] {
        var bytes = [UInt8](repeating: 0, count: offsets.count * Self.offsetEntrySize)
        bytes.withUnsafeMutableBytes { raw in
            guard let base = raw.baseAddress else { return }
            for (i, entry) in offsets.enumerated() {
                base.storeBigEndian(entry.relativeOffset, at: i * Self.offsetEntrySize)
                base.storeBigEndian(entry.position, at: i * Self.offsetEntrySize + 4)
            }
        }
        return bytes
    }

    /// Serialized `.timeindex` bytes.
    var timeBytes: [UInt8] {
        var bytes = [UInt8](repeating: 0, count: times.count * Self.timeEntrySize)
        bytes.withUnsafeMutableBytes { raw in
            guard let base = raw.baseAddress else { return }
            for (i, entry) in times.enumerated() {
                base.storeBigEndian(entry.timestamp, at: i * Self.timeEntrySize)
                base.storeBigEndian(entry.relativeOffset, at: i * Self.timeEntrySize + 8)
            }
        }
        return bytes
    }
}

/// Decides, batch by batch, which index entries a segment gets. Used when appending and when rebuilding,
/// so that both produce the same files.
struct SegmentIndexBuilder {
    let baseOffset: Int64
    let intervalBytes: Int
    private(set) var index = SegmentIndex()
    private var bytesSinceLastEntry = 0
    private(set) var maxTimestamp = Int64.min
    private var offsetOfMaxTimestamp: Int64 = -1
    /// The max timestamp of the segment's first batch: the base for rolling by age.
    private(set) var firstBatchMaxTimestamp: Int64?

    init(baseOffset: Int64, intervalBytes: Int) {
        self.baseOffset = baseOffset
        self.intervalBytes = intervalBytes
    }

    /// Records a batch about to be written at `position`; returns the entries it adds, to be written to the files.
    mutating func add(_ header: RecordBatchHeader, position: Int64) -> (offset: SegmentIndex.OffsetEntry?, time: SegmentIndex.TimeEntry?) {
        if firstBatchMaxTimestamp == nil { firstBatchMaxTimestamp = header.maxTimestamp }
        if header.maxTimestamp > maxTimestamp {
            maxTimestamp = header.maxTimestamp
            offsetOfMaxTimestamp = header.lastOffset
        }
        var added: (offset: SegmentIndex.OffsetEntry?, time: SegmentIndex.TimeEntry?) = (nil, nil)
        if bytesSinceLastEntry > intervalBytes {
            let entry = SegmentIndex.OffsetEntry(relativeOffset: Int32(header.lastOffset - baseOffset), position: Int32(position))
            index.offsets.append(entry)
            added.offset = entry
            added.time = appendTimeEntryIfGrown()
            bytesSinceLastEntry = 0
        }
        bytesSinceLastEntry += header.totalSize
        return added
    }

    /// Where the builder stands: what `rollBack` returns it to. Counts, not copies of the entries, so that
    /// holding a mark costs the appends after it no copy of the arrays.
    struct Mark {
        let offsets: Int
        let times: Int
        let bytesSinceLastEntry: Int
        let maxTimestamp: Int64
        let offsetOfMaxTimestamp: Int64
        let firstBatchMaxTimestamp: Int64?
    }

    var mark: Mark {
        Mark(offsets: index.offsets.count, times: index.times.count, bytesSinceLastEntry: bytesSinceLastEntry,
             maxTimestamp: maxTimestamp, offsetOfMaxTimestamp: offsetOfMaxTimestamp, firstBatchMaxTimestamp: firstBatchMaxTimestamp)
    }

    /// Forgets every batch added since `mark` was taken.
    mutating func rollBack(to mark: Mark) {
        index.offsets.removeSubrange(mark.offsets...)
        index.times.removeSubrange(mark.times...)
        bytesSinceLastEntry = mark.bytesSinceLastEntry
        maxTimestamp = mark.maxTimestamp
        offsetOfMaxTimestamp = mark.offsetOfMaxTimestamp
        firstBatchMaxTimestamp = mark.firstBatchMaxTimestamp
    }

    /// The final time entry a segment gets when it is sealed, if its largest timestamp is not indexed yet.
    mutating func seal() -> SegmentIndex.TimeEntry? {
        appendTimeEntryIfGrown()
    }

    private mutating func appendTimeEntryIfGrown() -> SegmentIndex.TimeEntry? {
        guard offsetOfMaxTimestamp >= 0, maxTimestamp > (index.times.last?.timestamp ?? Int64.min) else { return nil }
        let entry = SegmentIndex.TimeEntry(timestamp: maxTimestamp, relativeOffset: Int32(offsetOfMaxTimestamp - baseOffset))
        index.times.append(entry)
        return entry
    }
}
