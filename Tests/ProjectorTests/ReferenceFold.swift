import Presence
@testable import Projector

/// The rules of `ConnectionRules`, written the plain way, for the tests to compare the projection with.
/// No interning, no incremental updates: it groups the events and applies the rules from scratch.
enum ReferenceFold {
    struct Connection {
        var starts: [Int64] = []
        var disconnects: [Int64] = []
        var connectGateways: [(Int64, String)] = []
        var disconnectGateway: String?
    }

    static func states(_ events: [PresenceEvent], at time: Int64 = .max) -> [PresenceProjection.UserState] {
        let events = events.filter { $0.timestamp <= time }
        var connections: [String: [String: Connection]] = [:]
        var downs: [String: [Int64]] = [:]
        for event in events {
            switch event.kind {
            case .connect:
                connections[event.user, default: [:]][event.conn, default: Connection()].starts.append(event.timestamp)
                connections[event.user, default: [:]][event.conn, default: Connection()].connectGateways.append((event.timestamp, event.gateway))
            case .disconnect:
                connections[event.user, default: [:]][event.conn, default: Connection()].disconnects.append(event.timestamp)
                connections[event.user, default: [:]][event.conn, default: Connection()].disconnectGateway = event.gateway
            case .gatewayDown:
                downs[event.gateway, default: []].append(event.timestamp)
            case .heartbeat:
                break
            }
        }
        var result: [PresenceProjection.UserState] = []
        for (user, conns) in connections {
            var open = 0
            var lastSeen: Int64?
            for (_, connection) in conns {
                let start = connection.starts.min()
                let disconnect = connection.disconnects.max()
                let gateway = connection.connectGateways.min { $0.0 < $1.0 }?.1 ?? connection.disconnectGateway ?? ""
                var end = disconnect
                if let start {
                    // Rule 2: the earliest gateway_down at or after the start, if earlier than the disconnect.
                    if let down = (downs[gateway] ?? []).filter({ $0 >= start }).min(), end.map({ down < $0 }) ?? true {
                        end = down
                    }
                }
                if let end {
                    let seen = max(start ?? end, end)
                    lastSeen = max(lastSeen ?? seen, seen)
                } else {
                    open += 1
                }
            }
            result.append(.init(user: user, online: open > 0, lastSeen: lastSeen, connections: open))
        }
        return result.sorted { Array($0.user.utf8).lexicographicallyPrecedes(Array($1.user.utf8)) }
    }
}
