import Presence

/// What an operator asks about one user, answered by the code the CLI runs: `presence history`'s
/// sessions (`History`) and `presence state --at`'s fold (`Replay.restore`), so that the server's audit
/// routes and the web console show exactly what the commands print.
public enum UserAudit {
    /// `user`'s state at `time`: the fold of the log's events at or before it, from the newest checkpoint
    /// that fits (as `presence state --at T --user U`), and the last offset the fold read (-1: none).
    public static func state(of user: String, at time: Int64, data: String, logDirectory: String,
                             horizon: Int64) throws -> (state: PresenceProjection.UserState, throughOffset: Int64) {
        let restored = try Replay.restore(data: data, logDirectory: logDirectory, horizon: horizon, at: time, readAhead: false)
        let projection = restored.projection
        let state = projection.state(of: user) ?? .init(user: user, online: false, lastSeen: nil, connections: 0)
        return (state, max(restored.summary.endOffset, projection.nextOffset) - 1)
    }
}

extension History.Session {
    /// `{"conn":..,"gateway":..,"start":..,"end":..,"end_reason":..,"duration_ms":..}` (null for an
    /// unknown start, an open session's end, reason and duration): a line of `history --format json`,
    /// and an element of `GET /v1/users/{id}/history`'s `sessions`.
    public func appendJSON(to out: inout [UInt8]) {
        out.append(contentsOf: "{\"conn\":".utf8)
        EventJSON.appendString(conn, to: &out)
        out.append(contentsOf: ",\"gateway\":".utf8)
        EventJSON.appendString(gateway, to: &out)
        out.append(contentsOf: ",\"start\":".utf8)
        Timestamp.appendJSON(start, to: &out)
        out.append(contentsOf: ",\"end\":".utf8)
        Timestamp.appendJSON(end, to: &out)
        let reason = reason.map { "\"\($0.name)\"" } ?? "null"
        let duration = duration.map { String($0) } ?? "null"
        out.append(contentsOf: ",\"end_reason\":\(reason),\"duration_ms\":\(duration)}".utf8)
    }
}
