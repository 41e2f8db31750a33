import Foundation
import SegmentLog

/// The erasure records, in their own log `DATA/erasures/` (same Kafka format as the others). Each
/// record's key is the erased user's name under the data folder's key (`ErasureKey.name(of:)`), its
/// timestamp the time of writing (ms), its value JSON:
///
///     {"type":"erasure","at":"2026-12-03T17:00:00.000Z","presence":{"records":3,"offsets":[[12,12],[40,41]]},
///      "privacy":{"records":1,"offsets":[[0,0]]}}
///     {"type":"erasure_complete","at":"2026-12-03T17:00:01.000Z"}
///
/// An `erasure` record is written and fsynced before the first rewritten segment is renamed in, so each
/// offset an erasure removes (a gap) is named by one before it disappears. An `erasure_complete` after
/// the last step completes every earlier `erasure` of that key. A rerun after a crash writes a new
/// `erasure` (what is left to remove, perhaps nothing) and then the completion.
public enum ErasureLog {
    public static let logName = "erasures"

    /// One log's part of an erasure: records removed and their offsets, as inclusive ranges.
    public struct Part: Codable, Sendable, Equatable {
        public var records: Int
        public var offsets: [[Int64]]

        public init(offsets: [Int64]) {
            records = offsets.count
            var ranges: [[Int64]] = []
            for offset in offsets {
                if let last = ranges.last, last[1] + 1 == offset { ranges[ranges.count - 1][1] = offset } else { ranges.append([offset, offset]) }
            }
            self.offsets = ranges
        }

        public var ranges: [ClosedRange<Int64>] {
            offsets.compactMap { $0.count == 2 && $0[0] <= $0[1] ? $0[0]...$0[1] : nil }
        }
    }

    /// A record's value.
    public struct Value: Codable, Sendable {
        public var type: String
        public var at: String
        public var presence: Part?
        public var privacy: Part?
    }

    /// A record as read back.
    public struct Entry: Sendable {
        public var name: String
        public var offset: Int64
        public var value: Value
        public var isCompletion: Bool { value.type == "erasure_complete" }
    }

    /// What the erasure log says, as `audit` and `log-info` need it.
    public struct Summary: Sendable {
        /// Users erased (or being erased): distinct names.
        public var users = 0
        /// Records removed, all logs.
        public var recordsRemoved = 0
        public var presenceRecordsRemoved = 0
        /// Names whose last record is an `erasure` without its completion.
        public var unfinished: [String] = []
        /// Every presence offset any erasure names, merged and sorted.
        public var presenceRanges: [ClosedRange<Int64>] = []

        /// Whether every offset of `gap` is named by an erasure.
        public func accounts(for gap: ClosedRange<Int64>) -> Bool {
            // The first range that ends at or after the gap's start must hold all of it (ranges are merged).
            var low = 0, high = presenceRanges.count
            while low < high {
                let mid = (low + high) / 2
                if presenceRanges[mid].upperBound < gap.lowerBound { low = mid + 1 } else { high = mid }
            }
            return low < presenceRanges.count && presenceRanges[low].lowerBound <= gap.lowerBound && presenceRanges[low].upperBound >= gap.upperBound
        }
    }

    /// Every erasure record of the data folder at `data`, in order; empty when there is no erasure log.
    public static func read(data: String) throws -> [Entry] {
        let directory = data + "/" + logName
        guard FileSystem.isDirectory(directory) else { return [] }
        var entries: [Entry] = []
        let decoder = JSONDecoder()
        try LogReader(directory: directory).forEachRecord { record in
            guard let key = record.key, let value = record.value,
                  let decoded = try? decoder.decode(Value.self, from: Data(value)),
                  decoded.type == "erasure" || decoded.type == "erasure_complete"
            else {
                throw LogError(.corrupt, "\(directory): the record at offset \(record.offset) is not an erasure record")
            }
            entries.append(Entry(name: String(decoding: key, as: UTF8.self), offset: record.offset, value: decoded))
            return true
        }
        return entries
    }

    /// The summary of `entries`.
    public static func summarize(_ entries: [Entry]) -> Summary {
        var summary = Summary()
        var last: [String: Bool] = [:]
        var ranges: [ClosedRange<Int64>] = []
        for entry in entries {
            last[entry.name] = entry.isCompletion
            let presence = entry.value.presence?.records ?? 0
            summary.presenceRecordsRemoved += presence
            summary.recordsRemoved += presence + (entry.value.privacy?.records ?? 0)
            ranges += entry.value.presence?.ranges ?? []
        }
        summary.users = last.count
        summary.unfinished = last.filter { !$0.value }.map(\.key).sorted()
        ranges.sort { $0.lowerBound < $1.lowerBound }
        for range in ranges {
            if let merged = summary.presenceRanges.last, range.lowerBound <= merged.upperBound + 1 {
                summary.presenceRanges[summary.presenceRanges.count - 1] = merged.lowerBound...max(merged.upperBound, range.upperBound)
            } else {
                summary.presenceRanges.append(range)
            }
        }
        return summary
    }

    /// Appends one record and fsyncs it (the caller holds the data directory's lock).
    static func append(_ value: Value, name: String, time: Int64, directory: DataDirectory) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let bytes = Array(try encoder.encode(value))
        var buffer = RecordBuffer()
        buffer.append(timestamp: time, key: Array(name.utf8), value: bytes)
        let log = try directory.openLog(logName)
        _ = try log.append(buffer)
        try log.sync()
        try log.close()
    }
}
