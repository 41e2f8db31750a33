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
/// before the gateway_downs that follow the last one. An event that sorts last (the usual case) is
/// applied to `tail` directly; one that sorts earlier is inserted and the events from the snapshot
/// before it run again: every `snapshotInterval` events the history keeps the state reached there, so
/// a late event costs the events after it, not the whole horizon's (a busy device has hundreds of
/// thousands of sessions a day).
///
/// A plain value in `ProjectionState.histories`, its first 64 bytes what an event in order touches.
/// Its events lie in a block of `historyEvents` (`[first ..< first + count]`, room for `capacity`),
/// its snapshots in a block of `historySnapshots`; a full block is traded for one twice as large.
struct KeyHistory {
    var tail = ConnectionRules.Sessions()
    /// The key's last event in the rules' order (folded ones included): whether the next one comes after
    /// it is decided here, without reading the events.
    var last: ConnectionRules.KeyEvent
    var first = 0
    var count: Int32 = 0
    var capacity: Int32 = 0
    var base = ConnectionRules.Sessions()
    /// The key's latest end with every gateway_down applied (what it gives its user's last_seen), or `none`.
    var lastEnd = ProjectionState.none
    /// Snapshot j (from 1) is the state after the first j × `snapshotInterval` events, at
    /// `historySnapshots[snapshots + j - 1]`, with room for `snapshotCapacity` (0: no block yet).
    var snapshots = 0
    var snapshotCapacity: Int32 = 0
    /// Events kept by the last trim: the next one waits until there are twice as many.
    var keptAtTrim: Int32 = 0
    /// To 128 bytes, so that every history's first 64 bytes are one cache line.
    private var padding: Int64 = 0

    init(last: ConnectionRules.KeyEvent) { self.last = last }

    /// The key's newest event time.
    var lastEventTime: Int64 { last.timestamp }

    /// Its fields' offsets, for the checkpoint's layout fingerprint (`Checkpoint.layoutDescription`).
    static var fieldOffsets: [Int?] {
        [\KeyHistory.tail, \KeyHistory.last, \KeyHistory.first, \KeyHistory.count, \KeyHistory.capacity, \KeyHistory.base,
         \KeyHistory.lastEnd, \KeyHistory.snapshots, \KeyHistory.snapshotCapacity, \KeyHistory.keptAtTrim].map(MemoryLayout<KeyHistory>.offset(of:))
            + [MemoryLayout<KeyHistory>.offset(of: \KeyHistory.padding)]
    }
}

extension ProjectionState {
    /// Set in `Connection.reason` for a key kept as a `KeyHistory`.
    static let reusedKey: UInt8 = 0x80
    /// Events between two snapshots of a history's state.
    static let snapshotInterval = 64

    /// A key's events as the rules order them (`ConnectionRules.precedes`); nil for the same event.
    @inline(__always)
    func precedes(_ a: ConnectionRules.KeyEvent, _ b: ConnectionRules.KeyEvent) -> Bool? {
        ConnectionRules.precedes(a, b, gatewayPrecedes: gatewayNamePrecedes)
    }

    /// Whether gateway `a`'s name sorts before gateway `b`'s (bytes, lexicographically).
    @inline(never)
    func gatewayNamePrecedes(_ a: Int32, _ b: Int32) -> Bool {
        gateways.bytes(Int(a)).lexicographicallyPrecedes(gateways.bytes(Int(b)))
    }

    /// `body` with the gateway_down times of gateway `g` (none for -1).
    @inline(__always)
    func withDowns<T>(of g: Int32, _ body: (UnsafeBufferPointer<Int64>) -> T) -> T {
        guard g >= 0, !gatewayDowns[Int(g)].isEmpty else { return body(UnsafeBufferPointer(start: nil, count: 0)) }
        return gatewayDowns[Int(g)].withUnsafeBufferPointer(body)
    }

    /// The events of history `h`.
    @inline(__always)
    func events(of h: Int) -> UnsafeMutableBufferPointer<ConnectionRules.KeyEvent> {
        historyEvents.block(histories[h].first, count: Int(histories[h].count))
    }

    /// `state` taken through `event`, with the gateway_downs before it.
    @inline(__always)
    func step(_ state: inout ConnectionRules.Sessions, _ event: ConnectionRules.KeyEvent) {
        if state.isOpen { _ = withDowns(of: state.gateway) { state.settle(before: event.timestamp, downs: $0) } }
        state.apply(event)
    }

    /// History `h`'s state now: `tail` with every later gateway_down applied.
    @inline(__always)
    func current(_ h: Int) -> ConnectionRules.Sessions {
        var state = histories[h].tail
        if state.isOpen { _ = withDowns(of: state.gateway) { state.settle(before: .max, downs: $0) } }
        return state
    }

    /// Makes simple key `c` a history holding its events and `event` (which is neither a repeat nor
    /// one a simple record can take), then applies the rules to it.
    mutating func promote(_ c: Int, adding event: ConnectionRules.KeyEvent) {
        let record = connections[c]
        let wasOpen = isOpen(record), before = contribution(record)
        var history = KeyHistory(last: event)
        history.capacity = Int32(historyEvents.smallest)
        history.first = historyEvents.allocate(historyEvents.smallest)
        let h: Int
        if let free = freeHistories.popLast() {
            h = Int(free)
            histories[h] = history
        } else {
            h = histories.count
            histories.append(history)
        }
        if record.start != Self.noStart { appendEvent(.init(timestamp: record.start, gateway: record.gateway, isConnect: true), to: h) }
        if record.disconnect != Self.none { appendEvent(.init(timestamp: record.disconnect, gateway: -1, isConnect: false), to: h) }
        connections[c].disconnect = Int64(h)
        insertEvent(event, into: h)
        histories[h].last = historyEvents.storage[histories[h].first + Int(histories[h].count) - 1]
        replay(h, from: 0)
        updateFromHistory(c, wasOpen: wasOpen, before: before)
    }

    /// Applies a connect or disconnect to the history of key `c`; false when it was a repeat.
    mutating func applyToHistory(_ c: Int, _ event: ConnectionRules.KeyEvent) -> Bool {
        let record = connections[c]
        let h = Int(record.disconnect)
        let wasOpen = isOpen(record), before = contribution(record)
        if precedes(histories[h].last, event) == true {
            // The usual case: the event comes after every other; the state after them goes on.
            let position = Int(histories[h].count)
            if position > 0 && position % Self.snapshotInterval == 0 { storeSnapshot(histories[h].tail, of: h, at: position / Self.snapshotInterval) }
            var tail = histories[h].tail
            step(&tail, event)
            histories[h].tail = tail
            histories[h].last = event
            appendEvent(event, to: h)
        } else {
            // A late event: placed among the others (a repeat changes nothing), then the events after the
            // snapshot before it run again.
            guard let position = insertEvent(event, into: h) else { return false }
            replay(h, from: position)
        }
        // Whether the oldest events can be folded away is looked at each time the events have doubled
        // since it was last (amortized O(1); a key's events stay within twice the horizon's worth).
        let history = histories[h]
        if history.count >= 16 && history.count >= 2 &* history.keptAtTrim { trim(h, before: forgetBefore) }
        updateFromHistory(c, wasOpen: wasOpen, before: before)
        return true
    }

    /// Appends `event` to history `h`'s events, trading their block for one twice as large when full.
    @inline(__always)
    mutating func appendEvent(_ event: ConnectionRules.KeyEvent, to h: Int) {
        if histories[h].count == histories[h].capacity { growEvents(of: h) }
        historyEvents.storage[histories[h].first + Int(histories[h].count)] = event
        histories[h].count += 1
    }

    /// Places `event` among history `h`'s events in the rules' order and returns its position; nil when
    /// it is already there.
    @discardableResult
    mutating func insertEvent(_ event: ConnectionRules.KeyEvent, into h: Int) -> Int? {
        var low = 0, high = Int(histories[h].count)
        let existing = events(of: h)
        while low < high {
            let mid = (low + high) >> 1
            if precedes(existing[mid], event) == true { low = mid + 1 } else { high = mid }
        }
        if low < existing.count && precedes(existing[low], event) == nil { return nil }
        if histories[h].count == histories[h].capacity { growEvents(of: h) }
        let moved = events(of: h)
        if let base = moved.baseAddress {
            (base + low + 1).update(from: base + low, count: moved.count - low)  // overlapping: update moves backwards
            base[low] = event
        }
        histories[h].count += 1
        return low
    }

    /// Moves history `h`'s events to a block twice as large.
    private mutating func growEvents(of h: Int) {
        let old = histories[h]
        let capacity = Int(old.capacity) * 2
        let first = historyEvents.allocate(capacity)
        historyEvents.block(first, count: Int(old.count)).baseAddress?.update(from: historyEvents.storage.pointer + old.first, count: Int(old.count))
        historyEvents.release(old.first, Int(old.capacity))
        histories[h].first = first
        histories[h].capacity = Int32(capacity)
    }

    /// Keeps `state` as history `h`'s snapshot `j` (from 1), growing its block when needed.
    private mutating func storeSnapshot(_ state: ConnectionRules.Sessions, of h: Int, at j: Int) {
        let old = histories[h]
        if j > Int(old.snapshotCapacity) {
            let capacity = max(historySnapshots.smallest, Int(old.snapshotCapacity) * 2)
            let first = historySnapshots.allocate(capacity)
            if old.snapshotCapacity > 0 {
                historySnapshots.block(first, count: j - 1).baseAddress?.update(from: historySnapshots.storage.pointer + old.snapshots, count: j - 1)
                historySnapshots.release(old.snapshots, Int(old.snapshotCapacity))
            }
            histories[h].snapshots = first
            histories[h].snapshotCapacity = Int32(capacity)
        }
        historySnapshots.storage[histories[h].snapshots + j - 1] = state
    }

    /// Runs history `h`'s events from the snapshot at or before `position` to the end, keeping the
    /// snapshots it passes and the state after the last event as `tail`.
    mutating func replay(_ h: Int, from position: Int) {
        let interval = Self.snapshotInterval
        let j = min(position / interval, Int(histories[h].snapshotCapacity))
        var state = j == 0 ? histories[h].base : historySnapshots.storage[histories[h].snapshots + j - 1]
        let count = Int(histories[h].count)
        var index = j * interval
        while index < count {
            if index > j * interval && index % interval == 0 { storeSnapshot(state, of: h, at: index / interval) }
            step(&state, historyEvents.storage[histories[h].first + index])
            index += 1
        }
        histories[h].tail = state
    }

    /// Folds history `h`'s events before `cut` into its base. Sound because no event before the
    /// horizon can be applied any more (`forgetBefore` only grows), so none can come before them.
    mutating func trim(_ h: Int, before cut: Int64) {
        let events = events(of: h)
        var folded = 0
        while folded < events.count && events[folded].timestamp < cut { folded += 1 }
        if folded > 0, let start = events.baseAddress {
            var base = histories[h].base
            for event in events[..<folded] { step(&base, event) }
            histories[h].base = base
            start.update(from: start + folded, count: events.count - folded)
            histories[h].count -= Int32(folded)
            replay(h, from: 0)  // the snapshots counted from the old first event
        }
        histories[h].keptAtTrim = histories[h].count
    }

    /// Writes key `c`'s state from its history into its record and carries the change to its user.
    mutating func updateFromHistory(_ c: Int, wasOpen: Bool, before: Int64) {
        let h = Int(connections[c].disconnect)
        let state = current(h)
        let lastEnd = state.lastEnd == ConnectionRules.Sessions.noTime ? Self.none : state.lastEnd
        histories[h].lastEnd = lastEnd
        connections[c].start = state.isOpen ? state.start : Self.noStart
        connections[c].end = state.isOpen ? Self.none : lastEnd
        connections[c].reason = Self.reusedKey | state.lastReason
        if state.gateway >= 0 { connections[c].gateway = state.gateway }
        carryOver(c, wasOpen: wasOpen, before: before)
    }

    /// Gives history `h` and its blocks back for reuse.
    mutating func freeHistory(_ h: Int) {
        historyEvents.release(histories[h].first, Int(histories[h].capacity))
        if histories[h].snapshotCapacity > 0 { historySnapshots.release(histories[h].snapshots, Int(histories[h].snapshotCapacity)) }
        histories[h] = KeyHistory(last: .init(timestamp: Self.none, gateway: -1, isConnect: false))
        freeHistories.append(Int32(h))
    }

    /// Sessions and sessions of unknown start of key `c` (for the audit).
    func sessionCounts(_ c: Int) -> (sessions: Int, unknownStarts: Int) {
        let record = connections[c]
        if record.reason & Self.reusedKey != 0 {
            let state = current(Int(record.disconnect))
            return (Int(state.count), Int(state.unknownStarts))
        }
        return (1, record.start == Self.noStart ? 1 : 0)
    }

    /// Checks a loaded checkpoint's histories: their blocks inside the arenas, their gateways inside the
    /// table.
    func validateHistories() throws(PresenceProjection.ApplyError) {
        let gatewayCount = Int32(gateways.count)
        for free in freeHistories where free < 0 || Int(free) >= histories.count {
            throw .init(description: "free key history \(free) is outside the table")
        }
        let free = Set(freeHistories)
        for h in 0..<histories.count where !free.contains(Int32(h)) {
            let history = histories[h]
            let snapshotsNeeded = history.count == 0 ? 0 : (Int(history.count) - 1) / Self.snapshotInterval
            guard history.count >= 0, history.count <= history.capacity, historyEvents.isValidBlock(history.first, Int(history.capacity)),
                  history.snapshotCapacity == 0 || historySnapshots.isValidBlock(history.snapshots, Int(history.snapshotCapacity)),
                  Int(history.snapshotCapacity) >= snapshotsNeeded,
                  history.base.isValid, history.tail.isValid, history.base.gateway < gatewayCount, history.tail.gateway < gatewayCount
            else { throw .init(description: "key history \(h) points outside the tables") }
            for event in events(of: h) + [history.last] where event.kind < 1 || event.kind > 2 || event.gateway >= gatewayCount || event.gateway < (event.isConnect ? 0 : -1) {
                throw .init(description: "key history \(h) holds an event that names no gateway")
            }
        }
    }
}
