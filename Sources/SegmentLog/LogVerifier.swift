/// Checks every byte of a log, the way `presence audit` needs: each segment's batches (framing, CRC,
/// every record's layout, offsets contiguous from the segment's name (gaps inside batches, an erasure's, are listed), record timestamps within the
/// batch's bounds) and its index files against an index rebuilt from the batches. Unlike `LogReader`
/// it does not stop at the first problem: it reports each damaged segment and goes on with the next.
public enum LogVerifier {
    /// A problem found, located.
    public struct Finding: Sendable, CustomStringConvertible {
        public let path: String
        /// The batch's number within its segment (0-based), when the problem is in a batch.
        public let batch: Int?
        public let position: Int64
        public let reason: String

        public var description: String {
            "\(path): \(batch.map { "batch \($0) " } ?? "")at byte \(position): \(reason)"
        }
    }

    public struct Report: Sendable {
        public var segments = 0
        public var batches = 0
        public var records = 0
        public var bytes: Int64 = 0
        /// Damaged batches: the log cannot be trusted past them.
        public var corruption: [Finding] = []
        /// Index files that disagree with their segment (caches: the next writer rebuilds them).
        public var indexProblems: [Finding] = []
        /// The end of the last segment of a log that is open or was not closed cleanly, if it is not a whole batch.
        public var tornTail: Finding?
        /// Offsets inside batches that hold no record (an erasure removed them, as Kafka's compaction
        /// does), adjacent ranges merged. Whether each is accounted for is the caller's question.
        public var gaps: [ClosedRange<Int64>] = []
        /// The offset after the last valid batch.
        public var endOffset: Int64 = 0

        mutating func noteGap(_ gap: ClosedRange<Int64>) {
            if let last = gaps.last, last.upperBound + 1 == gap.lowerBound {
                gaps[gaps.count - 1] = last.lowerBound...gap.upperBound
            } else {
                gaps.append(gap)
            }
        }
    }

    /// Verifies the log in `directory`, calling `onRecord` for every record of every valid batch, in order.
    public static func verify(directory: String, onRecord: (RecordView) throws -> Void = { _ in }) throws -> Report {
        let reader = try LogReader(directory: directory)
        var report = Report()
        let decoder = RecordBatchDecoder()
        var expected: Int64? = nil
        for (index, segment) in reader.segments.enumerated() {
            report.segments += 1
            report.bytes += segment.size
            let isLast = index == reader.segments.count - 1
            let file = try File.openForReading(segment.path)
            let scanner = try SegmentScanner(file: file, from: 0, maxBatchSize: reader.maxBatchSize)
            var builder = SegmentIndexBuilder(baseOffset: segment.baseOffset, intervalBytes: LogConfiguration().indexIntervalBytes)
            var next = segment.baseOffset
            if let expected, expected != segment.baseOffset {
                report.corruption.append(Finding(path: segment.path, batch: nil, position: 0,
                                                 reason: "segment starts at offset \(segment.baseOffset) but the previous one ends at \(expected)"))
            }
            var batchNumber = 0
            var damaged = false
            scan: while true {
                let step = try scanner.next()
                switch step {
                case .end:
                    break scan
                case .incomplete(let at, let bytes):
                    let finding = Finding(path: segment.path, batch: batchNumber, position: at, reason: "incomplete batch (\(bytes) bytes to the end of the file)")
                    if isLast && !reader.closedCleanly { report.tornTail = finding } else { report.corruption.append(finding) }
                    damaged = true
                    break scan
                case .invalid(let at, let reason):
                    let finding = Finding(path: segment.path, batch: batchNumber, position: at, reason: reason)
                    if isLast && !reader.closedCleanly && at + Int64(RecordBatchHeader.size) >= scanner.fileSize {
                        report.tornTail = finding
                    } else {
                        report.corruption.append(finding)
                    }
                    damaged = true
                    break scan
                case .batch(let header, let bytes, let at):
                    func bad(_ reason: String) {
                        let finding = Finding(path: segment.path, batch: batchNumber, position: at, reason: reason)
                        if isLast && !reader.closedCleanly && at + Int64(header.totalSize) == scanner.fileSize {
                            report.tornTail = finding
                        } else {
                            report.corruption.append(finding)
                        }
                        damaged = true
                    }
                    if header.baseOffset != next { bad("batch starts at offset \(header.baseOffset), expected \(next)"); break scan }
                    if !RecordBatchDecoder.crcMatches(bytes, header: header) { bad("bad CRC"); break scan }
                    var maxSeen = Int64.min
                    var nextRecord = header.baseOffset
                    do {
                        try decoder.forEachRecord(bytes, header: header) { record in
                            maxSeen = max(maxSeen, record.timestamp)
                            if record.offset > nextRecord { report.noteGap(nextRecord...(record.offset - 1)) }
                            nextRecord = record.offset + 1
                            try onRecord(record)
                        }
                    } catch let error as BatchFormatError {
                        bad(error.reason)
                        break scan
                    }
                    if nextRecord < header.nextOffset { report.noteGap(nextRecord...(header.nextOffset - 1)) }
                    // An emptied batch (an erasure's) keeps the original maximum; it has no records to check it against.
                    if header.recordsCount > 0 && maxSeen != header.maxTimestamp {
                        bad("the largest record timestamp (\(maxSeen)) disagrees with the batch header's (\(header.maxTimestamp))")
                        break scan
                    }
                    _ = builder.add(header, position: at)
                    next = header.nextOffset
                    report.endOffset = next
                    report.batches += 1
                    report.records += Int(header.recordsCount)
                    batchNumber += 1
                }
            }
            // After damage the segment's true end is unknown: do not blame the next segment for it.
            expected = damaged ? nil : next
            if !damaged {
                // The index files must be what the writer would have written.
                if !isLast { _ = builder.seal() }
                let offsets = (try? File.openForReading(Log.offsetIndexPath(directory, segment.baseOffset)).readAll()) ?? []
                let times = (try? File.openForReading(Log.timeIndexPath(directory, segment.baseOffset)).readAll()) ?? []
                if offsets != builder.index.offsetBytes {
                    report.indexProblems.append(Finding(path: Log.offsetIndexPath(directory, segment.baseOffset), batch: nil, position: 0,
                                                        reason: "offset index (\(offsets.count / 8) entries) differs from the log (\(builder.index.offsets.count) expected)"))
                }
                if times != builder.index.timeBytes {
                    report.indexProblems.append(Finding(path: Log.timeIndexPath(directory, segment.baseOffset), batch: nil, position: 0,
                                                        reason: "time index (\(times.count / 12) entries) differs from the log (\(builder.index.times.count) expected)"))
                }
            }
        }
        return report
    }
}
