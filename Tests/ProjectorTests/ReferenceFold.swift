import Presence
@testable import Projector

/// The rules of `ConnectionRules` (v2), written the plain way, for the tests to compare the projection
/// and `History` with. No interning, no incremental updates, no state machine shared with the code
/// under test: for each key it sorts the key's events together with every gateway_down into one
/// timeline and walks it.
enum ReferenceFold {
    struct Session: Equatable, CustomStringConvertible {
        var user: String
        var conn: String
        var start: Int64?
        var end: Int64?
        var reason: ConnectionRules.EndReason?
        var description: String { "\(user)/\(conn) \(start.map(String.init) ?? "?")-\(end.map(String.init) ?? "open") \(reason?.name ?? "")" }
    }

    /// Every session the rules define over the events with ts <= `time`.
    static func sessions(_ events: [PresenceEvent], at time: Int64 = .max) -> [Session] {
        let events = events.filter { $0.timestamp <= time }
        // A timeline entry: time, then its place among entries at that time (connect 0, disconnect 1,
        // gateway_down 2), then the gateway (connects at one time by gateway name).
        struct Entry: Hashable { var ts: Int64; var order: Int; var gateway: String }
        var keys: [String: [String: Set<Entry>]] = [:]
        var downs = Set<Entry>()
        for event in events {
            switch event.kind {
            case .connect: keys[event.user, default: [:]][event.conn, default: []].insert(Entry(ts: event.timestamp, order: 0, gateway: event.gateway))
            case .disconnect: keys[event.user, default: [:]][event.conn, default: []].insert(Entry(ts: event.timestamp, order: 1, gateway: ""))
            case .gatewayDown: downs.insert(Entry(ts: event.timestamp, order: 2, gateway: event.gateway))
            case .heartbeat: break
            }
        }
        var result: [Session] = []
        for (user, conns) in keys {
            for (conn, entries) in conns {
                let timeline = (Array(entries) + Array(downs)).sorted {
                    ($0.ts, $0.order) != ($1.ts, $1.order) ? ($0.ts, $0.order) < ($1.ts, $1.order)
                        : Array($0.gateway.utf8).lexicographicallyPrecedes(Array($1.gateway.utf8))
                }
                var open: (start: Int64, gateway: String)?
                var hadSession = false
                for entry in timeline {
                    switch entry.order {
                    case 0:
                        if open == nil { open = (entry.ts, entry.gateway); hadSession = true }
                    case 1:
                        if let session = open {
                            result.append(Session(user: user, conn: conn, start: session.start, end: entry.ts, reason: .disconnect))
                            open = nil
                        } else if !hadSession {
                            result.append(Session(user: user, conn: conn, start: nil, end: entry.ts, reason: .disconnect))
                            hadSession = true
                        }
                    default:
                        if let session = open, session.gateway == entry.gateway {
                            result.append(Session(user: user, conn: conn, start: session.start, end: entry.ts, reason: .gatewayDown))
                            open = nil
                        }
                    }
                }
                if let session = open { result.append(Session(user: user, conn: conn, start: session.start, end: nil, reason: nil)) }
            }
        }
        return result
    }

    static func states(_ events: [PresenceEvent], at time: Int64 = .max) -> [PresenceProjection.UserState] {
        var byUser: [String: (open: Int, lastSeen: Int64?)] = [:]
        for event in events where event.timestamp <= time && (event.kind == .connect || event.kind == .disconnect) {
            byUser[event.user] = (0, nil)
        }
        for session in sessions(events, at: time) {
            if let end = session.end {
                let before = byUser[session.user]?.lastSeen
                byUser[session.user]?.lastSeen = max(before ?? end, end)
            } else {
                byUser[session.user]?.open += 1
            }
        }
        return byUser.map { .init(user: $0.key, online: $0.value.open > 0, lastSeen: $0.value.lastSeen, connections: $0.value.open) }
            .sorted { Array($0.user.utf8).lexicographicallyPrecedes(Array($1.user.utf8)) }
    }
}
