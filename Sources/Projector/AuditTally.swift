import Presence

/// What `presence audit` counts while it folds: filled only when a projection audits (a fold that
/// audits never sweeps, so a connection's index stays the same from start to end).
final class AuditTally {
    static let examples = 5
    static let candidates = 10_000
    let outOfOrderThreshold: Int64
    var repeatedEvents = 0
    var repeatedExamples: [Int64] = []
    var outOfOrder = 0
    var outOfOrderExamples: [(offset: Int64, behind: Int64)] = []
    var refusedExamples: [Int64] = []
    /// Disconnects that made their key (offset, connection), to check at the end.
    var disconnectFirst: [(offset: Int64, connection: Int)] = []
    /// Sessions, and sessions of unknown start, of keys forgotten and then used again.
    var forgottenSessions = 0
    var forgottenUnknownStarts = 0

    init(outOfOrderThreshold: Int64) {
        self.outOfOrderThreshold = outOfOrderThreshold
    }

    func repeated(at offset: Int64) {
        repeatedEvents += 1
        if repeatedExamples.count < Self.examples { repeatedExamples.append(offset) }
    }

    func disconnectFirst(at offset: Int64, connection: Int) {
        if disconnectFirst.count < Self.candidates { disconnectFirst.append((offset, connection)) }
    }

    func forgot(_ counts: (sessions: Int, unknownStarts: Int)) {
        forgottenSessions += counts.sessions
        forgottenUnknownStarts += counts.unknownStarts
    }
}

extension PresenceProjection {
    /// An anomaly `presence audit` reports (or a count it gives for information): a count and a few examples.
    public struct Anomaly: Sendable, Equatable {
        public var name: String
        public var count: Int
        public var examples: [String]
    }

    /// Starts counting anomalies; call before applying anything. `outOfOrder`: how far (ms) behind the
    /// newest event time an event may arrive before it counts as far out of order.
    public func startAuditing(outOfOrder: Int64) {
        state.audit = AuditTally(outOfOrderThreshold: outOfOrder)
    }

    /// The anomalies counted so far. `openLongerThan` (ms): open sessions that started this long before
    /// the newest event time are reported.
    public func anomalies(openLongerThan: Int64) -> [Anomaly] {
        guard let audit = state.audit else { return [] }
        var withoutConnect = audit.forgottenUnknownStarts
        var longOpen = 0
        var longOpenExamples: [String] = []
        for c in 0..<state.connections.count {
            let connection = state.connections[c]
            withoutConnect += state.sessionCounts(c).unknownStarts
            if state.isOpen(connection) && connection.start < state.maxTimestamp - openLongerThan {
                longOpen += 1
                if longOpenExamples.count < AuditTally.examples {
                    longOpenExamples.append("user \(userName(of: connection)): open since \(Timestamp.format(connection.start))")
                }
            }
        }
        let disconnectExamples = audit.disconnectFirst.filter { state.sessionCounts($0.connection).unknownStarts > 0 }
            .prefix(AuditTally.examples).map { "offset \($0.offset) (user \(userName(of: state.connections[$0.connection])))" }
        return [
            Anomaly(name: "disconnect without connect", count: withoutConnect, examples: Array(disconnectExamples)),
            Anomaly(name: "repeated events", count: audit.repeatedEvents, examples: audit.repeatedExamples.map { "offset \($0)" }),
            Anomaly(name: "connections open longer than \(openLongerThan / 3_600_000)h", count: longOpen, examples: longOpenExamples),
            Anomaly(name: "events more than \(audit.outOfOrderThreshold / 1000)s out of order", count: audit.outOfOrder,
                    examples: audit.outOfOrderExamples.map { "offset \($0.offset): \($0.behind / 1000)s behind the newest event" }),
            Anomaly(name: "events refused (older than the late-arrival horizon)", count: state.refusedEvents,
                    examples: audit.refusedExamples.map { "offset \($0)" }),
        ]
    }

    /// Counts the audit gives for information, not as anomalies: sessions of a reused connection id
    /// (every session of a key after its first, as rule 1 defines them).
    public func auditInformation() -> [Anomaly] {
        guard let audit = state.audit else { return [] }
        var reused = audit.forgottenSessions
        var examples: [String] = []
        for c in 0..<state.connections.count where state.connections[c].reason & ProjectionState.reusedKey != 0 {
            let sessions = state.sessionCounts(c).sessions
            reused += max(0, sessions - 1)
            if sessions > 1 && examples.count < AuditTally.examples {
                examples.append("user \(userName(of: state.connections[c])): \(sessions) sessions of one connection id")
            }
        }
        return [Anomaly(name: "sessions of a reused connection id", count: reused, examples: examples)]
    }

    private func userName(of connection: ProjectionState.Connection) -> String {
        String(decoding: state.userKey(Int(connection.user)), as: UTF8.self)
    }
}
