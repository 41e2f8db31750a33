import Foundation
import Testing
@testable import SegmentLog

/// Records encoded once as batches (what a cluster message carries) and appended as they are: the log
/// holds exactly what an ordinary append of the same records writes, and bytes that are not such
/// batches are refused with a reason.
@Suite struct EncodedBatchesTests {
    /// `LogTests`' small segments and batches: appends roll segments and span several batches.
    func smallBatches() -> LogConfiguration { LogTests().smallSegments() }

    func bytes(ofLogIn directory: String) throws -> [String: Data] {
        var files: [String: Data] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: directory) where name.hasSuffix(".log") || name.hasSuffix(".index") || name.hasSuffix(".timeindex") {
            files[name] = try Data(contentsOf: URL(fileURLWithPath: directory + "/" + name))
        }
        return files
    }

    @Test func appendingEncodedBatchesWritesWhatAnAppendOfTheRecordsWrites() throws {
        let configuration = smallBatches()
        let plain = Scratch(), encoded = Scratch()
        let plainLog = try Log.open(directory: plain.path, configuration: configuration)
        let encodedLog = try Log.open(directory: encoded.path, configuration: configuration)
        // Requests of several batches each, across segment rolls.
        for start in stride(from: 0, to: 1500, by: 150) {
            let records = sampleRecords(start..<start + 150)
            let batches = EncodedBatches(encoding: records, configuration: configuration)
            #expect(try plainLog.append(records) == encodedLog.append(records, encoded: batches))
            #expect(plainLog.lastAppendBatches == encodedLog.lastAppendBatches)
        }
        try plainLog.close()
        try encodedLog.close()
        #expect(encodedLog.segments.count > 3)
        let expected = try bytes(ofLogIn: plain.path)
        #expect(!expected.isEmpty)
        #expect(try bytes(ofLogIn: encoded.path) == expected)
        #expect(try readAll(encoded.path).records == expectedRecords(0..<1500))
    }

    @Test func severalRequestsAppendedTogetherLandOneAfterTheOther() throws {
        let configuration = smallBatches()
        let plain = Scratch(), together = Scratch()
        let plainLog = try Log.open(directory: plain.path, configuration: configuration)
        let togetherLog = try Log.open(directory: together.path, configuration: configuration)
        let parts = stride(from: 0, to: 600, by: 150).map { sampleRecords($0..<$0 + 150) }
        for part in parts { try plainLog.append(part) }
        #expect(try togetherLog.append(encoded: parts.map { EncodedBatches(encoding: $0, configuration: configuration) }) == 0...599)
        try plainLog.close()
        try togetherLog.close()
        #expect(try bytes(ofLogIn: together.path) == bytes(ofLogIn: plain.path))
        #expect(try readAll(together.path).records == expectedRecords(0..<600))
    }

    @Test func decodedBatchesGiveBackTheRecordsAndTheSameBytes() throws {
        let records = sampleRecords(0..<130, step: 200)  // a span past 16,383 ms: several batches
        let batches = EncodedBatches(encoding: records)
        #expect(batches.recordCount == 130)
        let decoded = try batches.bytes.withUnsafeBytes { try EncodedBatches.decode($0) }
        #expect(decoded.batches.bytes == batches.bytes)
        #expect(decoded.records.count == 130)
        for index in 0..<130 {
            #expect(decoded.records.timestamp(at: index) == records.timestamp(at: index))
            #expect(decoded.records.key(at: index) == records.key(at: index))
            #expect(decoded.records.value(at: index) == records.value(at: index))
        }
    }

    @Test func noRecordsAreNoBytes() throws {
        let batches = EncodedBatches(encoding: RecordBuffer())
        #expect(batches.bytes.isEmpty && batches.recordCount == 0)
        #expect(try EncodedBatches.decode(UnsafeRawBufferPointer(start: nil, count: 0)).records.isEmpty)
    }

    @Test func bytesThatAreNotContiguousBatchesAreRefused() throws {
        let first = EncodedBatches(encoding: sampleRecords(0..<10)).bytes
        let second = EncodedBatches(encoding: sampleRecords(10..<20)).bytes  // offsets from 0 again
        var flipped = first
        flipped[flipped.count - 3] ^= 0x40
        var noMagic = first
        noMagic[16] = 1
        let cases: [(String, [UInt8])] = [
            ("a CRC that does not match", flipped),
            ("a second batch starting at offset 0 again", first + second),
            ("a batch cut short", Array(first.dropLast(5))),
            ("bytes after the last batch", first + [0, 0, 0]),
            ("another magic", noMagic),
        ]
        for (what, bytes) in cases {
            #expect(throws: EncodedBatches.DecodeError.self, "\(what)") { try bytes.withUnsafeBytes { try EncodedBatches.decode($0) } }
        }
    }

    /// A header whose fields are changed and its CRC computed again (anyone can): refused when it says
    /// what this log's encoder never writes, since the log trusts a written batch's header.
    @Test func aHeaderTheEncoderNeverWritesIsRefusedEvenWithAGoodCRC() throws {
        let original = EncodedBatches(encoding: sampleRecords(0..<10)).bytes
        func recrafted(_ change: (UnsafeMutableRawPointer) -> Void) -> [UInt8] {
            var bytes = original
            bytes.withUnsafeMutableBytes { raw in
                guard let base = raw.baseAddress else { return }
                change(base)
                let crc = CRC32C.checksum(UnsafeRawBufferPointer(start: base + RecordBatchHeader.crcStart, count: raw.count - RecordBatchHeader.crcStart))
                base.storeBigEndian(crc, at: 17)
            }
            return bytes
        }
        let cases: [(String, [UInt8])] = [
            ("a newest time in the future", recrafted { $0.storeBigEndian(Int64(4_000_000_000_000), at: 35) }),
            ("a newest time older than a record", recrafted { $0.storeBigEndian(Int64(1_705_276_800_000), at: 35) }),
            ("a transactional batch", recrafted { $0.storeBigEndian(Int16(RecordBatchHeader.lz4Codec | 0x10), at: 21) }),
            ("a producer id", recrafted { $0.storeBigEndian(Int64(7), at: 43) }),
        ]
        #expect(try original.withUnsafeBytes { try EncodedBatches.decode($0) }.records.count == 10)
        #expect(recrafted { _ in } == original)
        for (what, bytes) in cases {
            #expect(throws: EncodedBatches.DecodeError.self, "\(what)") { try bytes.withUnsafeBytes { try EncodedBatches.decode($0) } }
        }
    }

    @Test func aMessageThatDecompressesPastTheLimitIsRefused() throws {
        // 40 records of 1 MiB of zeros each: a few KiB compressed, 40 MiB decompressed per batch of 20.
        var records = RecordBuffer()
        let value = [UInt8](repeating: 0, count: 1 << 20)
        for index in 0..<40 { records.append(timestamp: 1_705_276_800_000 + Int64(index), key: nil, value: value) }
        var configuration = LogConfiguration()
        configuration.maxBatchBytes = 64 << 20
        let batches = EncodedBatches(encoding: records, configuration: configuration)
        #expect(batches.bytes.count < 1 << 20)
        #expect(throws: EncodedBatches.DecodeError.self) { try batches.bytes.withUnsafeBytes { try EncodedBatches.decode($0) } }
    }

    @Test func anAppendWhoseBatchesHoldOtherRecordsIsRefused() throws {
        let dir = Scratch()
        let log = try Log.open(directory: dir.path)
        let batches = EncodedBatches(encoding: sampleRecords(0..<10))
        #expect(throws: LogError.self) { try log.append(sampleRecords(0..<11), encoded: batches) }
        #expect(log.endOffset == 0)
        try log.close()
    }

    /// Refuses any request holding a record stamped `refused`.
    final class RefuseStamp: AppendAdmission, @unchecked Sendable {
        let refused: Int64
        init(refused: Int64) { self.refused = refused }
        func admit(_ records: RecordBuffer) -> (record: Int, reason: String)? {
            (0..<records.count).first { records.timestamp(at: $0) == refused }.map { ($0, "stamped \(refused)") }
        }
        func beginCommit() {}
        func abandonCommit() {}
    }

    @Test func aGroupIsCommittedTogetherAndEachRequestAdmittedOnItsOwn() async throws {
        let dir = Scratch()
        let parts = [sampleRecords(0..<10), sampleRecords(10..<20), sampleRecords(20..<30)]
        // The middle request holds record 15 (stamped base + 150): refused alone; its neighbours land.
        let writer = LogWriter(log: try Log.open(directory: dir.path), admission: RefuseStamp(refused: 1_705_276_800_000 + 150))
        let box = Results()
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            writer.append(group: parts.map { (records: $0, encoded: EncodedBatches(encoding: $0)) }) { index, result in
                if box.set(index, result) { done.resume() }
            }
        }
        try writer.close()
        let results = box.all
        #expect(try results[0].get().offsets == 0...9)
        #expect(throws: LogError.self) { try results[1].get() }
        #expect(try results[2].get().offsets == 10...19)
        let records = try readAll(dir.path).records
        #expect(records.map(\.offset) == Array(0..<20))
        #expect(records.map(\.timestamp) == (expectedRecords(0..<10) + expectedRecords(20..<30)).map(\.timestamp))
    }

    final class Results: @unchecked Sendable {
        private let lock = NSLock()
        private var results: [Int: Result<AppendResult, LogError>] = [:]
        func set(_ index: Int, _ result: Result<AppendResult, LogError>) -> Bool {
            lock.withLock { results[index] = result; return results.count == 3 }
        }
        var all: [Result<AppendResult, LogError>] { lock.withLock { (0..<3).compactMap { results[$0] } } }
    }
}
