import Foundation
import Synchronization
import Testing
@testable import SegmentLog

/// A full disk and a failed fsync, injected through `FileFaults` for this test's files only (the rule
/// matches the scratch folder's path, so the other tests running beside these are untouched).
@Suite(.serialized) struct FileFaultTests {
    /// Several batches an append, an index entry every few: a failure can hit the middle of an append.
    func manyBatches() -> LogConfiguration {
        var configuration = LogConfiguration()
        configuration.maxBatchRecords = 10
        configuration.indexIntervalBytes = 128
        return configuration
    }

    @Test func aFullDiskRefusesTheAppendWholeAndTheLogTakesWritesAgainOnceThereIsSpace() throws {
        let dir = Scratch()
        let log = try Log.open(directory: dir.path, configuration: manyBatches())
        try log.append(sampleRecords(0..<50))
        try log.sync()
        let sizeBefore = try #require(FileSystem.size(dir.path + "/" + Log.segmentName(0) + ".log"))
        // The third write into the segment fails for want of space: two batches of the append are on disk by then.
        let writes = Atomic<Int>(0)
        let root = dir.path
        FileFaults.arm { operation, path in
            guard operation == .write, path.hasPrefix(root), path.hasSuffix(".log") else { return nil }
            return writes.add(1, ordering: .relaxed).newValue == 3 ? ENOSPC : nil
        }
        defer { FileFaults.disarm() }
        #expect {
            try log.append(sampleRecords(50..<100))
        } throws: { error in
            (error as? LogError)?.code == .noSpace && "\(error)".contains("nothing of this append was written")
        }
        #expect(log.endOffset == 50)
        #expect(FileSystem.size(dir.path + "/" + Log.segmentName(0) + ".log") == sizeBefore, "the two batches written are cut back")
        // Space again: the same records go where the refused append would have put them.
        FileFaults.disarm()
        #expect(try log.append(sampleRecords(50..<100)) == 50...99)
        try log.sync()
        try log.close()
        var lines: [String] = []
        let reopened = try Log.open(directory: dir.path, configuration: manyBatches()) { lines.append($0) }
        try reopened.close()
        #expect(try readAll(dir.path).records == expectedRecords(0..<100))
        #expect(lines.isEmpty, "a clean log, nothing to recover: \(lines)")
    }

    @Test func aFullDiskWhileWritingAnIndexEntryIsCutBackToo() throws {
        let dir = Scratch()
        let log = try Log.open(directory: dir.path, configuration: manyBatches())
        try log.append(sampleRecords(0..<30))
        let root = dir.path
        FileFaults.arm { operation, path in
            operation == .write && path.hasPrefix(root) && path.hasSuffix(".index") ? ENOSPC : nil
        }
        defer { FileFaults.disarm() }
        #expect(throws: LogError.self) { try log.append(sampleRecords(30..<90)) }
        #expect(log.endOffset == 30)
        FileFaults.disarm()
        #expect(try log.append(sampleRecords(30..<90)) == 30...89)
        try log.close()
        #expect(try readAll(dir.path).records == expectedRecords(0..<90))
        // The indexes written afterwards are the ones a rebuild makes: the log opens without repairing them.
        var lines: [String] = []
        try Log.open(directory: dir.path, configuration: manyBatches()) { lines.append($0) }.close()
        #expect(lines.isEmpty, "\(lines)")
    }

    @Test func aFailedFsyncIsNeverFollowedByAnAcknowledgement() async throws {
        let dir = Scratch()
        let writer = LogWriter(log: try Log.open(directory: dir.path))
        let first = try await writer.append(sampleRecords(0..<10))
        #expect(first.offsets == 0...9)
        let root = dir.path
        FileFaults.arm { operation, path in operation == .sync && path.hasPrefix(root) ? EIO : nil }
        defer { FileFaults.disarm() }
        await #expect(throws: LogError.self) { try await writer.append(sampleRecords(10..<20)) }
        FileFaults.disarm()
        // fsync failed once: whatever the page cache now holds is not known to be on disk, so the writer
        // acknowledges nothing more (PostgreSQL's "fsyncgate"); reopening the log is the way back.
        do {
            _ = try await writer.append(sampleRecords(20..<30))
            Issue.record("an append was acknowledged after a failed fsync")
        } catch {
            #expect(error.code == .closed && error.message.contains("restart to recover"), "\(error)")
        }
        try? writer.close()
        let reopened = try Log.open(directory: dir.path)
        try reopened.close()
        let records = try readAll(dir.path).records
        #expect(Array(records.prefix(10)) == expectedRecords(0..<10), "the acknowledged records are kept")
        #expect(!records.contains { $0.offset >= 20 }, "the append refused after the failure was never written")
    }
}
