import Presence
import SegmentLog

/// Retention of the presence log: whole sealed segments whose events are all older than a cut are
/// removed, after the state at their end is kept in a base checkpoint, so the current state stays exact
/// and every fold starts from that base.
///
/// On disk: `DATA/retained/` holds the base checkpoint (the projection after every removed record, same
/// format as `DATA/checkpoints/`), and the setting `DATA/retention` says `<first retained offset> <cut
/// ms>`. A pass writes the base, then the setting, then removes the segments oldest first
/// (`SegmentRetention`), so a crash at any point leaves the setting pointing at a base that exists and
/// the log holding at least every record from its offset: a rerun finishes the removal.
///
/// Answers that need what was removed — a state at a time before the cut, a fold from before the first
/// retained offset — are refused with `NotRetained`, never answered from what is left.
public enum Retention {
    /// The retained range: records from `firstOffset` on; events before `cut` (ms) may be gone.
    public struct Range: Sendable, Equatable {
        public var firstOffset: Int64
        public var cut: Int64
    }

    static let setting = "retention"

    /// The folder of the base checkpoint.
    public static func baseDirectory(data: String) -> String {
        (data.hasSuffix("/") ? String(data.dropLast()) : data) + "/retained"
    }

    /// The retained range, or nil when nothing was ever removed.
    public static func read(data: String) throws -> Range? {
        guard let text = try DataDirectory.readSetting(data: data, setting) else { return nil }
        let parts = text.split(separator: " ")
        guard parts.count == 2, let first = Int64(parts[0]), let cut = Int64(parts[1]), first >= 0 else {
            throw LogError(.corrupt, "\(data)/\(setting): '\(text)' is not '<first retained offset> <cut ms>'")
        }
        return Range(firstOffset: first, cut: cut)
    }

    /// A question about what retention removed.
    public struct NotRetained: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    /// Refuses a question about times before the cut or offsets before the first retained one.
    public static func check(_ range: Range?, at time: Int64? = nil, fromOffset: Int64? = nil, untilOffset: Int64? = nil) throws {
        guard let range else { return }
        let kept = "the presence history before \(Timestamp.format(range.cut)) (offsets below \(range.firstOffset)) was not retained (presence retain)"
        if let time, time < range.cut { throw NotRetained(description: "\(Timestamp.format(time)) is before the cut: \(kept)") }
        if let fromOffset, fromOffset < range.firstOffset { throw NotRetained(description: "offset \(fromOffset): \(kept)") }
        if let untilOffset, untilOffset < range.firstOffset { throw NotRetained(description: "offset \(untilOffset): \(kept)") }
    }

    /// The base checkpoint of `range`: the state after every removed record.
    public static func loadBase(data: String, _ range: Range) throws -> (projection: PresenceProjection, path: String) {
        let directory = baseDirectory(data: data)
        guard let file = try Checkpoint.files(in: directory).last(where: { $0.offset == range.firstOffset }) else {
            throw LogError(.corrupt, "\(directory): no base checkpoint at offset \(range.firstOffset), which \(data)/\(setting) names; the state before it cannot be rebuilt")
        }
        return (try Checkpoint.load(file.path), file.path)
    }

    /// What a pass did.
    public struct Pass: Sendable {
        public var range: Range
        public var segments: Int
        public var bytes: Int64
        /// Segments left because their newest event is at or after the cut (the first of them ends the prefix).
        public var kept: Int
    }

    /// Removes the longest run of sealed segments from the front whose events are all before `cut`,
    /// keeping first the state at their end (`DATA/retained/`). The caller holds the data directory's
    /// lock. Returns nil when nothing is old enough (an interrupted earlier pass is still finished).
    ///
    /// `appliedBelow`: a serving node's applied (so acknowledged) end offset. Only segments ending
    /// before it go: an append in progress may have rolled past the last one, and if it fails for want
    /// of space that segment is the active one again (`Log`'s undo), so it must not be gone.
    public static func run(_ directory: DataDirectory, logDirectory: String, before cut: Int64, horizon: Int64,
                           appliedBelow: Int64 = .max) throws -> Pass? {
        let data = directory.path
        let current = try read(data: data)
        let sealed = try SegmentRetention.sealedSegments(directory: logDirectory)
        var end: Int64?
        for segment in sealed {
            guard let newest = segment.maxTimestamp, newest < cut, segment.endOffset < appliedBelow else { break }
            end = segment.endOffset
        }
        let kept = sealed.filter { $0.endOffset > (end ?? 0) }.count
        guard let end, end > (current?.firstOffset ?? 0) else {
            // Nothing new: finish what an interrupted pass left.
            if let current { _ = try SegmentRetention.remove(directory: logDirectory, below: current.firstOffset) }
            return nil
        }
        // The state after every record below `end`: from the newest checkpoint at or below it (or the
        // previous base), folded up to it.
        let restored = try Replay.restore(data: data, logDirectory: logDirectory, horizon: horizon, untilOffset: end, readAhead: false)
        guard restored.projection.nextOffset == end else {
            throw LogError(.corrupt, "\(logDirectory): folding up to offset \(end) stopped at \(restored.projection.nextOffset); nothing removed")
        }
        try Checkpoint.write(restored.projection, to: baseDirectory(data: data))
        let range = Range(firstOffset: end, cut: max(cut, current?.cut ?? cut))
        try directory.writeSetting(setting, "\(range.firstOffset) \(range.cut)")
        let removed = try SegmentRetention.remove(directory: logDirectory, below: end)
        return Pass(range: range, segments: removed.segments, bytes: removed.bytes, kept: kept)
    }
}
