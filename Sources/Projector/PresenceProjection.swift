import CPrefetch
import Presence
import SegmentLog

/// The current presence state folded from the log: who is online, with how many connections, and
/// when each user was last seen. It applies `ConnectionRules`, event by event, in any order.
///
/// Built for speed and size. Users and connections are records in flat arrays, found through
/// open-addressing tables of tagged slots (`slot = hash tag << 32 | index + 1`) and keyed by their
/// bytes in an arena, so applying an event allocates nothing and reads no clock. A batch of records
/// is applied in passes so that its table lookups overlap in memory instead of waiting one by one:
/// hash every event and prefetch its slot, probe the slots and prefetch the records, prefetch the
/// keys and users, then apply the events in order.
///
/// Not thread-safe: one owner applies events and answers queries.
public final class PresenceProjection {
    /// One user's presence.
    public struct UserState: Equatable, Sendable {
        public var user: String
        public var online: Bool
        /// ms since the epoch; nil when the user has no closed connection.
        public var lastSeen: Int64?
        /// Open connections.
        public var connections: Int

        public init(user: String, online: Bool, lastSeen: Int64?, connections: Int) {
            self.user = user
            self.online = online
            self.lastSeen = lastSeen
            self.connections = connections
        }

        /// Appends `"online":..,"last_seen":..,"connections":..` (last_seen in UTC ISO-8601 or null), the
        /// fields every JSON answer about a user's presence shares.
        public func appendJSONFields(to out: inout [UInt8]) {
            out.append(contentsOf: "\"online\":\(online),\"last_seen\":".utf8)
            Timestamp.appendJSON(lastSeen, to: &out)
            out.append(contentsOf: ",\"connections\":\(connections)".utf8)
        }
    }

    /// Why a record could not be applied.
    public struct ApplyError: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    var state = ProjectionState()

    /// A projection that refuses events older than its newest event time minus `horizon` (ms), as
    /// ingest does; it must be the horizon the log was written with.
    public init(horizon: Int64 = defaultLateArrivalHorizon) {
        state.horizon = horizon
    }

    /// The late-arrival horizon, ms.
    public var horizon: Int64 { state.horizon }
    /// Events not applied because they were older than the newest event time minus the horizon.
    public var refusedEvents: Int { state.refusedEvents }

    /// Events applied.
    public var eventsApplied: Int { state.eventsApplied }
    /// The offset after the last record applied (the log offset this state reflects).
    public var nextOffset: Int64 { state.nextOffset }
    /// The newest event time applied.
    public var maxTimestamp: Int64 { state.maxTimestamp }
    /// Users with at least one open connection.
    public var onlineUsers: Int { state.onlineUsers }
    /// Users seen.
    public var userCount: Int { state.users.count }
    /// Connections remembered (open, and closed within the horizon or not yet swept).
    public var connectionCount: Int { state.connections.count }
    /// Closed connections older than the horizon removed from memory since this projection was built
    /// or loaded.
    public var forgottenConnectionCount: Int { state.forgottenConnections }
    /// Connections now open.
    public var openConnectionCount: Int { state.openConnections }
    /// Bytes held for users (records, slots, ids), and for connections.
    public var memoryBytes: (users: Int, connections: Int) { state.memoryBytes }

    /// Whether large tables have their fresh pages faulted in on a background thread ahead of use
    /// (`FlatStorage`); on by default, for the whole process. A process that must keep to one core
    /// (`presence replay --single-thread`) turns it off before it builds a projection.
    public static var warmsPagesInBackground: Bool {
        get { PageWarmer.shared.enabled.load(ordering: .relaxed) }
        set { PageWarmer.shared.enabled.store(newValue, ordering: .relaxed) }
    }

    /// Sizes the connection slot table for `expected` connections at once (a replay that can foresee
    /// them skips the table's doublings, each of which places every connection again). Changes no state.
    public func reserveConnections(_ expected: Int) {
        state.reserveConnections(expected)
    }

    /// Removes every forgotten connection now (normally done as the tables grow). Changes no state.
    public func forgetOldConnections() {
        state.sweepForgotten()
    }

    /// Applies one log record.
    public func apply(_ record: RecordView) throws(ApplyError) {
        try withUnsafePointer(to: record) { pointer throws(ApplyError) in
            try state.apply(batch: UnsafeBufferPointer(start: pointer, count: 1))
        }
    }

    /// Applies the records of a batch, in order.
    public func apply(batch: UnsafeBufferPointer<RecordView>) throws(ApplyError) {
        try state.apply(batch: batch)
    }

    /// Applies a batch that `ProjectionState.prepare` decoded (on any thread).
    func apply(prepared: PreparedBatch) {
        state.apply(prepared: prepared)
    }

    /// Applies an event given as a value (tests, and callers that are not reading a log). Sweeps fall
    /// at offsets (`ProjectionState.sweepCheckInterval`), so events given without increasing offsets
    /// never sweep on their own: such a caller calls `forgetOldConnections()` itself.
    public func apply(_ event: PresenceEvent, offset: Int64? = nil) {
        var buffer = RecordBuffer()
        EventCodec.append(event, to: &buffer)
        let key = buffer.key(at: 0), value = buffer.value(at: 0)
        let recordOffset = offset ?? max(state.nextOffset - 1, 0)
        value.withUnsafeBytes { value in
            func apply(_ key: UnsafeRawBufferPointer?) {
                do {
                    try self.apply(RecordView(offset: recordOffset, timestamp: event.timestamp, key: key, value: value))
                } catch {
                    preconditionFailure("an event the codec just wrote does not apply: \(error)")
                }
            }
            if let key { key.withUnsafeBytes { apply($0) } } else { apply(nil) }
        }
    }

    /// The state of `user`, or nil if the log never mentioned them.
    public func state(of user: String) -> UserState? {
        let bytes = Array(user.utf8)
        return bytes.withUnsafeBytes { key in state.findUser(key, hash: ProjectionState.hash(key)).map(state.userState) }
    }

    /// Every user's state, sorted by user id (byte order).
    public func allStates() -> [UserState] {
        var order = Array(0..<state.users.count)
        order.sort { state.userKey($0).lexicographicallyPrecedes(state.userKey($1)) }
        return order.map(state.userState)
    }

    /// The gateways seen, with their last heartbeat time (nil if none).
    public func gatewayHeartbeats() -> [(gateway: String, lastHeartbeat: Int64?)] {
        (0..<state.gateways.count).map { g in
            let beat = state.gatewayHeartbeat[g]
            return (String(decoding: state.gateways.bytes(g), as: UTF8.self), beat == ProjectionState.none ? nil : beat)
        }
    }

    /// The connections left open on `gateway`, and the newest event time the log holds from it (its
    /// heartbeats, and the connects and disconnects of the connections it opened): what a node ends
    /// with a `gateway_down` when it starts again after dying. Scans every connection: for start-up.
    public func openConnections(onGateway gateway: String) -> (open: Int, lastActivity: Int64?) {
        let name = Array(gateway.utf8)
        let found = name.withUnsafeBytes { name in
            let empty = UnsafeRawBufferPointer(start: name.baseAddress, count: 0)
            return state.gateways.find(name, empty, hash: ByteTable.hash(name, empty))
        }
        guard let g = found else { return (0, nil) }
        var open = 0
        var last = state.gatewayHeartbeat[g]
        for c in 0..<state.connections.count where state.connections[c].gateway == Int32(g) {
            let connection = state.connections[c]
            if state.isOpen(connection) { open += 1 }
            if connection.reason & ProjectionState.reusedKey != 0 {
                last = max(last, state.histories[Int(connection.disconnect)].lastEventTime)
                continue
            }
            if connection.start != ProjectionState.noStart { last = max(last, connection.start) }
            last = max(last, connection.disconnect)
        }
        return (open, last == ProjectionState.none ? nil : last)
    }

    /// The gateways whose lease has run out: they have sent heartbeats, the newest is more than `lease`
    /// ms older than `now`, and no `gateway_down` at or after it is in the log yet. Each should get a
    /// `gateway_down` at its last heartbeat time (rule 2 then ends the connections it held).
    public func expiredLeases(lease: Int64, now: Int64) -> [(gateway: String, lastHeartbeat: Int64)] {
        var expired: [(gateway: String, lastHeartbeat: Int64)] = []
        for g in 0..<state.gateways.count {
            let beat = state.gatewayHeartbeat[g]
            guard beat != ProjectionState.none, now - beat > lease else { continue }
            if let down = state.gatewayDowns[g].last, down >= beat { continue }
            expired.append((String(decoding: state.gateways.bytes(g), as: UTF8.self), beat))
        }
        return expired
    }
}

/// The events of a batch, decoded and hashed, ready to apply (`ProjectionState.prepare`), with the
/// bytes they point to. Owned by one thread at a time.
final class PreparedBatch {
    var pending: [ProjectionState.Pending] = []
    /// User ids, connection identities and gateways of `pending`.
    let bytes = FlatStorage<UInt8>(capacity: 1 << 16)
    /// The offset after the batch's last record; nil for an empty batch.
    var endOffset: Int64?
}

/// The projection's data, as one value so that a batch is applied under one exclusive access.
struct ProjectionState {
    static let none = Int64.min
    static let noStart = Int64.max

    struct User {
        var hash: UInt64
        var lastSeen: Int64 = ProjectionState.none
        var keyOffset: UInt32
        var open: Int32 = 0
        var firstConnection: Int32 = -1
        var keyLength: UInt16
    }

    /// A connection key (user, conn): one 64-byte line, key included when it is short. The key is the
    /// user id followed by the connection identity (`EventCodec.View.writeConnIdentity`); up to
    /// `inlineKeyBytes` long it lies in `key`, zero-padded, so that finding a connection reads its slot
    /// and this line and nothing else; a longer one lies in `connectionArena`, at the offset in `key.0`.
    /// No hash is stored: a rehash computes it again from the key, split after its user id
    /// (`userLengthLessOne`).
    ///
    /// A *simple* key has at most one connect and at most one disconnect, no earlier than the connect:
    /// one session, whose times lie here. Any other key is a history (`reusedKey` set in `reason`,
    /// its events in `histories[disconnect]`, see `KeyHistory`); then `start` is the open session's
    /// start (`noStart` when none is open), `end` the key's latest end while none is open, `gateway` the
    /// gateway of its latest session.
    struct Connection {
        /// The connect's ts, or `noStart`.
        var start: Int64 = ProjectionState.noStart
        /// The disconnect's ts, or `none`; for a history, its index in `histories`.
        var disconnect: Int64 = ProjectionState.none
        /// The session's end, or `none` while open.
        var end: Int64 = ProjectionState.none
        var key: (UInt64, UInt64, UInt64)
        var user: Int32
        var gateway: Int32
        var nextOfUser: Int32
        var keyLength: UInt16
        /// `ConnectionRules.EndReason` of the end, or 0; with `reusedKey` set for a history.
        var reason: UInt8 = 0
        /// The user id's length in the key, less one (ids are 1 to 256 bytes).
        var userLengthLessOne: UInt8
    }

    /// Connection keys up to this long are kept in their record.
    static let inlineKeyBytes = 24

    /// One event of the batch being applied, decoded.
    struct Pending {
        var offset: Int64
        var timestamp: Int64
        /// The user id (the start of `key`; empty for gateway events).
        var user: UnsafeRawBufferPointer
        /// The connection's key: the user id, then the connection identity. The memory after it is
        /// zero up to `inlineKeyBytes` (and to a multiple of eight bytes), so that its words can be
        /// read whole.
        var key: UnsafeRawBufferPointer
        var gateway: UnsafeRawBufferPointer
        var hash: UInt64 = 0
        var userHash: UInt64 = 0
        var candidate: Int32 = -1
        var userCandidate: Int32 = -1
        /// When pass 2 found no candidate: the empty slot that ended the probe (where the connection
        /// goes if nothing has been placed there since), or -1.
        var emptySlot: Int32 = -1
        var kind: EventKind
    }

    var userSlots = FlatStorage<UInt64>(capacity: 1 << 12, count: 1 << 12)
    var users = FlatStorage<User>(capacity: 1 << 12)
    var userArena = FlatStorage<UInt8>(capacity: 1 << 16)
    /// 32-bit slots with as many index bits as the table has slots' bits (`Slots`).
    var connectionSlots = FlatStorage<UInt32>(capacity: 1 << 12, count: 1 << 12) {
        didSet { connectionSlotsEpoch &+= 1 }
    }
    /// The index bits of a connection slot: log2 of the table's size.
    var connectionIndexBits: Int { connectionSlots.count.trailingZeroBitCount }
    /// The index bits of a user slot (64-bit slots, 32-bit tags).
    static let userIndexBits = 32
    /// Changes whenever `connectionSlots` is replaced (growth, sweep): slots found before then are void.
    var connectionSlotsEpoch = 0
    var connections = FlatStorage<Connection>(capacity: 1 << 12)
    var connectionArena = FlatStorage<UInt8>(capacity: 1 << 16)
    var gateways = ByteTable(capacity: 64)
    /// Gateway names of up to 15 bytes seen lately, with their index (`gatewayIndex`): each entry is the
    /// name's two words (the length in the top byte of the second) and the index. Derived, not saved.
    let gatewayMemo = FlatStorage<UInt64>(capacity: 3 * 64, count: 3 * 64)
    /// Each gateway's gateway_down times, ascending, without repeats.
    var gatewayDowns: [[Int64]] = []
    /// Keys that are not simple (`KeyHistory`), by the index their record holds, and their events.
    var histories = FlatStorage<KeyHistory>(capacity: 1 << 10)
    var historyEvents = BlockArena<ConnectionRules.KeyEvent>(smallest: 4)
    var historySnapshots = BlockArena<ConnectionRules.Sessions>(smallest: 1)
    /// Indices of `histories` free for reuse.
    var freeHistories: [Int32] = []
    var gatewayHeartbeat: [Int64] = []
    /// Where `apply(batch:)` decodes a batch.
    let prepared = PreparedBatch()
    /// Anomaly counters, only while auditing.
    var audit: AuditTally?

    var eventsApplied = 0
    var refusedEvents = 0
    var horizon: Int64 = defaultLateArrivalHorizon
    var nextOffset: Int64 = 0
    var maxTimestamp = Int64.min
    var onlineUsers = 0
    var openConnections = 0
    /// Connections removed by sweeps (since this projection was built or loaded).
    var forgottenConnections = 0
    /// The connection count at which the next sweep runs.
    var nextSweep = ProjectionState.minimumSweep
    /// The offset at or past which the next event is preceded by a sweep check (`sweepCheckInterval`).
    var nextSweepCheck: Int64 = 0

    /// Bytes in use (untouched capacity costs no memory): slots, records and id bytes.
    var memoryBytes: (users: Int, connections: Int) {
        (userSlots.bytesInUse + users.bytesInUse + userArena.bytesInUse,
         connectionSlots.bytesInUse + connections.bytesInUse + connectionArena.bytesInUse
            + histories.bytesInUse + historyEvents.bytesInUse + historySnapshots.bytesInUse)
    }

    // MARK: Applying a batch

    mutating func apply(batch: UnsafeBufferPointer<RecordView>) throws(PresenceProjection.ApplyError) {
        try Self.prepare(batch, into: prepared, outlivingBatch: false)
        apply(prepared: prepared)
    }

    /// Decodes and hashes the records of `batch` into `prepared`, copying the bytes the fold needs
    /// (connection key, gateway), so that `prepared` outlives the batch's buffers. Reads no projection
    /// state: a replay prepares on one thread while another applies. Without `outlivingBatch`, the
    /// gateways stay where the batch holds them (the connection key, which no record holds whole, is
    /// always written out): for a caller that applies `prepared` before the batch's buffers go.
    static func prepare(_ batch: UnsafeBufferPointer<RecordView>, into prepared: PreparedBatch,
                        outlivingBatch: Bool = true) throws(PresenceProjection.ApplyError) {
        // Each record needs at most its key, its value twice (gateway, identity), two bytes and the
        // connection key's padding.
        var room = 0
        for record in batch { room += max(record.key?.count ?? 0, 0) + 2 * (record.value?.count ?? 0) + 2 + Self.inlineKeyBytes + 8 }
        // Filled as a local array (taken out of `prepared`, so still unique): appending to a class's
        // array property checks exclusive access at run time, for every record.
        var pending: [Pending] = []
        swap(&pending, &prepared.pending)
        defer { prepared.pending = pending }
        pending.removeAll(keepingCapacity: true)
        prepared.bytes.removeAll(reservingCapacity: room)
        prepared.endOffset = batch.last.map { $0.offset + 1 }
        let bytes = prepared.bytes
        for record in batch {
            guard let value = record.value else {
                throw PresenceProjection.ApplyError(description: "record at offset \(record.offset) has no value")
            }
            let view: EventCodec.View
            do throws(EventCodec.DecodeError) { view = try EventCodec.view(value) } catch {
                throw PresenceProjection.ApplyError(description: "record at offset \(record.offset): \(error.description)")
            }
            let gateway = !outlivingBatch ? view.gateway : bytes.append(upTo: view.gateway.count) { out in
                if let base = view.gateway.baseAddress { out.copyShort(from: base, count: view.gateway.count) }
                return view.gateway.count
            }
            let none = UnsafeRawBufferPointer(start: nil, count: 0)
            var item = Pending(offset: record.offset, timestamp: record.timestamp, user: none, key: none, gateway: gateway, kind: view.kind)
            if !view.kind.isGatewayEvent {
                guard let user = record.key, user.count > 0, let userBase = user.baseAddress else {
                    throw PresenceProjection.ApplyError(description: "record at offset \(record.offset) has no user id")
                }
                guard user.count <= PresenceEvent.Limits.fieldBytes else {
                    throw PresenceProjection.ApplyError(description: "record at offset \(record.offset) has a user id of \(user.count) bytes (at most \(PresenceEvent.Limits.fieldBytes))")
                }
                // Hashed from where its parts lie (the batch's buffer), never read back from `bytes`:
                // a load of bytes just stored in pieces waits for the stores (and in a replay reading
                // ahead, for lines the folding core read last).
                let userPrefix = ByteTable.prefix(user)
                item.userHash = Self.nonzero(ByteTable.finish(prefix: userPrefix))  // = Self.hash(user)
                item.hash = Self.connectionHash(userPrefix: userPrefix, relative: view.connIsRelative,
                                                connHex: view.connHex, storedConn: view.storedConn)
                let length = user.count + 2 + view.connHex.count + view.storedConn.count
                let padded = max(Self.inlineKeyBytes, (length + 7) & ~7)
                let copied = bytes.append(upTo: padded) { out in
                    // The words the key ends in zeroed first (the padding), then the key written over them.
                    var word = length & ~7
                    while word < padded { out.storeBytes(of: 0, toByteOffset: word, as: UInt64.self); word += 8 }
                    out.copyShort(from: userBase, count: user.count)
                    let written = view.writeConnIdentity(to: out + user.count)
                    assert(user.count + written == length, "identity of \(written) bytes, \(length - user.count) expected")
                    return padded
                }
                item.key = UnsafeRawBufferPointer(rebasing: copied[..<length])
                item.user = UnsafeRawBufferPointer(rebasing: copied[..<user.count])
            }
            pending.append(item)
        }
    }

    /// Applies a prepared batch, in order.
    mutating func apply(prepared: PreparedBatch) {
        var refused = 0
        var start = 0
        let count = prepared.pending.count
        while start < count {
            let chunk = start..<min(count, start + Self.chunkEvents)
            if count > 1 { prefetch(prepared, chunk) }
            refused += apply(prepared, chunk)
            start = chunk.upperBound
        }
        eventsApplied += count - refused
        refusedEvents += refused
        if let end = prepared.endOffset { nextOffset = end }
    }

    /// Events of a batch taken through the passes together: enough for the prefetches of one pass to
    /// land before the next needs them, few enough that what they bring in is still in the core's own
    /// cache when the events are applied.
    /// (128. Rotated rounds of one-core replays of the 10M-event log, user time: first, with 56-byte
    /// records, 1.34 s for 1,024 against 1.36 s for 256, 1.40 s for 2,048 and 1.41 s for whole batches
    /// of up to 8,192; later, with one-line records, 1.07 s for 1,024, 1.06 s for 512, 1.03–1.06 s for
    /// 256, 1.01–1.03 s for 128, 1.00 s for 64.)
    static let chunkEvents = 1 << 7

    /// Passes 1-3 over `chunk` of `prepared`: prefetch each connection event's slots, then probe them
    /// for candidate records and prefetch those, then prefetch the candidates' keys.
    private func prefetch(_ prepared: PreparedBatch, _ chunk: Range<Int>) {
        let slots = connectionSlots.buffer, userSlots = self.userSlots.buffer
        let records = connections.pointer, userRecords = users.pointer
        let arena = connectionArena.pointer, userArena = self.userArena.pointer
        let connectionBits = connectionIndexBits
        prepared.pending.withUnsafeMutableBufferPointer { pending in
            guard let connectionBase = slots.baseAddress, let userBase = userSlots.baseAddress else { return }
            let connectionMask = slots.count - 1, userMask = userSlots.count - 1
            for i in chunk where pending[i].hash != 0 {
                presencelog_prefetch(connectionBase + (Int(truncatingIfNeeded: pending[i].hash) & connectionMask))
                presencelog_prefetch(userBase + (Int(truncatingIfNeeded: pending[i].userHash) & userMask))
            }
            for i in chunk where pending[i].hash != 0 {
                let (candidate, empty) = Slots.probe(slots, pending[i].hash, indexBits: connectionBits)
                pending[i].candidate = Int32(candidate)
                pending[i].emptySlot = empty <= Int(Int32.max) ? Int32(empty) : -1
                if candidate >= 0 { presencelog_prefetch(records + candidate) }
                let userCandidate = Slots.probe(userSlots, pending[i].userHash, indexBits: Self.userIndexBits).candidate
                pending[i].userCandidate = Int32(userCandidate)
                if userCandidate >= 0 { presencelog_prefetch(userRecords + userCandidate) }
            }
            let histories = self.histories.pointer, historyEvents = self.historyEvents.storage.pointer
            withUnsafeTemporaryAllocation(of: Int.self, capacity: chunk.count) { reused in
                var found = 0
                for i in chunk where pending[i].hash != 0 {
                    let item = pending[i]
                    if item.candidate >= 0 {
                        let record = records + Int(item.candidate)
                        if item.key.count > Self.inlineKeyBytes { presencelog_prefetch(arena + Int(record.pointee.key.0)) }
                        // A key with many sessions: its history's first line (`KeyHistory`).
                        if record.pointee.reason & Self.reusedKey != 0 {
                            let h = Int(record.pointee.disconnect)
                            presencelog_prefetch(histories + h)
                            reused[found] = h
                            found += 1
                        }
                    } else if item.userCandidate >= 0 {
                        presencelog_prefetch(userArena + Int(userRecords[Int(item.userCandidate)].keyOffset))
                    }
                }
                // Pass 3b, for those: the slot of the history's events where the event goes.
                for k in 0..<found {
                    let history = histories + reused[k]
                    presencelog_prefetch(historyEvents + history.pointee.first + Int(history.pointee.count))
                }
            }
        }
    }

    /// Pass 4: applies `chunk` of `prepared`, in order, except what is older than the horizon allows
    /// (ingest refuses those; a log written with a longer horizon may hold some). Returns how many it refused.
    private mutating func apply(_ prepared: PreparedBatch, _ chunk: Range<Int>) -> Int {
        var refused = 0
        let pending = prepared.pending
        var swept = false
        let probedEpoch = connectionSlotsEpoch
        for i in chunk {
            var item = pending[i]
            if item.offset >= nextSweepCheck {
                nextSweepCheck = Self.sweepCheck(after: item.offset)
                swept = sweepIfDue() || swept
            }
            // A sweep renumbers connections: the candidates found before it name other ones now.
            if swept { item.candidate = -1 }
            if let audit, maxTimestamp != Int64.min && item.timestamp < maxTimestamp &- audit.outOfOrderThreshold {
                audit.outOfOrder += 1
                if audit.outOfOrderExamples.count < AuditTally.examples {
                    audit.outOfOrderExamples.append((item.offset, maxTimestamp - item.timestamp))
                }
            }
            if maxTimestamp != Int64.min && item.timestamp < maxTimestamp &- horizon {
                refused += 1
                if let audit, audit.refusedExamples.count < AuditTally.examples { audit.refusedExamples.append(item.offset) }
                continue
            }
            switch item.kind {
            case .connect, .disconnect:
                if connectionSlotsEpoch != probedEpoch { item.emptySlot = -1 }
                applyConnectionEvent(item.kind == .connect, item)
            case .gatewayDown:
                if !applyGatewayDown(gateway: item.gateway, at: item.timestamp) { audit?.repeated(at: item.offset) }
            case .heartbeat:
                let g = gatewayIndex(item.gateway)
                gatewayHeartbeat[g] = max(gatewayHeartbeat[g], item.timestamp)
            }
            if item.timestamp > maxTimestamp { maxTimestamp = item.timestamp }
        }
        return refused
    }

    @inline(__always)
    private mutating func applyConnectionEvent(_ isConnect: Bool, _ item: Pending) {
        let hash = item.hash, user = item.user, key = item.key, gateway = item.gateway, timestamp = item.timestamp
        var c: Int
        var inserted = false
        // Pass 2's probe ended at an empty slot without a candidate, and that slot is still empty: no
        // connection of this hash has been placed since (linear probing fills a chain's first empty
        // slot, and slots are emptied only by replacing the table), so the connection is new and goes there.
        let provenNew = item.candidate < 0 && item.emptySlot >= 0 && connectionSlots[Int(item.emptySlot)] == 0
        if item.candidate >= 0 && connectionMatches(Int(item.candidate), key) {
            c = Int(item.candidate)
        } else if !provenNew, let found = findConnection(key, hash: hash) {
            c = found
        } else {
            let u: Int
            if item.userCandidate >= 0 && userMatches(Int(item.userCandidate), hash: item.userHash, user) {
                u = Int(item.userCandidate)
            } else {
                u = findUser(user, hash: item.userHash) ?? insertUser(user, hash: item.userHash)
            }
            c = insertConnection(key, userLength: user.count, hash: hash, user: u, gateway: gateway, slot: provenNew ? Int(item.emptySlot) : nil)
            inserted = true
        }
        if !inserted && isForgotten(connections[c], newest: max(maxTimestamp, timestamp)) {
            // Every session ended, and every event came, before the horizon (counted from this event
            // when it is the newest, so that whether a key is forgotten does not depend on which of a
            // burst of events comes first): forgotten, whether or not a sweep has removed it yet. It
            // starts afresh, as if never seen (its old sessions stay in the user's last_seen).
            forget(c, gateway: gateway)
            inserted = true
        }
        let current = connections[c]
        if current.reason & Self.reusedKey != 0 {
            let event = ConnectionRules.KeyEvent(timestamp: timestamp, gateway: isConnect ? Int32(gatewayIndex(gateway)) : -1, isConnect: isConnect)
            if !applyToHistory(c, event) { audit?.repeated(at: item.offset) }
            return
        }
        if isConnect {
            if inserted {
                connections[c].start = timestamp
                if gatewayDowns[Int(current.gateway)].isEmpty {
                    // The common case, a new connection on a gateway that never went down: it opens.
                    opened(user: Int(current.user))
                } else {
                    resolve(c, wasOpen: false, before: Self.none)
                }
                return
            }
            let g = Int32(gatewayIndex(gateway))
            if current.start == Self.noStart && timestamp <= current.disconnect {
                // Known only from its disconnect: a connect at or before it makes the one session. The
                // connect names the session's gateway.
                connections[c].start = timestamp
                connections[c].gateway = g
                resolve(c, wasOpen: false, before: contribution(current))
            } else if timestamp == current.start && g == current.gateway {
                audit?.repeated(at: item.offset)
            } else {
                promote(c, adding: .init(timestamp: timestamp, gateway: g, isConnect: true))
            }
        } else {
            if inserted {
                audit?.disconnectFirst(at: item.offset, connection: c)
                connections[c].disconnect = timestamp
                resolve(c, wasOpen: false, before: Self.none)
                return
            }
            if current.disconnect == Self.none && timestamp >= current.start {
                if isOpen(current) && gatewayDowns[Int(current.gateway)].isEmpty {
                    // The common case, an open connection closing on a gateway that never went down: it
                    // was open, so it gave the user no last_seen yet.
                    connections[c].disconnect = timestamp
                    connections[c].end = timestamp
                    connections[c].reason = ConnectionRules.EndReason.disconnect.rawValue
                    let u = Int(current.user)
                    closed(user: u)
                    users[u].lastSeen = max(users[u].lastSeen, timestamp)
                    return
                }
                connections[c].disconnect = timestamp
                resolve(c, wasOpen: isOpen(current), before: contribution(current))
            } else if timestamp == current.disconnect {
                audit?.repeated(at: item.offset)
            } else {
                promote(c, adding: .init(timestamp: timestamp, gateway: -1, isConnect: false))
            }
        }
    }

    /// Resets forgotten key `c` to a new key on `gateway`, freeing its history.
    private mutating func forget(_ c: Int, gateway: UnsafeRawBufferPointer) {
        audit?.forgot(sessionCounts(c))
        if connections[c].reason & Self.reusedKey != 0 { freeHistory(Int(connections[c].disconnect)) }
        connections[c].start = Self.noStart
        connections[c].disconnect = Self.none
        connections[c].end = Self.none
        connections[c].reason = 0
        connections[c].gateway = Int32(gatewayIndex(gateway))
    }

    /// Applies a gateway_down; false when the same one was applied before.
    @discardableResult
    private mutating func applyGatewayDown(gateway: UnsafeRawBufferPointer, at timestamp: Int64) -> Bool {
        let g = gatewayIndex(gateway)
        var low = 0, high = gatewayDowns[g].count
        while low < high {
            let mid = (low + high) >> 1
            if gatewayDowns[g][mid] < timestamp { low = mid + 1 } else { high = mid }
        }
        if low < gatewayDowns[g].count && gatewayDowns[g][low] == timestamp { return false }  // seen before
        gatewayDowns[g].insert(timestamp, at: low)
        // Every simple key of this gateway that started at or before it and is open or ends later, and
        // every history with a session begun on this gateway at or before it.
        let g32 = Int32(g)
        for c in 0..<connections.count {
            let connection = connections[c]
            if connection.reason & Self.reusedKey != 0 {
                let h = Int(connection.disconnect)
                let touched = (histories[h].base.isOpen && histories[h].base.gateway == g32)
                    || events(of: h).contains { $0.isConnect && $0.gateway == g32 && $0.timestamp <= timestamp }
                guard touched else { continue }
                replay(h, from: 0)
                updateFromHistory(c, wasOpen: isOpen(connection), before: contribution(connection))
                continue
            }
            guard connection.gateway == g32, connection.start != Self.noStart, connection.start <= timestamp else { continue }
            guard connection.end == Self.none || connection.end > timestamp else { continue }
            resolve(c, wasOpen: connection.end == Self.none, before: contribution(connection))
        }
        return true
    }

    /// The event time before which closed connections are forgotten: the newest event time minus the
    /// horizon (nothing before the first event).
    var forgetBefore: Int64 {
        maxTimestamp == Int64.min || maxTimestamp < Int64.min + horizon ? Int64.min : maxTimestamp - horizon
    }

    /// A key with no open session whose every end and every event is older than the horizon: no event
    /// that can still be applied can change its sessions (they are all at or after `forgetBefore`);
    /// one that reuses its id starts a new session, as the rules say, and a disconnect of it would
    /// change nothing, but counts, once forgotten, as a session of unknown start. Forgotten keys are
    /// inert, so when a sweep removes them changes no state.
    @inline(__always)
    private func isForgotten(_ connection: Connection) -> Bool {
        connection.end != Self.none && settledTime(connection) < forgetBefore
    }

    /// `isForgotten` with `newest` as the newest event time.
    @inline(__always)
    private func isForgotten(_ connection: Connection, newest: Int64) -> Bool {
        connection.end != Self.none && newest >= Int64.min + horizon && settledTime(connection) < newest - horizon
    }

    /// The latest of a closed key's event times and end.
    @inline(__always)
    private func settledTime(_ connection: Connection) -> Int64 {
        if connection.reason & Self.reusedKey != 0 {
            return max(connection.end, histories[Int(connection.disconnect)].lastEventTime)
        }
        return max(connection.end, connection.disconnect, connection.start == Self.noStart ? Self.none : connection.start)
    }

    /// Removes the forgotten connections from the tables when they have grown to twice what the last
    /// sweep kept: memory for closed connections is bounded by the horizon, at an amortized O(1) per
    /// event. Not while auditing (the audit counts over every connection). Returns whether it swept
    /// (which renumbers the connections).
    @discardableResult
    mutating func sweepIfDue() -> Bool {
        guard audit == nil, connections.count >= nextSweep else { return false }
        sweepForgotten()
        nextSweep = max(Self.minimumSweep, connections.count * 2)
        return true
    }

    static let minimumSweep = 1 << 16

    /// Sweeps are checked only before the first event at or past each multiple of this many offsets,
    /// never at a batch's end: where they fall, and so how connections are numbered, then depends on
    /// the log alone, not on how its records were batched (a replay reads the log's batches, the live
    /// server applies its commits): two folds of the same records build the same tables.
    static let sweepCheckInterval: Int64 = 1 << 12

    /// The first offset past `offset` where a sweep is checked.
    static func sweepCheck(after offset: Int64) -> Int64 {
        (offset / sweepCheckInterval + 1) * sweepCheckInterval
    }

    /// Rebuilds the connection tables without the forgotten connections, and the histories without
    /// theirs and without their events before the horizon.
    mutating func sweepForgotten() {
        let old = connections, oldArena = connectionArena
        var keep = 0
        for c in 0..<old.count where !isForgotten(old[c]) { keep += 1 }
        guard keep < old.count else { return }
        let kept = FlatStorage<Connection>(capacity: max(1 << 12, keep + keep / 4))
        let keptArena = FlatStorage<UInt8>(capacity: 1 << 16)
        for u in 0..<users.count { users[u].firstConnection = -1 }
        for c in 0..<old.count {
            var connection = old[c]
            // A forgotten key's history goes back on its free list (after `isForgotten` read it). A kept
            // one loses its events before the horizon as it grows (`applyToHistory`).
            if isForgotten(connection) {
                if connection.reason & Self.reusedKey != 0 { freeHistory(Int(connection.disconnect)) }
                continue
            }
            let index = kept.count
            if Int(connection.keyLength) > Self.inlineKeyBytes {
                connection.key.0 = UInt64(keptArena.count)
                keptArena.append(bytes: UnsafeRawBufferPointer(start: oldArena.pointer + Int(old[c].key.0), count: Int(connection.keyLength)))
            }
            connection.nextOfUser = users[Int(connection.user)].firstConnection
            users[Int(connection.user)].firstConnection = Int32(index)
            kept.append(connection)
        }
        connections = kept
        connectionArena = keptArena
        var size = 1 << 12
        while kept.count * 2 > size { size *= 2 }
        connectionSlots = rehashedConnections(size: size)
        forgottenConnections += old.count - keep
    }

    @inline(__always)
    func isOpen(_ connection: Connection) -> Bool {
        connection.end == Self.none && connection.start != Self.noStart
    }

    /// Rule 5: a key's latest end as it stands, or `none`.
    @inline(__always)
    func contribution(_ connection: Connection) -> Int64 {
        if connection.end != Self.none { return connection.end }
        return connection.reason & Self.reusedKey != 0 ? histories[Int(connection.disconnect)].lastEnd : Self.none
    }

    /// A connection of user `u` opened: rule 4's counts.
    @inline(__always)
    private mutating func opened(user u: Int) {
        users[u].open += 1
        if users[u].open == 1 { onlineUsers += 1 }
        openConnections += 1
    }

    /// An open connection of user `u` closed: rule 4's counts.
    @inline(__always)
    private mutating func closed(user u: Int) {
        users[u].open -= 1
        if users[u].open == 0 { onlineUsers -= 1 }
        openConnections -= 1
    }

    /// Re-applies the rules to simple key `c` and carries the change over to its user.
    @inline(__always)
    private mutating func resolve(_ c: Int, wasOpen: Bool, before: Int64) {
        let connection = connections[c]
        let g = Int(connection.gateway)
        let resolution: ConnectionRules.Resolution
        let start = connection.start == Self.noStart ? nil : connection.start
        let disconnect = connection.disconnect == Self.none ? nil : connection.disconnect
        if gatewayDowns[g].isEmpty {
            resolution = ConnectionRules.resolve(start: start, disconnect: disconnect, gatewayDowns: UnsafeBufferPointer(start: nil, count: 0))
        } else {
            resolution = gatewayDowns[g].withUnsafeBufferPointer {
                ConnectionRules.resolve(start: start, disconnect: disconnect, gatewayDowns: $0)
            }
        }
        connections[c].end = resolution.end ?? Self.none
        connections[c].reason = resolution.reason?.rawValue ?? 0
        carryOver(c, wasOpen: wasOpen, before: before)
    }

    /// Carries a change of key `c` (open before: `wasOpen`; latest end before: `before`) over to its
    /// user's open count and last_seen.
    @inline(__always)
    mutating func carryOver(_ c: Int, wasOpen: Bool, before: Int64) {
        let connection = connections[c]
        let u = Int(connection.user)
        let nowOpen = isOpen(connection)
        if nowOpen != wasOpen {
            if nowOpen { opened(user: u) } else { closed(user: u) }
        }
        let after = contribution(connections[c])
        if after > users[u].lastSeen {
            users[u].lastSeen = after
        } else if before == users[u].lastSeen && after < before {
            // The user's latest contribution shrank (a late event corrected it): take the max again.
            var best = Self.none
            var next = users[u].firstConnection
            while next >= 0 {
                best = max(best, contribution(connections[Int(next)]))
                next = connections[Int(next)].nextOfUser
            }
            users[u].lastSeen = best
        }
    }

    // MARK: Tables

    /// Whether connection `index` has `key` (a prepared key: zero-padded to `inlineKeyBytes`).
    @inline(__always)
    private func connectionMatches(_ index: Int, _ key: UnsafeRawBufferPointer) -> Bool {
        let record = connections[index]
        guard Int(record.keyLength) == key.count, let base = key.baseAddress else { return false }
        if key.count <= Self.inlineKeyBytes {
            return record.key.0 == base.loadUnaligned(as: UInt64.self)
                && record.key.1 == base.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
                && record.key.2 == base.loadUnaligned(fromByteOffset: 16, as: UInt64.self)
        }
        return Self.equal(UnsafeRawBufferPointer(connectionArena.buffer), Int(record.key.0), key, UnsafeRawBufferPointer(start: nil, count: 0))
    }

    /// The hash connection `c` is placed by, from its stored key.
    private func connectionHash(of c: Int) -> UInt64 {
        let record = connections[c]
        let length = Int(record.keyLength), userLength = Int(record.userLengthLessOne) + 1
        if length > Self.inlineKeyBytes {
            let key = UnsafeRawBufferPointer(start: connectionArena.pointer + Int(record.key.0), count: length)
            return Self.connectionHash(key: key, userLength: userLength)
        }
        var words = record.key
        return withUnsafeBytes(of: &words) { Self.connectionHash(key: UnsafeRawBufferPointer(rebasing: $0[..<length]), userLength: userLength) }
    }

    /// The hash of a connection key from its parts: the user id's mixed bytes (`ByteTable.prefix`, what
    /// the user's own hash finishes), and the identity's (`EventCodec.View.writeConnIdentity`: marker,
    /// packed digits' count, packed digits, text).
    @inline(__always)
    static func connectionHash(userPrefix: UInt64, relative: Bool, connHex: UnsafeRawBufferPointer,
                               storedConn: UnsafeRawBufferPointer) -> UInt64 {
        nonzero(ByteTable.hash(connHex, storedConn, seed: userPrefix ^ (relative ? 0x2545_F491_4F6C_DD1D : 0)))
    }

    /// `connectionHash` of a stored key: the user id (`userLength` bytes), then the identity (its
    /// marker, 0xFF for a conn stored relative to the user id, the packed digits' count, the digits,
    /// the text). A key too short for that (only a damaged checkpoint could hold one; loading checks)
    /// gets a hash of its bytes: placed, never matched by an event.
    static func connectionHash(key: UnsafeRawBufferPointer, userLength: Int) -> UInt64 {
        let marker = userLength
        guard marker + 2 <= key.count, let base = key.baseAddress else { return hash(key) }
        let packed = Int(key[marker + 1])
        let hexStart = marker + 2, textStart = min(key.count, hexStart + packed)
        return connectionHash(userPrefix: ByteTable.prefix(UnsafeRawBufferPointer(start: base, count: marker)), relative: key[marker] == 0xFF,
                              connHex: UnsafeRawBufferPointer(start: base + hexStart, count: textStart - hexStart),
                              storedConn: UnsafeRawBufferPointer(start: base + textStart, count: key.count - textStart))
    }

    private func findConnection(_ key: UnsafeRawBufferPointer, hash: UInt64) -> Int? {
        let mask = connectionSlots.count - 1, bits = connectionIndexBits
        var slot = Int(truncatingIfNeeded: hash) & mask
        while true {
            let entry = connectionSlots[slot]
            if entry == 0 { return nil }
            if Slots.matches(entry, hash, indexBits: bits) {
                let index = Slots.index(entry, indexBits: bits)
                if connectionMatches(index, key) { return index }
            }
            slot = (slot + 1) & mask
        }
    }

    /// Grows the connection slot table (load at most 1/2) to hold `expected` connections.
    mutating func reserveConnections(_ expected: Int) {
        var size = connectionSlots.count
        while expected > 0 && expected * 2 > size && size < 1 << 32 { size *= 2 }
        guard size > connectionSlots.count else { return }
        connectionSlots = rehashedConnections(size: size)
    }

    /// A connection slot table of `size` slots holding every connection.
    private func rehashedConnections(size: Int) -> FlatStorage<UInt32> {
        Slots.rehash(UInt32.self, count: connections.count, size: size, indexBits: size.trailingZeroBitCount) { connectionHash(of: $0) }
    }

    /// Appends a new connection and places it in the slot table: at `slot` when the caller knows it to
    /// be the first empty slot of the hash's probe sequence, else where a probe finds one.
    private mutating func insertConnection(_ key: UnsafeRawBufferPointer, userLength: Int, hash: UInt64, user u: Int,
                                           gateway: UnsafeRawBufferPointer, slot: Int?) -> Int {
        // The gateway first: a call that may change `self` between loading `connections` and appending
        // to it would make the compiler retain the table around it.
        let g = gatewayIndex(gateway)
        let c = connections.count
        var words: (UInt64, UInt64, UInt64) = (0, 0, 0)
        if key.count > Self.inlineKeyBytes {
            words.0 = UInt64(connectionArena.count)
            connectionArena.append(bytes: key)
        } else if let base = key.baseAddress {
            words = (base.loadUnaligned(as: UInt64.self), base.loadUnaligned(fromByteOffset: 8, as: UInt64.self),
                     base.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
        }
        connections.append(Connection(key: words, user: Int32(u), gateway: Int32(g), nextOfUser: users[u].firstConnection,
                                      keyLength: UInt16(key.count), userLengthLessOne: UInt8(userLength - 1)))
        users[u].firstConnection = Int32(c)
        if let slot {
            connectionSlots[slot] = Slots.entry(hash, index: c, indexBits: connectionIndexBits)
        } else {
            Slots.place(hash, index: c, in: connectionSlots, indexBits: connectionIndexBits)
        }
        if connections.count * 2 > connectionSlots.count { reserveConnections(connections.count) }
        return c
    }

    func findUser(_ user: UnsafeRawBufferPointer, hash: UInt64) -> Int? {
        let mask = userSlots.count - 1
        var slot = Int(truncatingIfNeeded: hash) & mask
        while true {
            let entry = userSlots[slot]
            if entry == 0 { return nil }
            if Slots.matches(entry, hash, indexBits: Self.userIndexBits) {
                let index = Slots.index(entry, indexBits: Self.userIndexBits)
                if userMatches(index, hash: hash, user) { return index }
            }
            slot = (slot + 1) & mask
        }
    }

    @inline(__always)
    private func userMatches(_ index: Int, hash: UInt64, _ user: UnsafeRawBufferPointer) -> Bool {
        let record = users[index]
        guard record.hash == hash, Int(record.keyLength) == user.count else { return false }
        return Self.equal(UnsafeRawBufferPointer(userArena.buffer), Int(record.keyOffset), user, UnsafeRawBufferPointer(start: nil, count: 0))
    }

    private mutating func insertUser(_ user: UnsafeRawBufferPointer, hash: UInt64) -> Int {
        let u = users.count
        users.append(User(hash: hash, keyOffset: UInt32(userArena.count), keyLength: UInt16(user.count)))
        userArena.append(bytes: user)
        Slots.place(hash, index: u, in: userSlots, indexBits: Self.userIndexBits)
        if users.count * 4 > userSlots.count * 3 {  // users: load up to 3/4 keeps them within 64 bytes each
            let records = users.pointer
            userSlots = Slots.rehash(UInt64.self, count: users.count, size: userSlots.count * 2, indexBits: Self.userIndexBits) { records[$0].hash }
        }
        return u
    }

    /// The index of `gateway`, interned if new. Short names (the usual case) are answered from
    /// `gatewayMemo` without hashing or comparing bytes: every new connection asks.
    @inline(__always)
    private mutating func gatewayIndex(_ gateway: UnsafeRawBufferPointer) -> Int {
        let n = gateway.count
        guard n > 0 && n < 16, let base = gateway.baseAddress else { return internGateway(gateway) }
        let low = ByteTable.word(base, from: 0, to: min(n, 8))
        let high = UInt64(n) << 56 | (n > 8 ? ByteTable.word(base, from: 8, to: n) : 0)
        let memo = gatewayMemo.pointer
        let entry = 3 * Int(truncatingIfNeeded: ((low ^ high) &* 0x9E37_79B9_7F4A_7C15) >> 58)
        if memo[entry] == low && memo[entry + 1] == high { return Int(memo[entry + 2]) }
        let g = internGateway(gateway)
        memo[entry] = low
        memo[entry + 1] = high
        memo[entry + 2] = UInt64(g)
        return g
    }

    private mutating func internGateway(_ gateway: UnsafeRawBufferPointer) -> Int {
        let empty = UnsafeRawBufferPointer(start: gateway.baseAddress, count: 0)
        let (g, inserted) = gateways.intern(gateway, empty, hash: ByteTable.hash(gateway, empty))
        if inserted {
            gatewayDowns.append([])
            gatewayHeartbeat.append(Self.none)
        }
        return g
    }

    @inline(__always)
    private static func equal(_ arena: UnsafeRawBufferPointer, _ offset: Int, _ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer) -> Bool {
        guard let base = arena.baseAddress else { return first.isEmpty && second.isEmpty }
        return bytesEqual(base + offset, first) && bytesEqual(base + offset + first.count, second)
    }

    /// Compares `bytes` with the same number of bytes at `stored`: eight at a time, the last eight
    /// overlapping, or two overlapping halves of four, never reading outside either (ids are short).
    @inline(__always)
    private static func bytesEqual(_ stored: UnsafeRawPointer, _ bytes: UnsafeRawBufferPointer) -> Bool {
        guard let base = bytes.baseAddress else { return true }
        let n = bytes.count
        if n >= 8 {
            var i = 0
            while n - i > 8 {
                if stored.loadUnaligned(fromByteOffset: i, as: UInt64.self) != base.loadUnaligned(fromByteOffset: i, as: UInt64.self) { return false }
                i += 8
            }
            return stored.loadUnaligned(fromByteOffset: n - 8, as: UInt64.self) == base.loadUnaligned(fromByteOffset: n - 8, as: UInt64.self)
        }
        if n >= 4 {
            return stored.loadUnaligned(as: UInt32.self) == base.loadUnaligned(as: UInt32.self)
                && stored.loadUnaligned(fromByteOffset: n - 4, as: UInt32.self) == base.loadUnaligned(fromByteOffset: n - 4, as: UInt32.self)
        }
        var i = 0
        while i < n {
            if stored.load(fromByteOffset: i, as: UInt8.self) != base.load(fromByteOffset: i, as: UInt8.self) { return false }
            i += 1
        }
        return true
    }

    @inline(__always)
    static func hash(_ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0)) -> UInt64 {
        nonzero(ByteTable.hash(first, second))
    }

    /// `hash` made never 0 (pass 1 takes 0 for "not a connection event") without touching its other
    /// values: forcing the low bit on instead, as this did until 2026-11-30, sent every record's home
    /// slot to an odd index and left half of each table's home slots unused.
    @inline(__always)
    static func nonzero(_ hash: UInt64) -> UInt64 {
        hash == 0 ? 1 : hash
    }

    /// The longest connection key: a user id and a connection identity.
    static let maxKeyBytes = PresenceEvent.Limits.fieldBytes + EventCodec.maxConnIdentityBytes

    // MARK: Queries

    func userKey(_ u: Int) -> UnsafeBufferPointer<UInt8> {
        let record = users[u]
        return UnsafeBufferPointer(start: userArena.pointer + Int(record.keyOffset), count: Int(record.keyLength))
    }

    func userState(_ u: Int) -> PresenceProjection.UserState {
        let record = users[u]
        return .init(user: String(decoding: userKey(u), as: UTF8.self), online: record.open > 0,
                     lastSeen: record.lastSeen == Self.none ? nil : record.lastSeen, connections: Int(record.open))
    }
}

#if canImport(Glibc)
import Glibc
#endif

// MARK: Checkpoints

extension PresenceProjection {
    /// Writes the checkpoint body (everything but the trailing CRC) to `sink`, table by table.
    func encodeState(to sink: (UnsafeRawBufferPointer) throws -> Void) rethrows {
        try state.encode(to: sink)
    }

    /// A projection read from a checkpoint (the caller then checks the CRC with `reader.finish()`).
    static func decodeState(_ reader: CheckpointReader) throws -> PresenceProjection {
        let projection = PresenceProjection()
        projection.state = try ProjectionState(reading: reader)
        return projection
    }

    func validateCheckpointReferences() throws {
        try state.validateReferences()
    }
}

extension ProjectionState {
    func encode(to sink: (UnsafeRawBufferPointer) throws -> Void) rethrows {
        func put(_ value: UInt64) throws { try withUnsafeBytes(of: value.littleEndian) { try sink($0) } }
        func put<T>(_ storage: FlatStorage<T>) throws {
            try put(UInt64(storage.count))
            try put(UInt64(storage.capacity))
            try put(UInt64(storage.bytesInUse))
            try sink(storage.rawBytes)
        }
        try Checkpoint.magic.withUnsafeBytes { try sink($0) }
        try put(Checkpoint.layout)
        try put(UInt64(bitPattern: nextOffset))
        try put(UInt64(bitPattern: maxTimestamp))
        try put(UInt64(eventsApplied))
        try put(UInt64(refusedEvents))
        try put(UInt64(bitPattern: horizon))
        try put(UInt64(onlineUsers))
        try put(UInt64(openConnections))
        try put(UInt64(nextSweep))
        try put(userSlots)
        try put(users)
        try put(userArena)
        try put(connectionSlots)
        try put(connections)
        try put(connectionArena)
        try put(UInt64(gateways.count))
        for g in 0..<gateways.count {
            let name = Array(gateways.bytes(g))
            try withUnsafeBytes(of: UInt32(name.count).littleEndian) { try sink($0) }
            try name.withUnsafeBytes { try sink($0) }
            try put(UInt64(bitPattern: gatewayHeartbeat[g]))
            try put(UInt64(gatewayDowns[g].count))
            for down in gatewayDowns[g] { try put(UInt64(bitPattern: down)) }
        }
        try put(histories)
        try put(UInt64(freeHistories.count))
        for free in freeHistories { try put(UInt64(free)) }
        try historyEvents.encode(to: sink, put: put, putStorage: put)
        try historySnapshots.encode(to: sink, put: put, putStorage: put)
    }

    init(reading reader: CheckpointReader) throws {
        self.init()
        guard try reader.bytes(Checkpoint.magic.count) == Checkpoint.magic else { throw LogError(.corrupt, "not a checkpoint") }
        guard try reader.u64() == Checkpoint.layout else { throw LogError(.corrupt, "checkpoint from a build with another record layout") }
        nextOffset = try reader.i64()
        maxTimestamp = try reader.i64()
        eventsApplied = try reader.int()
        refusedEvents = try reader.int()
        horizon = try reader.i64()
        onlineUsers = try reader.int()
        openConnections = try reader.int()
        nextSweep = try reader.int()
        guard nextSweep >= Self.minimumSweep, nextSweep <= Int(UInt32.max) * 2 else { throw LogError(.corrupt, "checkpoint's next sweep is out of range") }
        // The next check where a fold that never stopped would make it (offsets are checked in order).
        nextSweepCheck = nextOffset <= 0 ? 0 : Self.sweepCheck(after: nextOffset - 1)
        func storage<T>(_ type: T.Type) throws -> FlatStorage<T> {
            let count = try reader.int(), capacity = try reader.int(), bytes = try reader.int()
            // No table of 1 TiB was ever written from memory: a larger capacity would fail its mapping.
            let (tableBytes, overflow) = capacity.multipliedReportingOverflow(by: MemoryLayout<T>.stride)
            guard count >= 0, capacity >= count, !overflow, tableBytes <= 1 << 40, bytes == count * MemoryLayout<T>.stride,
                  bytes <= reader.remaining else {
                throw LogError(.corrupt, "checkpoint table sizes do not agree")
            }
            let table = FlatStorage<T>(capacity: capacity, count: count)
            try reader.read(into: table.pointer, count: bytes)
            return table
        }
        userSlots = try storage(UInt64.self)
        users = try storage(User.self)
        userArena = try storage(UInt8.self)
        connectionSlots = try storage(UInt32.self)
        connections = try storage(Connection.self)
        connectionArena = try storage(UInt8.self)
        for size in [userSlots.count, connectionSlots.count] where size < 16 || size & (size - 1) != 0 || size > 1 << 32 {
            throw LogError(.corrupt, "checkpoint slot table of \(size) is not a power of two")
        }
        guard users.count * 4 <= userSlots.count * 3, connections.count * 2 <= connectionSlots.count else {
            throw LogError(.corrupt, "checkpoint tables are fuller than their slots allow")
        }
        let gatewayCount = try reader.int()
        guard gatewayCount >= 0, gatewayCount <= reader.remaining / 20 else { throw LogError(.corrupt, "checkpoint is cut short") }
        for _ in 0..<gatewayCount {
            let name = try reader.bytes(Int(try reader.u32()))
            name.withUnsafeBytes { name in
                let empty = UnsafeRawBufferPointer(start: name.baseAddress, count: 0)
                _ = gateways.intern(name, empty, hash: ByteTable.hash(name, empty))
            }
            gatewayHeartbeat.append(try reader.i64())
            let downs = try reader.int()
            guard downs >= 0, downs <= reader.remaining / 8 else { throw LogError(.corrupt, "checkpoint is cut short") }
            var list = [Int64](repeating: 0, count: downs)
            try list.withUnsafeMutableBytes { raw in
                if let base = raw.baseAddress { try reader.read(into: base, count: downs * 8) }
            }
            gatewayDowns.append(list.map { Int64(littleEndian: $0) })
        }
        histories = try storage(KeyHistory.self)
        let freeCount = try reader.int()
        guard freeCount >= 0, freeCount <= histories.count, freeCount <= reader.remaining / 8 else { throw LogError(.corrupt, "checkpoint is cut short") }
        for _ in 0..<freeCount { freeHistories.append(Int32(truncatingIfNeeded: try reader.u64())) }
        historyEvents = try BlockArena(smallest: 4, storage: try storage(ConnectionRules.KeyEvent.self), reader: reader)
        historySnapshots = try BlockArena(smallest: 1, storage: try storage(ConnectionRules.Sessions.self), reader: reader)
    }

    /// Checks that every record's references point inside the tables (after the CRC matched: this guards
    /// against a checkpoint written by a faulty build, not against damage, which the CRC catches).
    func validateReferences() throws {
        for u in 0..<users.count {
            let user = users[u]
            guard Int(user.keyOffset) + Int(user.keyLength) <= userArena.count, Int(user.firstConnection) < connections.count else {
                throw LogError(.corrupt, "checkpoint user \(u) points outside the tables")
            }
        }
        for c in 0..<connections.count {
            let connection = connections[c]
            let length = Int(connection.keyLength)
            guard length <= Self.inlineKeyBytes || connection.key.0 <= UInt64(max(0, connectionArena.count - length)),
                  length <= Self.maxKeyBytes, Int(connection.userLengthLessOne) + 3 <= length, Int(connection.user) < users.count,
                  connection.user >= 0, Int(connection.gateway) < gateways.count, connection.gateway >= 0,
                  Int(connection.nextOfUser) < connections.count,
                  connection.reason & Self.reusedKey == 0 || (connection.disconnect >= 0 && connection.disconnect < Int64(histories.count))
            else { throw LogError(.corrupt, "checkpoint connection \(c) points outside the tables") }
        }
        do throws(PresenceProjection.ApplyError) { try validateHistories() } catch {
            throw LogError(.corrupt, "checkpoint \(error.description)")
        }
    }
}
