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

    /// Small segments: an append of a few dozen records rolls to a new segment, or several.
    func smallSegments() -> LogConfiguration {
        var configuration = manyBatches()
        configuration.segmentBytes = 4096
        return configuration
    }

    func files(in directory: String) throws -> [String: Int64] {
        var sizes: [String: Int64] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: directory) where name.hasSuffix("log") || name.hasSuffix("index") {
            sizes[name] = FileSystem.size(directory + "/" + name)
        }
        return sizes
    }

    /// Found while reviewing cluster mode's grouped appends: an append that rolled to a new segment and
    /// then ran out of space left the log refusing every write until a restart, and so did a roll
    /// whose own small writes (the recovery point, the seal's index entry) found the disk full. Now the
    /// append is taken back whole, rolls and all, and the log takes writes again once there is space.
    @Test(arguments: ["new segment", "recovery point", "third segment"])
    func aFullDiskAcrossASegmentRollIsTakenBackWhole(_ failing: String) throws {
        let dir = Scratch()
        let log = try Log.open(directory: dir.path, configuration: smallSegments())
        try log.append(sampleRecords(0..<40))
        try log.sync()
        #expect(log.segments.count == 1)
        let before = try files(in: dir.path)
        let segmentsBefore = log.segments.map { "\($0.baseOffset):\($0.size)" }
        let root = dir.path, firstSegment = Log.segmentName(0)
        let writes = Atomic<Int>(0)
        let segmentsSeen = Mutex<Set<String>>([])
        let refused = Atomic<Bool>(false), syncsAfter = Atomic<Int>(0)
        FileFaults.arm { operation, path in
            guard path.hasPrefix(root) else { return nil }
            if operation == .sync {
                if refused.load(ordering: .relaxed), path.hasSuffix(firstSegment + ".log") { syncsAfter.add(1, ordering: .relaxed) }
                return nil
            }
            let errno: Int32?
            switch failing {
            case "new segment":  // the second batch written into a segment the append rolled to
                errno = path.hasSuffix(".log") && !path.contains(firstSegment) && writes.add(1, ordering: .relaxed).newValue == 2 ? ENOSPC : nil
            case "recovery point": errno = path.contains("recovery-point") ? ENOSPC : nil
            default:  // the first batch of the third segment: two rolls to take back
                guard path.hasSuffix(".log") else { return nil }
                errno = segmentsSeen.withLock { $0.insert(path); return $0.count } == 3 ? ENOSPC : nil
            }
            if errno != nil { refused.store(true, ordering: .relaxed) }
            return errno
        }
        defer { FileFaults.disarm() }
        // 700 records: several segments' worth, so the append rolls at least twice.
        #expect {
            try log.append(sampleRecords(40..<740))
        } throws: { error in
            (error as? LogError)?.code == .noSpace && "\(error)".contains("nothing of this append was written")
        }
        #expect(log.endOffset == 40)
        #expect(log.segments.map { "\($0.baseOffset):\($0.size)" } == segmentsBefore)
        #expect(try files(in: dir.path) == before, "the segments the append rolled to are gone, the first is cut back")
        // The cut is fsynced: the roll had made the append's first batches durable, and after a power
        // loss they would be whole valid batches of a refused append (found by a review).
        #expect(syncsAfter.load(ordering: .relaxed) >= 1)
        // A crash right now: the files as they are recover to the 40 records, the recovery point left ahead or not.
        let crashed = Scratch()
        for name in try FileManager.default.contentsOfDirectory(atPath: dir.path) {
            try FileManager.default.copyItem(atPath: dir.path + "/" + name, toPath: crashed.path + "/" + name)
        }
        try Log.open(directory: crashed.path, configuration: smallSegments()).close()
        #expect(try readAll(crashed.path).records == expectedRecords(0..<40))

        // Space again: the log takes the same records where the refused append would have put them, and
        // a sync after the cut makes them durable (not taken for durable by the roll before it).
        FileFaults.disarm()
        let syncs = Atomic<Int>(0)
        FileFaults.arm { operation, path in
            if operation == .sync && path.hasPrefix(root) && path.hasSuffix(".log") { syncs.add(1, ordering: .relaxed) }
            return nil
        }
        #expect(try log.append(sampleRecords(40..<45)) == 40...44)
        let syncsBefore = syncs.load(ordering: .relaxed)
        try log.sync()
        #expect(syncs.load(ordering: .relaxed) == syncsBefore + 1, "the five records are synced")
        #expect(log.durableEndOffset == 45)
        #expect(try log.append(sampleRecords(45..<740)) == 45...739)
        try log.sync()
        #expect(log.segments.count >= 3)
        try log.close()
        var lines: [String] = []
        let reopened = try Log.open(directory: dir.path, configuration: smallSegments()) { lines.append($0) }
        try reopened.close()
        #expect(lines.isEmpty, "a clean log, nothing to recover: \(lines)")
        #expect(try readAll(dir.path).records == expectedRecords(0..<740))
        // Not closed cleanly after such a cut, the log recovers to what was written.
        try FileSystem.remove(dir.path + "/" + Log.cleanShutdownName)
        try Log.open(directory: dir.path, configuration: smallSegments()).close()
        #expect(try readAll(dir.path).records == expectedRecords(0..<740))
    }

    @Test func aFailedFsyncWhileRollingLeavesTheLogRefusingWrites() throws {
        let dir = Scratch()
        let log = try Log.open(directory: dir.path, configuration: smallSegments())
        try log.append(sampleRecords(0..<40))
        let root = dir.path
        FileFaults.arm { operation, path in operation == .sync && path.hasPrefix(root) ? ENOSPC : nil }
        defer { FileFaults.disarm() }
        #expect(throws: LogError.self) { try log.append(sampleRecords(40..<340)) }
        FileFaults.disarm()
        #expect {
            try log.append(sampleRecords(40..<45))
        } throws: { error in
            (error as? LogError)?.code == .closed && "\(error)".contains("restart to recover")
        }
    }
}
