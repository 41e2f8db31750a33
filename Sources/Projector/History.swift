import Presence
import SegmentLog

/// One user's sessions, as the rules define them (`ConnectionRules`): what `presence history` lists.
///
/// A plain fold of its own over the user's events and every `gateway_down`, independent of the
/// projection's tables but deciding as it does: events older than the late-arrival horizon are refused
/// in log order, and a key whose sessions all ended before the horizon is forgotten when its id comes
/// again (`PresenceProjection`), so that for every time T, `state --at T` says a user is online exactly
/// when one of the sessions listed here covers T.
public enum History {
    public struct Session: Equatable, Sendable {
        public var conn: String
        /// The gateway its connect named (for a session of unknown start, its disconnect's).
        public var gateway: String
        /// nil for a session whose start is unknown: a disconnect with no session before it (rule 2).
        public var start: Int64?
        /// nil while open.
        public var end: Int64?
        public var reason: ConnectionRules.EndReason?
        /// end - start, when both are known.
        public var duration: Int64? {
            guard let start, let end else { return nil }
            return end - start
        }

        /// Whether the user was online in this session at `time` (rule 4: start <= time < end).
        public func covers(_ time: Int64) -> Bool {
            guard let start, start <= time else { return false }
            return end.map { time < $0 } ?? true
        }
    }

    /// The sessions of `user` in the log at `logDirectory`, in order of start (a session of unknown start
    /// at its end), that overlap [`from`, `to`] (either bound optional). `horizon`: the log's
    /// late-arrival horizon (`StoredHorizon`). Reads the whole log: every event decides which are refused,
    /// and every gateway_down may end a session.
    public static func sessions(logDirectory: String, user: String, horizon: Int64 = defaultLateArrivalHorizon,
                                from: Int64? = nil, to: Int64? = nil) throws -> [Session] {
        var fold = Fold(horizon: horizon)
        let reader = try LogReader(directory: logDirectory)
        let userBytes = Array(user.utf8)
        try reader.forEachRecord { record in
            guard let value = record.value else { return true }
            // The refusal test sees every record, in log order, as the projection's does.
            if fold.newest != Int64.min && record.timestamp < fold.newest &- horizon { return true }
            defer { fold.newest = max(fold.newest, record.timestamp) }
            if let key = record.key {
                guard key.elementsEqual(userBytes) else { return true }
            } else if (value.first ?? 0) & 0x0F != EventKind.gatewayDown.rawValue {
                return true  // a heartbeat (a gateway event's value starts with its flags: `EventCodec`)
            }
            let event: PresenceEvent
            do throws(EventCodec.DecodeError) {
                event = try EventCodec.decode(key: record.key, value: value, timestamp: record.timestamp)
            } catch {
                throw LogError(.corrupt, "\(logDirectory): record at offset \(record.offset): \(error.description)")
            }
            fold.apply(event)
            return true
        }
        var sessions = fold.sessions()
        sessions.removeAll { session in
            if let to, (session.start ?? session.end ?? 0) > to { return true }
            if let from, let end = session.end, end < from { return true }
            return false
        }
        return sessions
    }

    /// The fold: one user's keys and every gateway's gateway_downs.
    struct Fold {
        let horizon: Int64
        /// The newest event time applied (refusals and forgetting are decided against it).
        var newest = Int64.min
        var gatewayNames: [String] = []
        var gatewayIndex: [String: Int32] = [:]
        /// gateway_down times by gateway, ascending.
        var downs: [[Int64]] = []
        /// By conn: its generations (events since the key was last forgotten), the last one current.
        var keys: [String: [[ConnectionRules.KeyEvent]]] = [:]

        init(horizon: Int64) { self.horizon = horizon }

        mutating func intern(_ gateway: String) -> Int32 {
            if let g = gatewayIndex[gateway] { return g }
            let g = Int32(gatewayNames.count)
            gatewayNames.append(gateway)
            gatewayIndex[gateway] = g
            downs.append([])
            return g
        }

        func precedes(_ a: ConnectionRules.KeyEvent, _ b: ConnectionRules.KeyEvent) -> Bool? {
            ConnectionRules.precedes(a, b) { Array(gatewayNames[Int($0)].utf8).lexicographicallyPrecedes(Array(gatewayNames[Int($1)].utf8)) }
        }

        mutating func apply(_ event: PresenceEvent) {
            let g = intern(event.gateway)
            switch event.kind {
            case .gatewayDown:
                let at = downs[Int(g)].firstIndex { $0 >= event.timestamp } ?? downs[Int(g)].count
                if at == downs[Int(g)].count || downs[Int(g)][at] != event.timestamp { downs[Int(g)].insert(event.timestamp, at: at) }
            case .connect, .disconnect:
                let keyEvent = ConnectionRules.KeyEvent(timestamp: event.timestamp, gateway: g, isConnect: event.kind == .connect)
                // Taken out of the dictionary, so that the arrays are changed in place, not copied.
                var generations = keys.removeValue(forKey: event.conn) ?? [[]]
                if let current = generations.last, !current.isEmpty, isForgotten(current, newest: max(newest, event.timestamp)) {
                    generations.append([])
                }
                var current = generations.removeLast()
                var at = current.count
                while at > 0 && precedes(keyEvent, current[at - 1]) == true { at -= 1 }
                if at > 0, precedes(current[at - 1], keyEvent) == nil {
                    // The same event again. Of two disconnects at one time, the one shown keeps the
                    // first gateway by name, whatever their order.
                    if !keyEvent.isConnect && precedes(.init(timestamp: 0, gateway: g, isConnect: true),
                                                      .init(timestamp: 0, gateway: current[at - 1].gateway, isConnect: true)) == true {
                        current[at - 1].gateway = g
                    }
                } else {
                    current.insert(keyEvent, at: at)
                }
                generations.append(current)
                keys[event.conn] = generations
            case .heartbeat:
                break
            }
        }

        /// Whether a key with these events is forgotten when an event makes `newest` the newest time: no
        /// open session, and every end and event before the horizon (as `PresenceProjection` decides it,
        /// with the gateway_downs applied so far).
        func isForgotten(_ events: [ConnectionRules.KeyEvent], newest: Int64) -> Bool {
            guard newest >= Int64.min + horizon else { return false }
            let forgetBefore = newest - horizon
            guard let last = events.last?.timestamp, last < forgetBefore else { return false }  // events are in order: the last is the newest
            var state = ConnectionRules.Sessions()
            _ = run(events, &state) { _, _ in }
            return !state.isOpen && state.lastEnd < forgetBefore
        }

        /// Takes `state` through `events` and the gateway_downs between and after them, calling `ended`
        /// with each session that ends (and the event that ended it, if any).
        @discardableResult
        func run(_ events: [ConnectionRules.KeyEvent], _ state: inout ConnectionRules.Sessions,
                 ended: (ConnectionRules.EndedSession, ConnectionRules.KeyEvent?) -> Void) -> ConnectionRules.Sessions {
            func settle(before time: Int64) {
                guard state.isOpen else { return }
                let gatewayDowns = downs[Int(state.gateway)]
                if let session = gatewayDowns.withUnsafeBufferPointer({ state.settle(before: time, downs: $0) }) { ended(session, nil) }
            }
            for event in events {
                settle(before: event.timestamp)
                if let session = state.apply(event) { ended(session, event) }
            }
            settle(before: .max)
            return state
        }

        /// Every session of every key, in order of start (or end, when the start is unknown), then conn.
        func sessions() -> [Session] {
            var result: [Session] = []
            for (conn, generations) in keys {
                for events in generations {
                    var state = ConnectionRules.Sessions()
                    run(events, &state) { session, event in
                        let gateway = session.gateway >= 0 ? session.gateway : (event?.gateway ?? -1)
                        result.append(Session(conn: conn, gateway: gateway >= 0 ? gatewayNames[Int(gateway)] : "",
                                              start: session.start, end: session.end, reason: session.reason))
                    }
                    if state.isOpen {
                        result.append(Session(conn: conn, gateway: gatewayNames[Int(state.gateway)], start: state.start, end: nil, reason: nil))
                    }
                }
            }
            return result.sorted { a, b in
                let (x, y) = (a.start ?? a.end ?? 0, b.start ?? b.end ?? 0)
                if x != y { return x < y }
                if a.conn != b.conn { return Array(a.conn.utf8).lexicographicallyPrecedes(Array(b.conn.utf8)) }
                return (a.end ?? .max) < (b.end ?? .max)
            }
        }
    }
}
