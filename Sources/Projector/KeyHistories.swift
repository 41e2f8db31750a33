/// The events of a connection key that has more than one session, or may have (its id was reused, or
/// its events came in an order a single session cannot hold): the rules (`ConnectionRules`) need them
/// to place a late event among them.
///
/// Nearly every key has one connect and at most one disconnect no earlier than it; its record holds
/// those two times and nothing else (`ProjectionState.Connection`). Any other event makes the key a
/// *history*: its record is flagged (`reusedKey` in `reason`), its `disconnect` field holds the
/// history's index, and the history holds the key's events in the rules' order, without repeats,
/// since `base`: the state after the events older than the late-arrival horizon, which no event that
/// can still be applied can precede, folded away by `trim`. `tail` is the state after every event,
/// before the gateway_downs that follow the last one; an event that sorts last (the usual case) is
/// applied to it directly, one that sorts earlier is inserted and the events replayed from `base`.
struct KeyHistory {
    var base = ConnectionRules.Sessions()
    var tail = ConnectionRules.Sessions()
    /// The key's latest end with every gateway_down applied (what it gives its user's last_seen), or `none`.
    var lastEnd = ProjectionState.none
    /// The key's newest event time, folded events included.
    var lastEventTime: Int64
    /// Events kept by the last trim: the next one waits until there are twice as many.
    var keptAtTrim: Int32 = 0
    /// Disconnects keep gateway -1: the rules ignore a disconnect's gateway.
    var events: [ConnectionRules.KeyEvent]
}

extension ProjectionState {
    /// Set in `Connection.reason` for a key kept as a `KeyHistory`.
    static let reusedKey: UInt8 = 0x80

    /// A key's events as the rules order them (`ConnectionRules.precedes`); nil for the same event.
    @inline(__always)
    func precedes(_ a: ConnectionRules.KeyEvent, _ b: ConnectionRules.KeyEvent) -> Bool? {
        ConnectionRules.precedes(a, b) { gateways.bytes(Int($0)).lexicographicallyPrecedes(gateways.bytes(Int($1))) }
    }

    /// `body` with the gateway_down times of gateway `g` (none for -1).
    @inline(__always)
    func withDowns<T>(of g: Int32, _ body: (UnsafeBufferPointer<Int64>) -> T) -> T {
        guard g >= 0, !gatewayDowns[Int(g)].isEmpty else { return body(UnsafeBufferPointer(start: nil, count: 0)) }
        return gatewayDowns[Int(g)].withUnsafeBufferPointer(body)
    }

    /// `sessions` taken through `events` in order, with the gateway_downs before each.
    func run(_ sessions: ConnectionRules.Sessions, through events: ArraySlice<ConnectionRules.KeyEvent>) -> ConnectionRules.Sessions {
        var state = sessions
        for event in events {
            if state.isOpen { _ = withDowns(of: state.gateway) { state.settle(before: event.timestamp, downs: $0) } }
            state.apply(event)
        }
        return state
    }

    /// `tail` with every later gateway_down applied: the key's state now.
    func current(_ history: KeyHistory) -> ConnectionRules.Sessions {
        var state = history.tail
        if state.isOpen { _ = withDowns(of: state.gateway) { state.settle(before: .max, downs: $0) } }
        return state
    }

    /// Makes simple key `c` a history holding its events and `event` (which is neither a repeat nor
    /// one a simple record can take), then applies the rules to it.
    mutating func promote(_ c: Int, adding event: ConnectionRules.KeyEvent) {
        let record = connections[c]
        let wasOpen = isOpen(record), before = contribution(record)
        var events: [ConnectionRules.KeyEvent] = []
        events.reserveCapacity(4)
        if record.start != Self.noStart { events.append(.init(timestamp: record.start, gateway: record.gateway, isConnect: true)) }
        if record.disconnect != Self.none { events.append(.init(timestamp: record.disconnect, gateway: -1, isConnect: false)) }
        let at = events.firstIndex { precedes(event, $0) ?? false } ?? events.count
        events.insert(event, at: at)
        let last = events.map(\.timestamp).max() ?? event.timestamp
        let history = KeyHistory(lastEventTime: last, events: events)
        let h: Int
        if let free = freeHistories.popLast() {
            h = Int(free)
            histories[h] = history
        } else {
            h = histories.count
            histories.append(history)
        }
        connections[c].disconnect = Int64(h)
        histories[h].tail = run(histories[h].base, through: histories[h].events[...])
        updateFromHistory(c, wasOpen: wasOpen, before: before)
    }

    /// Applies a connect or disconnect to the history of key `c`; false when it was a repeat.
    mutating func applyToHistory(_ c: Int, _ event: ConnectionRules.KeyEvent) -> Bool {
        let record = connections[c]
        let h = Int(record.disconnect)
        let wasOpen = isOpen(record), before = contribution(record)
        let count = histories[h].events.count
        if count == 0 || precedes(histories[h].events[count - 1], event) == true {
            // The usual case: the event comes after every other; the state after them goes on.
            var tail = histories[h].tail
            if tail.isOpen { _ = withDowns(of: tail.gateway) { tail.settle(before: event.timestamp, downs: $0) } }
            tail.apply(event)
            histories[h].tail = tail
            histories[h].events.append(event)
        } else {
            // A late event: placed among the others (a repeat changes nothing), then the events replayed.
            var low = 0, high = count
            while low < high {
                let mid = (low + high) >> 1
                if precedes(histories[h].events[mid], event) == true { low = mid + 1 } else { high = mid }
            }
            if low < count && precedes(histories[h].events[low], event) == nil { return false }
            histories[h].events.insert(event, at: low)
            histories[h].tail = run(histories[h].base, through: histories[h].events[...])
        }
        histories[h].lastEventTime = max(histories[h].lastEventTime, event.timestamp)
        let kept = histories[h].events.count
        if kept >= 16 && kept >= 2 * Int(histories[h].keptAtTrim) && histories[h].events[0].timestamp < forgetBefore {
            trim(h, before: forgetBefore)
        }
        updateFromHistory(c, wasOpen: wasOpen, before: before)
        return true
    }

    /// Replays history `h`'s events from its base (after a gateway_down that may end one of them).
    mutating func rederive(_ h: Int) {
        histories[h].tail = run(histories[h].base, through: histories[h].events[...])
    }

    /// Folds history `h`'s events before `cut` into its base. Sound because no event before the
    /// horizon can be applied any more (`forgetBefore` only grows), so none can come before them.
    mutating func trim(_ h: Int, before cut: Int64) {
        let events = histories[h].events
        var folded = 0
        while folded < events.count && events[folded].timestamp < cut { folded += 1 }
        guard folded > 0 else { return }
        histories[h].base = run(histories[h].base, through: events[..<folded])
        histories[h].events.removeFirst(folded)
        histories[h].keptAtTrim = Int32(histories[h].events.count)
    }

    /// Writes key `c`'s state from its history into its record and carries the change to its user.
    mutating func updateFromHistory(_ c: Int, wasOpen: Bool, before: Int64) {
        let h = Int(connections[c].disconnect)
        let state = current(histories[h])
        histories[h].lastEnd = state.lastEnd == ConnectionRules.Sessions.noTime ? Self.none : state.lastEnd
        connections[c].start = state.isOpen ? state.start : Self.noStart
        connections[c].end = state.isOpen ? Self.none : histories[h].lastEnd
        connections[c].reason = Self.reusedKey | state.lastReason
        if state.gateway >= 0 { connections[c].gateway = state.gateway }
        carryOver(c, wasOpen: wasOpen, before: before)
    }

    /// Gives history `h` back for reuse.
    mutating func freeHistory(_ h: Int) {
        histories[h] = KeyHistory(lastEventTime: Self.none, events: [])
        freeHistories.append(Int32(h))
    }

    /// Sessions and sessions of unknown start of key `c` (for the audit).
    func sessionCounts(_ c: Int) -> (sessions: Int, unknownStarts: Int) {
        let record = connections[c]
        if record.reason & Self.reusedKey != 0 {
            let state = current(histories[Int(record.disconnect)])
            return (Int(state.count), Int(state.unknownStarts))
        }
        return (1, record.start == Self.noStart ? 1 : 0)
    }
}
