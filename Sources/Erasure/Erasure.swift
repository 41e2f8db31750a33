import Chat
import Presence
import Projector
import SegmentLog

/// `presence forget`: every record of one user removed from the presence log, the privacy log and the
/// projection snapshots, every other record kept at its offset (`SegmentRewrite`), with an erasure
/// record (`ErasureLog`) naming the removed offsets under a keyed hash of the user.
///
/// Order, each step durable before the next: (1) the records to remove are found; (2) the `erasure`
/// record is appended and fsynced; (3) each segment holding them is rewritten and renamed in, the
/// presence log's then the privacy log's; (4) every base checkpoint of retention (`DATA/retained/`)
/// is rewritten without the user (its records are gone: it cannot be folded again); (5) the snapshots
/// in `DATA/checkpoints/` are replaced by one fresh snapshot folded from the rewritten log (older ones
/// hold the user, and a snapshot folded from the log is what `audit` checks them against); (6) the
/// `erasure_complete` record. A crash anywhere leaves each segment old or new, never mixed, and an
/// `erasure` without completion: a rerun finds what is left, and finishes.
///
/// Out of scope: the chat store (the user's memberships and messages stay, being the other members'
/// history too) and a cluster's JetStream stream (refused on a cluster node's data folder).
public enum Erasure {
    /// What a run did.
    public struct Outcome: Sendable {
        public var presenceRecords = 0
        public var privacyRecords = 0
        public var segmentsRewritten = 0
        public var bytesBefore: Int64 = 0
        public var bytesAfter: Int64 = 0
        public var baseCheckpoints = 0
        /// The fresh snapshot written in place of the old ones, if there were any.
        public var checkpoint: String?
        public var checkpointsRemoved = 0
        /// Whether an interrupted erasure of the same user was completed.
        public var resumed = false
        /// The offsets removed from the presence log (those of this run: an interrupted run's already
        /// gone are not listed again).
        public var presenceOffsets: [Int64] = []

        /// Nothing done yet (a serving node whose earlier erasure left only its live state to replace
        /// starts from it).
        public init(resumed: Bool = false) {
            self.resumed = resumed
        }
    }

    /// An erasure refused before anything changed.
    public struct Refusal: Error, CustomStringConvertible, Sendable {
        public let description: String
        /// Whether the user is unknown (rather than the data folder not allowing an erasure).
        public let unknownUser: Bool
    }

    /// The file that marks a cluster node's data folder.
    static let clusterMark = "cluster-presence.positions"

    /// Erases `user` from the data folder `directory` (whose lock the caller holds). `progress` gets one
    /// line per step and per rewritten segment.
    ///
    /// `logsAreOpen`: the presence and privacy logs are held open by the caller's paused writers
    /// (`LogWriter.pause()`, a serving node), which recovered them when they opened and whose active
    /// segments hold no record of the user (`Log.sealActiveSegment()`); the logs are then not opened
    /// here to recover them.
    public static func run(_ directory: DataDirectory, user: String, horizon: Int64, now: Int64, logsAreOpen: Bool = false,
                           progress: (String) -> Void = { _ in }) throws -> Outcome {
        let data = directory.path
        if FileSystem.exists(data + "/" + clusterMark) {
            throw Refusal(description: "\(data) is a cluster node's data folder (\(clusterMark)): the JetStream stream holds the same records and erasing them there is not built yet; nothing erased",
                          unknownUser: false)
        }
        let presence = try directory.logPath(presenceLogName)
        let privacy = try directory.logPath(PrivacyStore.logName)
        let logs = [presence, privacy].filter { FileSystem.isDirectory($0) }
        let userBytes = Array(user.utf8)
        let isUser: (RecordView) -> Bool = { record in
            guard let key = record.key else { return false }
            return key.elementsEqual(userBytes)
        }

        // What there is to do, read only: an unknown user changes nothing.
        let key = try ErasureKey.load(data: data)
        let name = key?.name(of: user)
        let entries = try ErasureLog.read(data: data)
        let unfinished = name.map { name in entries.last(where: { $0.name == name }).map { !$0.isCompletion } ?? false } ?? false
        var found = try logs.map { try SegmentRewrite.find(directory: $0, select: isUser) }
        let bases = try Checkpoint.files(in: Retention.baseDirectory(data: data)).filter { try Checkpoint.load($0.path).state(of: user) != nil }
        if found.allSatisfy({ $0.isEmpty }) && bases.isEmpty && !unfinished {
            let erased = name.flatMap { name in entries.last(where: { $0.name == name && $0.isCompletion }) }
            throw Refusal(description: "no record of user '\(user)' in \(data)" + (erased.map { " (an erasure of this user completed at \($0.value.at))" } ?? "") + "; nothing changed",
                          unknownUser: true)
        }

        // Recover each log (a torn tail is cut as any writer's open does) and drop what an interrupted
        // run left, then find the records again: offsets are final now.
        for log in logs {
            if !logsAreOpen { try Log.open(directory: log).close() }
            try SegmentRewrite.removeLeftovers(directory: log)
        }
        found = try logs.map { try SegmentRewrite.find(directory: $0, select: isUser) }
        if logsAreOpen {
            for (log, segments) in zip(logs, found) where segments.last?.segment == (try Log.segmentBaseOffsets(in: log)).last {
                throw LogError(.invalidArgument, "\(log): the active segment holds records of the user; seal it before an erasure (nothing erased)")
            }
        }
        let offsets = found.map { $0.flatMap(\.offsets) }
        var outcome = Outcome()
        outcome.resumed = unfinished
        outcome.presenceRecords = logs.first == presence ? offsets.first?.count ?? 0 : 0
        outcome.privacyRecords = logs.last == privacy ? offsets.last?.count ?? 0 : 0
        outcome.presenceOffsets = logs.first == presence ? offsets.first ?? [] : []

        // (2) The erasure record, before any segment changes.
        let erasureKey = try key ?? ErasureKey.loadOrCreate(data: data)
        let erasureName = erasureKey.name(of: user)
        let presenceOffsets = logs.first == presence ? offsets.first ?? [] : []
        let privacyOffsets = logs.last == privacy ? offsets.last ?? [] : []
        try ErasureLog.append(ErasureLog.Value(type: "erasure", at: Timestamp.format(now),
                                               presence: ErasureLog.Part(offsets: presenceOffsets),
                                               privacy: ErasureLog.Part(offsets: privacyOffsets)),
                              name: erasureName, time: now, directory: directory)
        progress("erasure record written: \(presenceOffsets.count) presence and \(privacyOffsets.count) privacy records to remove"
                 + (unfinished ? " (completing an interrupted erasure)" : ""))

        // (3) The segments, one at a time.
        for (log, segments) in zip(logs, found) {
            let all = try Log.segmentBaseOffsets(in: log)
            for (number, segment) in segments.enumerated() {
                let result = try SegmentRewrite.rewrite(directory: log, baseOffset: segment.segment, sealed: segment.segment != all.last) { isUser($0) }
                outcome.segmentsRewritten += 1
                outcome.bytesBefore += result.bytesBefore
                outcome.bytesAfter += result.bytesAfter
                progress("\(log)/\(Log.segmentName(segment.segment)).log: removed \(result.removed) record\(result.removed == 1 ? "" : "s") (segment \(number + 1) of \(segments.count))")
            }
        }

        // (4) The retention bases.
        for file in try Checkpoint.files(in: Retention.baseDirectory(data: data)) {
            let projection = try Checkpoint.load(file.path)
            guard projection.removeUser(user) else { continue }
            _ = try Checkpoint.write(projection, to: Retention.baseDirectory(data: data))
            outcome.baseCheckpoints += 1
            progress("\(file.path): rewritten without the user")
        }

        // (5) The snapshots: one fresh in place of the old.
        let snapshots = Checkpoint.directory(data: data)
        let old = try Checkpoint.files(in: snapshots)
        if !old.isEmpty, FileSystem.isDirectory(presence) {
            progress("folding the rewritten log for a fresh checkpoint (\(old.count) to replace)")
            let restored = try Replay.restore(data: data, logDirectory: presence, horizon: horizon, fromCheckpoint: false, readAhead: false)
            let written = try Checkpoint.write(restored.projection, to: snapshots)
            for file in try Checkpoint.files(in: snapshots) where file.path != written.path {
                try FileSystem.remove(file.path)
                outcome.checkpointsRemoved += 1
            }
            try FileSystem.syncDirectory(snapshots)
            outcome.checkpoint = written.path
        }

        // (6) Done.
        try ErasureLog.append(ErasureLog.Value(type: "erasure_complete", at: Timestamp.format(now)),
                              name: erasureName, time: now, directory: directory)
        return outcome
    }
}
