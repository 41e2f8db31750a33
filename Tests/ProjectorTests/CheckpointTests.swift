import CCRC32C
import Foundation
import Presence
import SegmentLog
import Testing
import TestSupport
@testable import Projector

@Suite struct CheckpointTests {
    @Test func aLoadedCheckpointIsTheSameStateAndKeepsFolding() throws {
        let scratch = Scratch()
        let dir = scratch.path
        var random = SystemRandomNumberGenerator()
        // Enough distinct connections that the tables grew several times.
        var events = PropertyTests.randomEvents(500, using: &random)
        for i in 0..<5000 { events.append(connect("user-\(i % 700)", "c-\(i)", Int64(i), gateway: "gw-\(i % 5)")) }
        // And keys too long for their records, kept in the arena.
        events += PropertyTests.randomEvents(300, userPrefix: PropertyTests.longUserPrefix, using: &random)
        let original = fold(events)
        let (path, bytes) = try Checkpoint.write(original, to: dir)
        #expect(bytes > 0)
        let loaded = try Checkpoint.load(path)
        #expect(loaded.allStates() == original.allStates())
        #expect(loaded.onlineUsers == original.onlineUsers)
        #expect(loaded.openConnectionCount == original.openConnectionCount)
        #expect(loaded.connectionCount == original.connectionCount)
        #expect(loaded.nextOffset == original.nextOffset && loaded.maxTimestamp == original.maxTimestamp)
        // Both go on identically: new users and connections (table growth), disconnects, a gateway crash.
        var more = PropertyTests.randomEvents(300, using: &random)
        for i in 0..<5000 { more.append(disconnect("user-\(i % 700)", "c-\(i)", Int64(6000 + i), gateway: "gw-\(i % 5)")) }
        for i in 0..<3000 { more.append(connect("new-\(i)", "n-\(i)", Int64(20_000 + i))) }
        more.append(down("gw-1", 21_000))
        for event in more {
            original.apply(event)
            loaded.apply(event)
        }
        #expect(loaded.allStates() == original.allStates())
        #expect(loaded.allStates() == ReferenceFold.states(events + more))
    }

    /// Found by fuzz-checkpoint: a counter or table size past Int.max in a checkpoint whose CRC matches
    /// (a crafted file) trapped converting it (`Int(UInt64)`); so would a table size whose bytes overflow,
    /// and a capacity no memory can hold failed its mapping. Each is now an error, and the log is replayed.
    @Test func aCraftedCheckpointWithHugeCountsIsRefusedNotACrash() throws {
        let scratch = Scratch()
        let (path, _) = try Checkpoint.write(fold([connect("bob", "c", 1), connect("amy", "a", 2)]), to: scratch.path)
        let original = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        // The counters after magic, layout, offset and time, then the first table's count, capacity, bytes.
        for field in [32, 40, 56, 64, 72, 80, 88, 96] {
            for value: UInt64 in [.max, 1 << 63, 1 << 62, 1 << 40] {
                var bytes = original
                withUnsafeBytes(of: value.littleEndian) { bytes.replaceSubrange(field..<(field + 8), with: $0) }
                let crc = CRC32C.checksum(Array(bytes.dropLast(4)))
                withUnsafeBytes(of: crc.littleEndian) { bytes.replaceSubrange((bytes.count - 4)..., with: $0) }
                try Data(bytes).write(to: URL(fileURLWithPath: path))
                do {
                    _ = try Checkpoint.load(path)
                    #expect(value <= UInt64(Int.max) && field < 80, "field at \(field) = \(value) was loaded")
                } catch {
                    #expect(error is LogError)
                }
            }
        }
    }

    /// Found by fuzz-checkpoint (a long run, 2026-12-04): a checkpoint whose next offset was Int64.max
    /// trapped on an overflow computing where the next sweep is checked; an offset no log can reach is
    /// a corrupt checkpoint (the node replays the log instead). The input is in the seed corpus.
    @Test func aCheckpointWhoseNextOffsetNoLogReachesIsRefused() throws {
        let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("fuzz/checkpoint/corpus").path
        let found = Array(try Data(contentsOf: URL(fileURLWithPath: corpus + "/crash-next-offset-int64-max")))
        let scratch = Scratch()
        let (path, _) = try Checkpoint.write(fold([connect("bob", "c", 1), connect("amy", "a", 2)]), to: scratch.path)
        let original = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        var inputs: [[UInt8]] = []
        for value: Int64 in [.max, .max - 1, RecordBatchHeader.maxOffset + 1, -1, .min] {
            var bytes = original
            withUnsafeBytes(of: value.littleEndian) { bytes.replaceSubrange(16..<24, with: $0) }
            inputs.append(bytes)
        }
        for (index, input) in ([found] + inputs).enumerated() {
            var bytes = input
            let crc = CRC32C.checksum(Array(bytes.dropLast(4)))
            withUnsafeBytes(of: crc.littleEndian) { bytes.replaceSubrange((bytes.count - 4)..., with: $0) }
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            #expect(throws: LogError.self, "input \(index)") { try Checkpoint.load(path) }
        }
        // The largest offset still loads.
        var bytes = original
        withUnsafeBytes(of: RecordBatchHeader.maxOffset.littleEndian) { bytes.replaceSubrange(16..<24, with: $0) }
        let crc = CRC32C.checksum(Array(bytes.dropLast(4)))
        withUnsafeBytes(of: crc.littleEndian) { bytes.replaceSubrange((bytes.count - 4)..., with: $0) }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        #expect(try Checkpoint.load(path).nextOffset == RecordBatchHeader.maxOffset)
    }

    /// The fuzzer's checkpoint seeds are checkpoints this build loads: after a layout change they would
    /// stop at the fingerprint and fuzz-checkpoint would never reach a table (as happened once). Run
    /// fuzz/checkpoint/make-seeds.sh to write them again.
    @Test func theFuzzSeedsAreCheckpointsOfThisLayout() throws {
        let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("fuzz/checkpoint/corpus").path
        let seeds = try FileManager.default.contentsOfDirectory(atPath: corpus).filter { $0.hasSuffix(".ckpt") }
        #expect(seeds.count >= 2)
        for seed in seeds {
            #expect(throws: Never.self, "\(seed): run fuzz/checkpoint/make-seeds.sh") { try Checkpoint.load(corpus + "/" + seed) }
        }
    }

    /// Found by fuzz-checkpoint: a checkpoint whose CRC matches but whose user slot names a record past
    /// the table trapped at the first lookup; it is refused as corrupt.
    @Test func aSlotThatPointsOutsideItsTableIsRefused() throws {
        let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("fuzz/checkpoint/corpus").path
        var bytes = Array(try Data(contentsOf: URL(fileURLWithPath: corpus + "/crash-user-slot-outside-the-table")))
        // As the fuzz target does: the CRC made to match, so that the tables are what is checked.
        let crc = bytes.withUnsafeBytes { presencelog_crc32c(0, $0.baseAddress, bytes.count - 4) }
        for i in 0..<4 { bytes[bytes.count - 4 + i] = UInt8(truncatingIfNeeded: crc >> (8 * i)) }
        let scratch = Scratch()
        let path = scratch.file("slot.ckpt")
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        #expect(throws: LogError.self) { try Checkpoint.load(path) }
    }

    @Test func damagedCheckpointsAreRefusedAndAnOlderOneIsUsed() throws {
        let scratch = Scratch()
        let dir = scratch.path
        let older = fold([connect("bob", "c", 1)])
        older.apply(connect("amy", "a", 2), offset: 1)
        try Checkpoint.write(older, to: dir)
        let newer = fold([connect("bob", "c", 1)])
        newer.apply(disconnect("bob", "c", 5), offset: 9)
        let (path, _) = try Checkpoint.write(newer, to: dir)
        // A flipped byte anywhere fails the CRC.
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        for position in [0, 20, bytes.count / 2, bytes.count - 1] {
            var damaged = bytes
            damaged[position] ^= 0x10
            try damaged.write(to: URL(fileURLWithPath: path))
            #expect(throws: (any Error).self) { try Checkpoint.load(path) }
            let (fallback, report) = try #require(Checkpoint.loadNewest(from: dir, logEndOffset: 100))
            #expect(report.used?.hasSuffix("presence-00000000000000000002.ckpt") == true)
            #expect(report.skipped.count == 1)
            #expect(fallback.allStates() == older.allStates())
        }
        // Cut short.
        bytes.removeLast(100)
        try bytes.write(to: URL(fileURLWithPath: path))
        #expect(throws: (any Error).self) { try Checkpoint.load(path) }
    }

    @Test func checkpointsPastTheLogsEndOrAfterTheAskedTimeAreSkipped() throws {
        let scratch = Scratch()
        let dir = scratch.path
        let projection = fold([connect("bob", "c", 1000)])
        projection.apply(disconnect("bob", "c", 2000), offset: 41)
        try Checkpoint.write(projection, to: dir)
        let (empty, report) = try #require(Checkpoint.loadNewest(from: dir, logEndOffset: 10))
        #expect(report.used == nil)
        #expect(report.skipped.first?.contains("past the log's end") == true)
        #expect(empty.userCount == 0)
        let (_, timeReport) = try #require(Checkpoint.loadNewest(from: dir, logEndOffset: 100, notAfter: 1500))
        #expect(timeReport.used == nil)
        #expect(Checkpoint.loadNewest(from: dir + "/missing", logEndOffset: 100) == nil)
    }

    @Test func onlyTheNewestTwoAreKept() throws {
        let scratch = Scratch()
        let dir = scratch.path
        let projection = PresenceProjection()
        for i in 0..<5 {
            projection.apply(connect("u\(i)", "c", Int64(i)), offset: Int64(i))
            try Checkpoint.write(projection, to: dir)
        }
        let names = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
        #expect(names == ["presence-00000000000000000004.ckpt", "presence-00000000000000000005.ckpt"])
    }

    /// The layout fingerprint is computed from what lies in a checkpoint as raw memory: any field moved
    /// or resized, or a hash changed, gives another fingerprint, and a checkpoint written under it is
    /// skipped for a replay (nobody has to remember to bump a number).
    @Test func aCheckpointOfAnotherRecordLayoutIsSkipped() throws {
        let description = Checkpoint.layoutDescription
        #expect(Checkpoint.fingerprint(of: description) == Checkpoint.layout)
        for position in description.indices {
            var changed = description
            changed[position] &+= 8  // as if one field had moved by a word
            #expect(Checkpoint.fingerprint(of: changed) != Checkpoint.layout, "changing item \(position) left the fingerprint as it was")
        }
        // A checkpoint whose header carries the fingerprint of a build where one field moved.
        let scratch = Scratch()
        let dir = scratch.path
        let projection = fold([connect("bob", "c", 100), disconnect("bob", "c", 200), connect("bob", "c", 300)])
        let (path, _) = try Checkpoint.write(projection, to: dir)
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        var moved = description
        moved[moved.count / 2] &+= 8
        withUnsafeBytes(of: Checkpoint.fingerprint(of: moved).littleEndian) { bytes.replaceSubrange(8..<16, with: $0) }
        let crc = bytes.withUnsafeBytes { presencelog_crc32c(0, $0.baseAddress, bytes.count - 4) }
        withUnsafeBytes(of: crc.littleEndian) { bytes.replaceSubrange((bytes.count - 4)..., with: $0) }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        #expect(throws: (any Error).self) { try Checkpoint.load(path) }
        let newest = Checkpoint.loadNewest(from: dir, logEndOffset: 10)
        #expect(newest?.1.used == nil && newest?.1.skipped.first?.contains("another record layout") == true, "\(String(describing: newest?.1))")
    }
}
