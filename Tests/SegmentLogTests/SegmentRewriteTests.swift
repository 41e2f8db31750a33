import Foundation
import Testing
@testable import SegmentLog

/// Segments rewritten without some records (an erasure): every other record at its offset, emptied
/// batches kept so that segments and the log end where they did, and every reader taking the gaps.
@Suite struct SegmentRewriteTests {
    func smallSegments() -> LogConfiguration {
        var configuration = LogConfiguration()
        configuration.segmentBytes = 4096
        configuration.maxBatchRecords = 20
        // The index interval stays the default: the verifier checks index files against it.
        return configuration
    }

    /// A log of 2,000 sample records in small segments, with one batch of records all of one key
    /// ("gone") in the middle and as the very last batch.
    func makeLog(_ dir: Scratch) throws -> (ends: Int64, dropped: Set<Int64>) {
        let log = try Log.open(directory: dir.path, configuration: smallSegments())
        var dropped = Set<Int64>()
        for start in stride(from: 0, to: 2000, by: 100) {
            try log.append(sampleRecords(start..<start + 100))
            if start == 1000 {
                var buffer = RecordBuffer()
                for i in 0..<20 { buffer.append(timestamp: 1_705_276_810_000 + Int64(i), key: Array("gone".utf8), value: Array("x".utf8)) }
                let range = try log.append(buffer)
                dropped.formUnion(range)
            }
        }
        var last = RecordBuffer()
        last.append(timestamp: 1_705_276_830_000, key: Array("gone".utf8), value: Array("y".utf8))
        dropped.formUnion(try log.append(last))
        try log.close()
        for record in try readAll(dir.path).records where record.key == Array("user-5".utf8) { dropped.insert(record.offset) }
        return (log.endOffset, dropped)
    }

    func drop(_ record: RecordView) -> Bool {
        guard let key = record.key else { return false }
        return key.elementsEqual("gone".utf8) || key.elementsEqual("user-5".utf8)
    }

    @Test func aRewrittenLogKeepsEveryOtherRecordAtItsOffsetAndItsEnd() throws {
        let dir = Scratch()
        let (end, dropped) = try makeLog(dir)
        let before = try readAll(dir.path).records
        let found = try SegmentRewrite.find(directory: dir.path, select: drop)
        #expect(Set(found.flatMap(\.offsets)) == dropped)
        let bases = try Log.segmentBaseOffsets(in: dir.path)
        var removed = 0
        for segment in found {
            removed += try SegmentRewrite.rewrite(directory: dir.path, baseOffset: segment.segment, sealed: segment.segment != bases.last,
                                                  configuration: smallSegments(), drop: drop).removed
        }
        #expect(removed == dropped.count)
        #expect(try Log.segmentBaseOffsets(in: dir.path) == bases)
        let after = try readAll(dir.path)
        #expect(after.records == before.filter { !dropped.contains($0.offset) })
        #expect(after.summary.endOffset == end, "the emptied last batch still ends the log")
        // From an offset inside a gap and from a time: through the rebuilt indexes.
        let middle = dropped.sorted()[dropped.count / 2]
        #expect(try readAll(dir.path, from: .offset(middle)).records == after.records.filter { $0.offset >= middle })
        // The verifier lists the gaps (and the index files are what the writer would write).
        let report = try LogVerifier.verify(directory: dir.path)
        #expect(report.corruption.isEmpty && report.indexProblems.isEmpty, "\(report.corruption) \(report.indexProblems)")
        #expect(report.gaps.reduce(0) { $0 + $1.count } == dropped.count)
        #expect(report.endOffset == end)
        // The writer reopens (cleanly, then after a crash: recovery scans the empty batches) and goes on at the end.
        try FileSystem.remove(dir.path + "/" + Log.cleanShutdownName)
        let reopened = try Log.open(directory: dir.path, configuration: smallSegments())
        #expect(reopened.recoveryReport.allSatisfy { !$0.contains("truncated") }, "\(reopened.recoveryReport)")
        #expect(reopened.endOffset == end)
        #expect(try reopened.append(sampleRecords(0..<3)) == end...(end + 2))
        try reopened.close()
        // Rewriting again finds nothing; a leftover .forget file (a crash before its rename) is removed.
        #expect(try SegmentRewrite.find(directory: dir.path, select: drop).isEmpty)
        let leftover = dir.path + "/" + Log.segmentName(bases[0]) + SegmentRewrite.suffix
        #expect(FileManager.default.createFile(atPath: leftover, contents: Data([1, 2, 3])))
        try SegmentRewrite.removeLeftovers(directory: dir.path)
        #expect(!FileManager.default.fileExists(atPath: leftover))
    }

    @Test func anEmptiedBatchIsKafkasEmptyBatchAndDecodesToNoRecords() throws {
        let dir = Scratch()
        let log = try Log.open(directory: dir.path)
        var buffer = RecordBuffer()
        for i in 0..<5 { buffer.append(timestamp: 1_000 + Int64(i), key: Array("gone".utf8), value: Array("v".utf8)) }
        try log.append(buffer)
        try log.close()
        try SegmentRewrite.rewrite(directory: dir.path, baseOffset: 0, sealed: false) { _ in true }
        let bytes = try File.openForReading(Log.logPath(dir.path, 0)).readAll()
        #expect(bytes.count == RecordBatchHeader.size)
        let header = bytes.withUnsafeBytes { RecordBatchHeader(bytes: $0) }
        #expect(header?.recordsCount == 0 && header?.lastOffsetDelta == 4 && header?.attributes == 0)
        #expect(header?.maxTimestamp == 1_004 && header?.baseTimestamp == 1_004)
        #expect(try readAll(dir.path).records.isEmpty)
        #expect(try readAll(dir.path).summary.endOffset == 5)
    }

    @Test func aBatchClaimingMoreRecordsThanOffsetsIsRefused() throws {
        // lastOffsetDelta below recordsCount - 1 cannot be: more records than offsets.
        var header = [UInt8](repeating: 0, count: RecordBatchHeader.size)
        header[11] = UInt8(RecordBatchHeader.size - RecordBatchHeader.logOverhead)
        header[16] = 2
        header[26] = 1   // lastOffsetDelta 1
        header[60] = 3   // recordsCount 3
        let parsed = header.withUnsafeBytes { RecordBatchHeader(bytes: $0) }
        #expect(parsed?.structuralProblem(maxBatchSize: 1 << 20) != nil)
    }
}
