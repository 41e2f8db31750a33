import SegmentLog

/// The late-arrival horizon at ingest: refuses an event older than the newest event time seen so far
/// minus the horizon. The projector applies the same test in log order (`PresenceProjection`), so a
/// replay makes the same decisions.
public struct LateArrivalGuard: Sendable {
    /// The horizon, ms.
    public let horizon: Int64
    /// The newest event time seen (the log's, then the admitted events').
    public private(set) var newest: Int64?
    /// Who is refusing, for the reason's wording: `ingest` (the newest time is the log's and the
    /// input's), or a running server, whose own heartbeats carry its wall clock.
    public var refuser: Refuser = .ingest

    public enum Refuser: Sendable { case ingest, server }

    public init(horizon: Int64, newest: Int64?) {
        self.horizon = horizon
        self.newest = newest
    }

    /// Admits an event time, or throws the reason it is refused.
    public mutating func admit(_ timestamp: Int64) throws(EventParseError) {
        if let newest, timestamp < newest - horizon {
            let head = "event time \(Timestamp.format(timestamp)) is older than the late-arrival horizon: "
            let tail = "and the horizon is \(Self.durationText(horizon)); refused"
            switch refuser {
            case .ingest:
                throw EventParseError(head + "the newest event is \(Timestamp.format(newest)) " + tail)
            case .server:
                // A server's log moves with its clock (its heartbeats), so the cause is usually an old
                // timestamp or a history that belongs in the log before the server starts.
                throw EventParseError(head + "the newest event time in this server's log is \(Timestamp.format(newest)) (the node's own heartbeats keep it at the server's clock) "
                                      + tail + "; to load older history, `presence ingest` it into the data directory before `presence serve`")
            }
        }
        newest = max(newest ?? timestamp, timestamp)
    }

    /// 86400000 -> "24h", 300000 -> "5m", 1500 -> "1500ms".
    public static func durationText(_ ms: Int64) -> String {
        if ms % 3_600_000 == 0 { return "\(ms / 3_600_000)h" }
        if ms % 60_000 == 0 { return "\(ms / 60_000)m" }
        if ms % 1000 == 0 { return "\(ms / 1000)s" }
        return "\(ms)ms"
    }
}

/// The late-arrival horizon as the presence log writer's admission check: the server's writer decides on
/// its commit thread, in log order, whether a request's events are within the horizon of the newest
/// event time written before them, exactly as the projection will when it applies them. So two requests
/// committed together cannot both pass a check made before either was written and then see one of them
/// skipped by the fold: an event acknowledged is an event applied, and one refused is never written.
public final class LateArrivalAdmission: AppendAdmission {
    private var lateArrivals: LateArrivalGuard
    private var beforeCommit: LateArrivalGuard

    /// `lateArrivals`: the log's horizon and the newest event time the writer starts after.
    public init(_ lateArrivals: LateArrivalGuard) {
        self.lateArrivals = lateArrivals
        beforeCommit = lateArrivals
    }

    public func beginCommit() { beforeCommit = lateArrivals }
    public func abandonCommit() { lateArrivals = beforeCommit }

    public func admit(_ records: RecordBuffer) -> (record: Int, reason: String)? {
        var trial = lateArrivals
        for index in 0..<records.count {
            do throws(EventParseError) { try trial.admit(records.timestamp(at: index)) } catch { return (index, error.reason) }
        }
        lateArrivals = trial
        return nil
    }
}

/// The late-arrival horizon a data directory's presence log is written with, kept in `DATA/horizon`
/// (milliseconds, one line). It decides which events ingest refuses, so every command that folds the
/// log must use the same one: the first writer stores it, later writers must agree, readers take it.
public enum StoredHorizon {
    static let setting = "horizon"

    /// The stored horizon, if any.
    public static func read(data: String) throws(LogError) -> Int64? {
        guard let text = try DataDirectory.readSetting(data: data, setting) else { return nil }
        guard let value = Int64(text), value > 0 else {
            throw LogError(.corrupt, "'\(data)/\(setting)' should hold the late-arrival horizon in milliseconds, not '\(text)'")
        }
        return value
    }

    /// For a writer holding `directory`: the stored horizon, or `requested` (else the default) stored
    /// now. A requested horizon other than the stored one is refused: it would change which of the
    /// log's events count as late.
    public static func forWriting(_ directory: DataDirectory, requested: Int64?) throws(LogError) -> Int64 {
        if let stored = try read(data: directory.path) {
            if let requested, requested != stored {
                throw LogError(.invalidArgument, "'\(directory.path)' was written with a late-arrival horizon of \(LateArrivalGuard.durationText(stored)); --horizon \(LateArrivalGuard.durationText(requested)) would change which of its events count as late: omit --horizon")
            }
            return stored
        }
        let horizon = requested ?? defaultLateArrivalHorizon
        try directory.writeSetting(setting, String(horizon))
        return horizon
    }

    /// For a reader: `requested` if given (an audit may ask "what if"), else the stored horizon, else
    /// the default.
    public static func forReading(data: String, requested: Int64?) throws(LogError) -> Int64 {
        if let requested { return requested }
        return try read(data: data) ?? defaultLateArrivalHorizon
    }
}
