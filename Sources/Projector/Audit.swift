import Presence
import SegmentLog

/// `presence audit`: verifies the log byte by byte, checks the newest checkpoint against a fresh fold,
/// and counts the anomalies a presence auditor wants to know about.
public enum Audit {
    public struct Options: Sendable {
        public var horizon: Int64 = defaultLateArrivalHorizon
        /// Open connections that started this long before the newest event are reported.
        public var openLongerThan: Int64 = 86_400_000
        /// Events this far behind the newest event time count as far out of order.
        public var outOfOrder: Int64 = 300_000
        public init() {}
    }

    public struct CheckpointCheck: Sendable {
        public var path: String
        /// nil when the checkpoint agrees with the fresh fold.
        public var problem: String?
    }

    public struct Report: Sendable {
        public var storage: LogVerifier.Report
        public var checkpoint: CheckpointCheck?
        public var anomalies: [PresenceProjection.Anomaly]
        /// Counts given for information, not anomalies (sessions of a reused connection id).
        public var information: [PresenceProjection.Anomaly]
        public var eventsFolded: Int
        public var users: Int

        /// 2 when anything is corrupt (log or checkpoint), 1 when there are anomalies only, 0 when clean.
        public var exitCode: Int32 {
            if !storage.corruption.isEmpty || checkpoint?.problem != nil { return 2 }
            if !storage.indexProblems.isEmpty || storage.tornTail != nil || anomalies.contains(where: { $0.count > 0 }) { return 1 }
            return 0
        }
    }

    public static func run(data: String, logDirectory: String, options: Options = Options()) throws -> Report {
        // After retention the fold starts from the base checkpoint: the oldest state the data directory holds.
        let retained = try Retention.read(data: data)
        let fresh = try retained.map { try Retention.loadBase(data: data, $0).projection } ?? PresenceProjection(horizon: options.horizon)
        fresh.startAuditing(outOfOrder: options.outOfOrder)
        // The newest checkpoint, if any, to compare with the fold when it reaches the checkpoint's offset.
        var checkpoint: (path: String, projection: PresenceProjection)?
        var check: CheckpointCheck?
        if let newest = try? Checkpoint.files(in: Checkpoint.directory(data: data)).last {
            do {
                checkpoint = (newest.path, try Checkpoint.load(newest.path))
            } catch {
                check = CheckpointCheck(path: newest.path, problem: "cannot be loaded: \(error)")
            }
        }
        func compare() {
            guard let (path, loaded) = checkpoint else { return }
            checkpoint = nil
            var problems: [String] = []
            if loaded.onlineUsers != fresh.onlineUsers { problems.append("online users \(loaded.onlineUsers), fresh fold \(fresh.onlineUsers)") }
            if loaded.openConnectionCount != fresh.openConnectionCount { problems.append("open connections \(loaded.openConnectionCount), fresh fold \(fresh.openConnectionCount)") }
            if loaded.refusedEvents != fresh.refusedEvents { problems.append("refused events \(loaded.refusedEvents), fresh fold \(fresh.refusedEvents)") }
            if problems.isEmpty {
                let a = loaded.allStates(), b = fresh.allStates()
                if a != b {
                    let first = zip(a, b).first { $0 != $1 }
                    problems.append("user states differ" + (first.map { " (first: \($0.0.user) \($0.0) vs \($0.1))" } ?? " in count: \(a.count) vs \(b.count)"))
                }
            }
            check = CheckpointCheck(path: path, problem: problems.isEmpty ? nil : problems.joined(separator: "; "))
        }
        let storage = try LogVerifier.verify(directory: logDirectory) { record in
            if record.offset < fresh.nextOffset { return }  // left by an interrupted retention pass
            // `>=`: the checkpoint's offset may be a gap an erasure left.
            if let (_, loaded) = checkpoint, record.offset >= loaded.nextOffset { compare() }
            try fresh.apply(record)
        }
        if let (path, loaded) = checkpoint {
            // Every record was folded and none is at or past the checkpoint's offset: it fits if the log
            // reaches that offset (the offsets between the last record and it may be an erasure's gaps).
            let end = max(storage.endOffset, fresh.nextOffset)
            if (loaded.nextOffset >= fresh.nextOffset && loaded.nextOffset <= end) || (loaded.nextOffset == 0 && fresh.eventsApplied == 0) {
                compare()
            } else {
                check = CheckpointCheck(path: path, problem: "covers the log up to offset \(loaded.nextOffset), but the log ends at \(end)")
            }
        }
        return Report(storage: storage, checkpoint: check, anomalies: fresh.anomalies(openLongerThan: options.openLongerThan),
                      information: fresh.auditInformation(), eventsFolded: fresh.eventsApplied, users: fresh.userCount)
    }
}
