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

    // No default value: one would build a set of empty tables in every initializer, `init(state:)`'s too.
    var state: ProjectionState

    /// A projection that refuses events older than its newest event time minus `horizon` (ms), as
    /// ingest does; it must be the horizon the log was written with.
    public init(horizon: Int64 = defaultLateArrivalHorizon) {
        state = ProjectionState()
        state.horizon = horizon
    }

    /// A projection of `state` (a checkpoint's).
    init(state: ProjectionState) {
        self.state = state
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

    /// The shown presence of the user whose id is `user`'s bytes (offline with no last seen when never
    /// seen), without building a string: the push path asks it before and after every commit.
    public func shown(ofUser user: UnsafeRawBufferPointer) -> ShownPresence {
        guard let u = state.findUser(user, hash: ProjectionState.hash(user)) else { return ShownPresence(nil) }
        let record = state.users[u]
        return ShownPresence(online: record.open > 0, lastSeen: record.lastSeen == ProjectionState.none ? nil : record.lastSeen)
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

    /// The users with a connection open on `gateway`: whose shown presence a `gateway_down` of it may
    /// change. Scans every connection: for a gateway_down, which is rare.
    public func usersOnline(onGateway gateway: String) -> [String] {
        let name = Array(gateway.utf8)
        let found = name.withUnsafeBytes { name in
            let empty = UnsafeRawBufferPointer(start: name.baseAddress, count: 0)
            return state.gateways.find(name, empty, hash: ByteTable.hash(name, empty))
        }
        guard let g = found else { return [] }
        var users = Set<Int32>()
        for c in 0..<state.connections.count where state.connections[c].gateway == Int32(g) && state.isOpen(state.connections[c]) {
            users.insert(state.connections[c].user)
        }
        return users.map { String(decoding: state.userKey(Int($0)), as: UTF8.self) }
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
