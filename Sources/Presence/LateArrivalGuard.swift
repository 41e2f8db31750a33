/// The late-arrival horizon at ingest: refuses an event older than the newest event time seen so far
/// minus the horizon. The projector applies the same test in log order (`PresenceProjection`), so a
/// replay makes the same decisions.
public struct LateArrivalGuard: Sendable {
    /// The horizon, ms.
    public let horizon: Int64
    /// The newest event time seen (the log's, then the admitted events').
    public private(set) var newest: Int64?

    public init(horizon: Int64, newest: Int64?) {
        self.horizon = horizon
        self.newest = newest
    }

    /// Admits an event time, or throws the reason it is refused.
    public mutating func admit(_ timestamp: Int64) throws(EventParseError) {
        if let newest, timestamp < newest - horizon {
            throw EventParseError("event time \(Timestamp.format(timestamp)) is older than the late-arrival horizon: the newest event is \(Timestamp.format(newest)) and the horizon is \(Self.durationText(horizon)); refused")
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
