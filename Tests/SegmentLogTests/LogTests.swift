import Foundation
import Testing
@testable import SegmentLog

@Suite struct LogTests {
    func smallSegments() -> LogConfiguration {
        var configuration = LogConfiguration()
        configuration.segmentBytes = 4096
        configuration.maxBatchRecords = 20
        configuration.indexIntervalBytes = 256
        return configuration
    }

    @Test func appendedRecordsReadBackAfterReopen() throws {
        let dir = Scratch()
        let log = try Log.open(directory: dir.path)
        let range = log.endOffset...log.endOffset
        #expect(range == 0...0)
        #expect(try log.append(sampleRecords(0..<1000)) == 0...999)
        try log.sync()
        #expect(log.durableEndOffset == 1000)
        try log.close()
        let reopened = try Log.open(directory: dir.path)
        #expect(reopened.openedCleanly)
        #expect(reopened.endOffset == 1000)
        #expect(try reopened.append(sampleRecords(1000..<1500)) == 1000...1499)
        try reopened.close()
        let (records, summary) = try readAll(dir.path)
        #expect(records == expectedRecords(0..<1500))
        #expect(summary.tornTail == nil)
    }

    @Test func segmentsRollBySizeAndAreNamedByBaseOffset() throws {
        let dir = Scratch()
        let log = try Log.open(directory: dir.path, configuration: smallSegments())
        for start in stride(from: 0, to: 2000, by: 100) { try log.append(sampleRecords(start..<start + 100)) }
        try log.close()
        let segments = log.segments
        #expect(segments.count > 5)
        for segment in segments {
            #expect(segment.size <= 4096)
            #expect(FileManager.default.fileExists(atPath: dir.path + "/" + Log.segmentName(segment.baseOffset) + ".log"))
        }
        #expect(Log.segmentName(segments[1].baseOffset).count == 20)
        #expect(try readAll(dir.path).records == expectedRecords(0..<2000))
    }

    @Test func segmentsRollByEventTimeAge() throws {
        let dir = Scratch()
        var configuration = LogConfiguration()
        configuration.segmentMilliseconds = 60_000
        let log = try Log.open(directory: dir.path, configuration: configuration)
        // One record a second for five minutes of event time: a new segment at least every minute.
        for i in 0..<300 { try log.append(sampleRecords(i..<i + 1, step: 1000)) }
        try log.close()
        #expect(log.segments.count >= 5)
        #expect(try readAll(dir.path).records == expectedRecords(0..<300, step: 1000))
    }

    @Test func readsFromAnOffsetOrATimestampThroughTheIndexes() throws {
        let dir = Scratch()
        let log = try Log.open(directory: dir.path, configuration: smallSegments())
        for start in stride(from: 0, to: 3000, by: 50) { try log.append(sampleRecords(start..<start + 50)) }
        try log.close()
        for offset in [0, 1, 777, 1999, 2999] {
            let records = try readAll(dir.path, from: .offset(Int64(offset))).records
            #expect(records == expectedRecords(offset..<3000))
        }
        #expect(try readAll(dir.path, from: .offset(3000)).records.isEmpty)
        let base: Int64 = 1_705_276_800_000
        for i in [0, 5, 1234, 2999] {
            let records = try readAll(dir.path, from: .timestamp(base + Int64(i) * 10)).records
            #expect(records == expectedRecords(i..<3000))
        }
    }

    @Test func timestampReadsFindOutOfOrderRecords() throws {
        let dir = Scratch()
        let log = try Log.open(directory: dir.path, configuration: smallSegments())
        // Times go up, but every 10th record arrives a minute late.
        var buffer = RecordBuffer()
        for i in 0..<2000 {
            let ts: Int64 = 1_000_000 + Int64(i) * 100 - (i % 10 == 0 ? 60_000 : 0)
            buffer.append(timestamp: ts, key: Array("k".utf8), value: Array("\(i)".utf8))
        }
        try log.append(buffer)
        try log.close()
        let from: Int64 = 1_000_000 + 1500 * 100
        let expected = (0..<2000).filter { i in 1_000_000 + Int64(i) * 100 - (i % 10 == 0 ? 60_000 : 0) >= from }
        let got = try readAll(dir.path, from: .timestamp(from)).records.map { Int(String(decoding: $0.value!, as: UTF8.self))! }
        #expect(got == expected)
    }

    @Test func tornTailIsTruncatedAndLaterAppendsSucceed() throws {
        let dir = Scratch()
        do {
            let log = try Log.open(directory: dir.path)
            try log.append(sampleRecords(0..<500))
            try log.sync()
            // The process dies here: no close, no clean-shutdown marker.
        }
        let segment = dir.path + "/" + Log.segmentName(0) + ".log"
        let goodSize = fileSize(segment)
        // Half of a batch made it to disk.
        let encoder = RecordBatchEncoder(compressionLevel: 0)
        encoder.encode(sampleRecords(500..<600), range: 0..<100, baseOffset: 500)
        try appendBytes(segment, Array(encoder.output.bytes.prefix(encoder.output.count / 2)))
        // A reader, before recovery, stops before the torn bytes and says so.
        let (before, summaryBefore) = try readAll(dir.path)
        #expect(before == expectedRecords(0..<500))
        #expect(summaryBefore.tornTail?.position == Int64(goodSize))

        var lines: [String] = []
        let log = try Log.open(directory: dir.path) { lines.append($0) }
        #expect(!log.openedCleanly)
        #expect(log.endOffset == 500)
        #expect(fileSize(segment) == goodSize)
        #expect(lines.count == 1)
        #expect(lines.first?.contains("at byte \(goodSize)") == true)
        #expect(lines.first?.contains("truncated \(encoder.output.count / 2) bytes") == true)
        try log.append(sampleRecords(500..<800))
        try log.close()
        let (after, summary) = try readAll(dir.path)
        #expect(after == expectedRecords(0..<800))
        #expect(summary.tornTail == nil)
    }

    @Test func fullLengthBatchWithBadCRCAtTheTailIsCut() throws {
        let dir = Scratch()
        do {
            let log = try Log.open(directory: dir.path)
            try log.append(sampleRecords(0..<100))
            try log.append(sampleRecords(100..<200))
            try log.sync()
        }
        let segment = dir.path + "/" + Log.segmentName(0) + ".log"
        try flipByte(segment, at: fileSize(segment) - 3)
        var lines: [String] = []
        let log = try Log.open(directory: dir.path) { lines.append($0) }
        #expect(log.endOffset == 100)
        #expect(lines.first?.contains("bad CRC") == true)
        try log.close()
        #expect(try readAll(dir.path).records == expectedRecords(0..<100))
    }

    @Test func corruptBatchInASealedSegmentIsAnErrorNamingFileAndPosition() throws {
        let dir = Scratch()
        let log = try Log.open(directory: dir.path, configuration: smallSegments())
        for start in stride(from: 0, to: 1000, by: 20) { try log.append(sampleRecords(start..<start + 20)) }
        try log.close()
        let first = dir.path + "/" + Log.segmentName(0) + ".log"
        // Find the second batch's position, and flip a byte inside it.
        let bytes = try Array(Data(contentsOf: URL(fileURLWithPath: first)))
        let firstLength = bytes.withUnsafeBytes { RecordBatchHeader(bytes: $0)!.totalSize }
        try flipByte(first, at: firstLength + 70)
        let error = #expect(throws: LogError.self) { _ = try readAll(dir.path) }
        #expect(error?.code == .corrupt)
        #expect(error?.message.contains(first) == true)
        #expect(error?.message.contains("at byte \(firstLength)") == true)
    }

    @Test func missingOrDamagedIndexesAreRebuilt() throws {
        let dir = Scratch()
        let log = try Log.open(directory: dir.path, configuration: smallSegments())
        for start in stride(from: 0, to: 1000, by: 20) { try log.append(sampleRecords(start..<start + 20)) }
        try log.close()
        let index = dir.path + "/" + Log.segmentName(0) + ".index"
        let timeIndex = dir.path + "/" + Log.segmentName(0) + ".timeindex"
        let original = try Data(contentsOf: URL(fileURLWithPath: index))
        let originalTimes = try Data(contentsOf: URL(fileURLWithPath: timeIndex))
        #expect(!original.isEmpty && !originalTimes.isEmpty)
        try FileManager.default.removeItem(atPath: index)
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: timeIndex))
        // Readers cope without them...
        #expect(try readAll(dir.path, from: .offset(500)).records == expectedRecords(500..<1000))
        // ...and the writer rebuilds them, byte for byte.
        try Log.open(directory: dir.path, configuration: smallSegments()).close()
        #expect(try Data(contentsOf: URL(fileURLWithPath: index)) == original)
        #expect(try Data(contentsOf: URL(fileURLWithPath: timeIndex)) == originalTimes)
    }

    @Test func secondWriterGetsAClearErrorNamingTheHolder() throws {
        let dir = Scratch()
        let first = try DataDirectory(path: dir.path)
        let error = #expect(throws: LogError.self) { _ = try DataDirectory(path: dir.path) }
        #expect(error?.code == .locked)
        #expect(error?.message.contains("pid \(ProcessInfo.processInfo.processIdentifier)") == true)
        withExtendedLifetime(first) {}
    }

    @Test func hostileLogNamesAreRefused() throws {
        let dir = Scratch()
        let data = try DataDirectory(path: dir.path)
        for name in ["../etc", "a/b", "", ".", String(repeating: "x", count: 65), "Presence"] {
            #expect(throws: LogError.self) { try data.logPath(name) }
        }
        #expect(try data.logPath("presence") == dir.path + "/presence")
    }
}

@Suite struct LogWriterTests {
    @Test func concurrentAppendsShareCommitsAndGetDistinctOffsets() async throws {
        let dir = Scratch()
        let writer = LogWriter(log: try Log.open(directory: dir.path))
        let results = try await withThrowingTaskGroup(of: AppendResult.self) { group in
            for i in 0..<400 {
                group.addTask { try await writer.append(sampleRecords(i..<i + 1)) }
            }
            var all: [AppendResult] = []
            for try await result in group { all.append(result) }
            return all
        }
        try writer.close()
        let offsets = results.map(\.offsets.lowerBound).sorted()
        #expect(offsets == (0..<400).map(Int64.init))
        for result in results { #expect(result.durableEndOffset > result.offsets.upperBound) }
        let (records, summary) = try readAll(dir.path)
        #expect(records.count == 400)
        #expect(summary.batches < 400, "400 concurrent appends took \(summary.batches) batches: no group commit")
        // The record at each offset is the one its append sent.
        for result in results {
            let record = records[Int(result.offsets.lowerBound)]
            #expect(record.offset == result.offsets.lowerBound)
        }
    }

    @Test func durableOffsetLagsUnderFsyncNever() async throws {
        let dir = Scratch()
        var configuration = LogConfiguration()
        configuration.durability = .never
        let writer = LogWriter(log: try Log.open(directory: dir.path, configuration: configuration))
        let result = try await writer.append(sampleRecords(0..<10))
        #expect(result.offsets == 0...9)
        #expect(writer.endOffset == 10)
        #expect(writer.durableEndOffset == 0)
        try writer.close()
        #expect(try readAll(dir.path).records == expectedRecords(0..<10))
    }

    @Test func intervalPolicyMakesAppendsDurableWithinTheInterval() async throws {
        let dir = Scratch()
        var configuration = LogConfiguration()
        configuration.durability = .interval(milliseconds: 50)
        let writer = LogWriter(log: try Log.open(directory: dir.path, configuration: configuration))
        _ = try await writer.append(sampleRecords(0..<10))
        _ = try await writer.append(sampleRecords(10..<20))
        #expect(writer.endOffset == 20)
        let deadline = ContinuousClock.now + .seconds(5)
        while writer.durableEndOffset < 20 && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        #expect(writer.durableEndOffset == 20)
        try writer.close()
    }

    /// `pause()` (an online erasure): what was queued before is committed first, what comes while
    /// paused waits and is committed after `resume()`, and the holder may seal the active segment.
    @Test func aPauseHandsTheLogOverBetweenCommits() async throws {
        let dir = Scratch()
        let writer = LogWriter(log: try Log.open(directory: dir.path))
        _ = try await writer.append(sampleRecords(0..<5))
        let paused = try await writer.pause()
        #expect(paused.log.endOffset == 5)
        let waiting = Task { try await writer.append(sampleRecords(5..<8)) }
        try await Task.sleep(for: .milliseconds(100))
        #expect(paused.log.endOffset == 5, "nothing is committed while the log is held")
        try paused.log.sealActiveSegment()
        try paused.log.sealActiveSegment()  // an empty active segment is not sealed again
        #expect(try Log.segmentBaseOffsets(in: dir.path) == [0, 5])
        paused.resume()
        paused.resume()  // once is enough; twice does nothing
        #expect(try await waiting.value.offsets == 5...7)
        // A second pause, with an append beside it: the writer goes on.
        async let later = writer.append(sampleRecords(8..<9))
        let second = try await writer.pause()
        second.resume()
        #expect(try await later.offsets == 8...8)
        try writer.close()
        await #expect(throws: LogError.self) { _ = try await writer.pause() }
        #expect(try readAll(dir.path).records == expectedRecords(0..<9))
    }

    @Test func appendsAfterCloseFailWithAClearError() async throws {
        let dir = Scratch()
        let writer = LogWriter(log: try Log.open(directory: dir.path))
        try writer.close()
        await #expect(throws: LogError.self) { try await writer.append(sampleRecords(0..<1)) }
    }

    @Test func durabilityPoliciesParse() {
        #expect(Durability(parsing: "always") == .always)
        #expect(Durability(parsing: "never") == .never)
        #expect(Durability(parsing: "interval:50") == .interval(milliseconds: 50))
        #expect(Durability(parsing: "interval:0") == nil)
        #expect(Durability(parsing: "sometimes") == nil)
    }
}

/// Found by fuzz-record-batch (out of memory): a header that claims a batch longer than the rest of the
/// file made the scanner make room for all of it before finding the file too short.
struct ScannerClaimTests {
    @Test func aBatchLongerThanTheFileIsATornTailFoundWithoutReadingIt() throws {
        var header = [UInt8](repeating: 0, count: RecordBatchHeader.size)
        let claimed: Int32 = 50 << 20  // the batch length field: 50 MiB claimed
        for i in 0..<4 { header[8 + i] = UInt8(truncatingIfNeeded: claimed >> (8 * (3 - i))) }
        header[16] = 2  // magic
        let scratch = Scratch()
        let path = scratch.file("claim.log")
        try Data(header + [UInt8](repeating: 7, count: 100)).write(to: URL(fileURLWithPath: path))
        let scanner = try SegmentScanner(file: try File.openForReading(path), from: 0, maxBatchSize: 64 << 20, chunkSize: 4096)
        guard case .incomplete(let position, let bytes) = try scanner.next() else {
            Issue.record("a claimed 50 MiB batch in a 161-byte file is a partial batch")
            return
        }
        #expect(position == 0 && bytes == Int64(header.count + 100))
        #expect(scanner.bufferCapacity <= 4096, "the buffer grew to \(scanner.bufferCapacity) bytes for a claim")
    }

    /// A segment smaller than a chunk is read into a buffer of its size, not 4 MiB, and its batches
    /// come out whole; a larger one still gets the chunk.
    @Test func aSmallSegmentIsReadIntoABufferOfItsSize() throws {
        let scratch = Scratch()
        let directory = scratch.path
        let log = try Log.open(directory: directory)
        for i in 0..<3 { _ = try log.append(sampleRecords(i * 100..<(i + 1) * 100)) }
        try log.close()
        let path = Log.logPath(directory, 0)
        let size = fileSize(path)
        let scanner = try SegmentScanner(file: try File.openForReading(path), from: 0, maxBatchSize: 64 << 20)
        #expect(scanner.bufferCapacity == Int(size), "a \(size)-byte segment got a \(scanner.bufferCapacity)-byte buffer")
        var batches = 0
        while case .batch = try scanner.next() { batches += 1 }
        #expect(batches == 3)
        let fromTheMiddle = try SegmentScanner(file: try File.openForReading(path), from: 100, maxBatchSize: 64 << 20)
        #expect(fromTheMiddle.bufferCapacity == Int(size) - 100)
        let chunked = try SegmentScanner(file: try File.openForReading(path), from: 0, maxBatchSize: 64 << 20, chunkSize: 256)
        #expect(chunked.bufferCapacity == 256)
    }
}
