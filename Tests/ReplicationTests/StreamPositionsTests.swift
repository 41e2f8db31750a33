import Foundation
import SegmentLog
import Testing
@testable import Cluster

/// Where a local log stands in its stream, found again at start from the log's end.
struct StreamPositionsTests {
    static func scratchFile() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("positions-\(UInt64.random(in: 0...UInt64.max))").path
    }

    @Test func theLogsEndFindsTheSequenceItStandsAfter() throws {
        let path = Self.scratchFile()
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(try StreamPositions.sequence(at: 0, path: path) == 0, "no file, an empty log: from the start")
        #expect(try StreamPositions.sequence(at: 5, path: path) == nil, "no file, a log with records: rebuilt")
        let positions = try StreamPositions(path: path)
        try positions.note(sequence: 1, endOffset: 3)
        try positions.note(sequence: 2, endOffset: 3)  // a message whose records were all repeats
        try positions.note(sequence: 3, endOffset: 10)
        #expect(try StreamPositions.sequence(at: 10, path: path) == 3)
        #expect(try StreamPositions.sequence(at: 3, path: path) == 2, "the newest entry of that end")
        #expect(try StreamPositions.sequence(at: 7, path: path) == nil, "an end no message left: rebuilt")
        #expect(try StreamPositions.sequence(at: 0, path: path) == 0)
    }

    @Test func aTornEntryIsWrittenOverAndALargeFileCompacted() throws {
        let path = Self.scratchFile()
        defer { try? FileManager.default.removeItem(atPath: path) }
        do {
            let positions = try StreamPositions(path: path)
            try positions.note(sequence: 1, endOffset: 4)
        }
        // A crash in the middle of the next entry.
        let handle = try #require(FileHandle(forWritingAtPath: path))
        handle.seekToEndOfFile()
        handle.write(Data([9, 9, 9]))
        handle.closeFile()
        let positions = try StreamPositions(path: path)
        try positions.note(sequence: 2, endOffset: 8)
        #expect(FileSystem.size(path) == 32)
        #expect(try StreamPositions.sequence(at: 8, path: path) == 2)

        // Past the compaction size, reopening keeps the newest entries only.
        let many = (0..<(Int(StreamPositions.compactAt) / StreamPositions.entryBytes + 10)).map { UInt64($0) }
        var bytes: [UInt8] = []
        for n in many { StreamPositions.append((n + 3, Int64(n) * 2 + 10), to: &bytes) }
        let appender = try #require(FileHandle(forWritingAtPath: path))
        appender.seekToEndOfFile()
        appender.write(Data(bytes))
        appender.closeFile()
        _ = try StreamPositions(path: path)
        #expect(FileSystem.size(path) == Int64(StreamPositions.keptOnCompaction * StreamPositions.entryBytes))
        let last = try #require(many.last)
        #expect(try StreamPositions.sequence(at: Int64(last) * 2 + 10, path: path) == last + 3)
    }
}
