import Foundation
import Presence
import Projector
import SegmentLog
import Testing
import TestSupport

/// `Retention.run` in process: whole old sealed segments go, and on a serving node only those ending
/// before what it has applied.
@Suite struct RetentionPassTests {
    /// A log of four segments (a roll every hour of event time), each hour's events an hour apart.
    func fourHours() throws -> (Scratch, DataDirectory, String, [Int64]) {
        let scratch = Scratch()
        let directory = try DataDirectory(path: scratch.path)
        let log = try directory.openLog(presenceLogName)
        for hour in 0..<4 {
            var records = RecordBuffer()
            for k in 0..<10 {
                EventCodec.append(connect("u\(hour)-\(k)", "c\(k)", 1_700_000_000_000 + Int64(hour) * 3_700_000 + Int64(k)), to: &records)
            }
            try log.append(records)
        }
        try log.close()
        let logDirectory = scratch.path + "/" + presenceLogName
        return (scratch, directory, logDirectory, try Log.segmentBaseOffsets(in: logDirectory))
    }

    @Test func oldSealedSegmentsGoButNotOneEndingWhereTheNodeHasApplied() throws {
        let (scratch, directory, logDirectory, bases) = try fourHours()
        _ = scratch
        #expect(bases == [0, 10, 20, 30])
        let cut: Int64 = 1_700_000_000_000 + 4 * 3_700_000  // every event is older
        // A node that has applied only up to 20 (an append in progress rolled to the segment at 20):
        // the segment ending at 20 stays, so the one before it alone goes.
        let pass = try #require(try Retention.run(directory, logDirectory: logDirectory, before: cut, horizon: 0, appliedBelow: 20))
        #expect(pass.range.firstOffset == 10)
        #expect(try Log.segmentBaseOffsets(in: logDirectory) == [10, 20, 30])
        // Offline (everything applied): every sealed segment older than the cut goes, the active one stays.
        let next = try #require(try Retention.run(directory, logDirectory: logDirectory, before: cut, horizon: 0))
        #expect(next.range.firstOffset == 30)
        #expect(try Log.segmentBaseOffsets(in: logDirectory) == [30])
    }
}
