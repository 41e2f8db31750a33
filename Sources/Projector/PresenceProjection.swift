import Presence
import SegmentLog

/// The current presence state folded from the log: who is online, with how many connections, and
/// when each user was last seen. It applies `ConnectionRules`, event by event, in any order.
///
/// Built for speed and size: user ids, connections and gateways are interned to dense integers by
/// `ByteTable`s; per-user and per-connection fields live in parallel arrays; applying an event
/// allocates nothing (beyond amortized array growth) and reads no clock.
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
    }

    static let none = Int64.min
    static let noStart = Int64.max

    private var users = ByteTable(capacity: 1 << 12)
    private var userOpen: [Int32] = []
    private var userLastSeen: [Int64] = []
    private var userFirstConnection: [Int32] = []

    private var connections = ByteTable(capacity: 1 << 12)
    private var connectionUser: [Int32] = []
    private var connectionGateway: [Int32] = []
    /// Smallest connect ts, or `noStart`.
    private var connectionStart: [Int64] = []
    /// Largest disconnect ts, or `none`.
    private var connectionDisconnect: [Int64] = []
    /// Resolved end, or `none` while open.
    private var connectionEnd: [Int64] = []
    private var connectionReason: [UInt8] = []
    private var connectionNextOfUser: [Int32] = []

    private var gateways = ByteTable(capacity: 64)
    /// Each gateway's gateway_down times, ascending, without repeats.
    private var gatewayDowns: [[Int64]] = []
    private var gatewayHeartbeat: [Int64] = []

    /// Events applied.
    public private(set) var eventsApplied = 0
    /// The offset after the last record applied (the log offset this state reflects).
    public private(set) var nextOffset: Int64 = 0
    /// The newest event time applied.
    public private(set) var maxTimestamp = Int64.min
    /// Users with at least one open connection.
    public private(set) var onlineUsers = 0

    public init() {}

    /// Users seen.
    public var userCount: Int { users.count }
    /// Connections remembered (open and closed).
    public var connectionCount: Int { connections.count }
    /// Connections now open.
    public var openConnectionCount: Int { userOpen.reduce(0) { $0 + Int($1) } }

    /// Bytes held for users (tables and per-user fields), and for connections.
    public var memoryBytes: (users: Int, connections: Int) {
        let perUser = userOpen.capacity * 4 + userLastSeen.capacity * 8 + userFirstConnection.capacity * 4
        let perConnection = connectionUser.capacity * 4 + connectionGateway.capacity * 4 + connectionStart.capacity * 8
            + connectionDisconnect.capacity * 8 + connectionEnd.capacity * 8 + connectionReason.capacity
            + connectionNextOfUser.capacity * 4
        return (users.memoryBytes + perUser, connections.memoryBytes + perConnection)
    }

    /// Why a record could not be applied.
    public struct ApplyError: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    // MARK: Applying events

    /// Applies one log record.
    @inline(__always)
    public func apply(_ record: RecordView) throws(ApplyError) {
        guard let value = record.value else { throw ApplyError(description: "record at offset \(record.offset) has no value") }
        let view: EventCodec.View
        do { view = try EventCodec.view(value) } catch { throw ApplyError(description: "record at offset \(record.offset): \(error.description)") }
        switch view.kind {
        case .connect, .disconnect:
            guard let key = record.key, key.count > 0 else { throw ApplyError(description: "record at offset \(record.offset) has no user id") }
            applyConnectionEvent(view.kind == .connect, user: key, identity: view.connIdentity, gateway: view.gateway, at: record.timestamp)
        case .gatewayDown:
            applyGatewayDown(gateway: view.gateway, at: record.timestamp)
        case .heartbeat:
            let g = gatewayIndex(view.gateway)
            gatewayHeartbeat[g] = max(gatewayHeartbeat[g], record.timestamp)
        }
        eventsApplied += 1
        nextOffset = record.offset + 1
        if record.timestamp > maxTimestamp { maxTimestamp = record.timestamp }
    }

    /// Applies an event given as a value (tests, and callers that are not reading a log).
    public func apply(_ event: PresenceEvent, offset: Int64? = nil) {
        var buffer = RecordBuffer()
        EventCodec.append(event, to: &buffer)
        let key = buffer.key(at: 0), value = buffer.value(at: 0)
        value.withUnsafeBytes { value in
            let view: EventCodec.View
            do { view = try EventCodec.view(value) } catch { preconditionFailure("an event the codec just wrote does not decode: \(error)") }
            switch event.kind {
            case .connect, .disconnect:
                (key ?? []).withUnsafeBytes { key in
                    applyConnectionEvent(event.kind == .connect, user: key, identity: view.connIdentity, gateway: view.gateway, at: event.timestamp)
                }
            case .gatewayDown:
                applyGatewayDown(gateway: view.gateway, at: event.timestamp)
            case .heartbeat:
                let g = gatewayIndex(view.gateway)
                gatewayHeartbeat[g] = max(gatewayHeartbeat[g], event.timestamp)
            }
        }
        eventsApplied += 1
        if let offset { nextOffset = offset + 1 }
        maxTimestamp = max(maxTimestamp, event.timestamp)
    }

    @inline(__always)
    private func applyConnectionEvent(_ isConnect: Bool, user: UnsafeRawBufferPointer, identity: UnsafeRawBufferPointer,
                                      gateway: UnsafeRawBufferPointer, at timestamp: Int64) {
        let hash = ByteTable.hash(user, identity)
        let (c, inserted) = connections.intern(user, identity, hash: hash)
        if inserted {
            let empty = UnsafeRawBufferPointer(start: user.baseAddress, count: 0)
            let (u, newUser) = users.intern(user, empty, hash: ByteTable.hash(user, empty))
            if newUser {
                userOpen.append(0)
                userLastSeen.append(Self.none)
                userFirstConnection.append(-1)
            }
            connectionUser.append(Int32(u))
            connectionGateway.append(Int32(gatewayIndex(gateway)))
            connectionStart.append(Self.noStart)
            connectionDisconnect.append(Self.none)
            connectionEnd.append(Self.none)
            connectionReason.append(0)
            connectionNextOfUser.append(userFirstConnection[u])
            userFirstConnection[u] = Int32(c)
        }
        if isConnect {
            guard timestamp < connectionStart[c] else { return }  // a repeat or a later connect changes nothing
            if !inserted {
                // The earliest connect names the connection's gateway (a disconnect may have named it first).
                connectionGateway[c] = Int32(gatewayIndex(gateway))
            }
            let wasOpen = !inserted && isOpen(c)
            let before = inserted ? Self.none : contribution(c)
            connectionStart[c] = timestamp
            resolve(c, wasOpen: wasOpen, before: before)
        } else {
            guard timestamp > connectionDisconnect[c] else { return }
            let wasOpen = !inserted && isOpen(c)
            let before = inserted ? Self.none : contribution(c)
            connectionDisconnect[c] = timestamp
            resolve(c, wasOpen: wasOpen, before: before)
        }
    }

    private func applyGatewayDown(gateway: UnsafeRawBufferPointer, at timestamp: Int64) {
        let g = gatewayIndex(gateway)
        var downs = gatewayDowns[g]
        var low = 0, high = downs.count
        while low < high {
            let mid = (low + high) >> 1
            if downs[mid] < timestamp { low = mid + 1 } else { high = mid }
        }
        if low < downs.count && downs[low] == timestamp { return }  // seen before
        downs.insert(timestamp, at: low)
        gatewayDowns[g] = downs
        // Every connection of this gateway that started at or before it and is open or ends later.
        let g32 = Int32(g)
        for c in 0..<connectionGateway.count where connectionGateway[c] == g32 {
            let start = connectionStart[c]
            guard start != Self.noStart, start <= timestamp else { continue }
            let end = connectionEnd[c]
            guard end == Self.none || end > timestamp else { continue }
            resolve(c, wasOpen: end == Self.none, before: contribution(c))
        }
    }

    @inline(__always)
    private func isOpen(_ c: Int) -> Bool {
        connectionEnd[c] == Self.none && connectionStart[c] != Self.noStart
    }

    /// Rule 5's contribution of connection `c` as it stands, or `none` when it is open.
    @inline(__always)
    private func contribution(_ c: Int) -> Int64 {
        let end = connectionEnd[c]
        guard end != Self.none else { return Self.none }
        let start = connectionStart[c]
        return start == Self.noStart ? end : max(start, end)
    }

    /// Re-applies the rules to connection `c` and carries the change over to its user.
    @inline(__always)
    private func resolve(_ c: Int, wasOpen: Bool, before: Int64) {
        let start = connectionStart[c]
        let disconnect = connectionDisconnect[c]
        let resolution = gatewayDowns[Int(connectionGateway[c])].withUnsafeBufferPointer { downs in
            ConnectionRules.resolve(start: start == Self.noStart ? nil : start,
                                    disconnect: disconnect == Self.none ? nil : disconnect, gatewayDowns: downs)
        }
        connectionEnd[c] = resolution.end ?? Self.none
        connectionReason[c] = resolution.reason?.rawValue ?? 0
        let u = Int(connectionUser[c])
        let nowOpen = resolution.isOpen
        if nowOpen != wasOpen {
            let count = userOpen[u] + (nowOpen ? 1 : -1)
            if count == 1 && nowOpen { onlineUsers += 1 }
            if count == 0 && !nowOpen { onlineUsers -= 1 }
            userOpen[u] = count
        }
        let after = contribution(c)
        if after > userLastSeen[u] {
            userLastSeen[u] = after
        } else if before == userLastSeen[u] && after < before {
            // The user's latest contribution shrank (a late event corrected it): take the max again.
            var best = Self.none
            var next = userFirstConnection[u]
            while next >= 0 {
                best = max(best, contribution(Int(next)))
                next = connectionNextOfUser[Int(next)]
            }
            userLastSeen[u] = best
        }
    }

    private func gatewayIndex(_ gateway: UnsafeRawBufferPointer) -> Int {
        let empty = UnsafeRawBufferPointer(start: gateway.baseAddress, count: 0)
        let (g, inserted) = gateways.intern(gateway, empty, hash: ByteTable.hash(gateway, empty))
        if inserted {
            gatewayDowns.append([])
            gatewayHeartbeat.append(Self.none)
        }
        return g
    }

    // MARK: Queries

    /// The state of `user`, or nil if the log never mentioned them.
    public func state(of user: String) -> UserState? {
        var bytes = Array(user.utf8)
        return bytes.withUnsafeMutableBytes { raw -> UserState? in
            let key = UnsafeRawBufferPointer(raw)
            let empty = UnsafeRawBufferPointer(start: key.baseAddress, count: 0)
            guard let u = users.find(key, empty, hash: ByteTable.hash(key, empty)) else { return nil }
            return state(at: u)
        }
    }

    private func state(at u: Int) -> UserState {
        let lastSeen = userLastSeen[u]
        return UserState(user: String(decoding: users.bytes(u), as: UTF8.self), online: userOpen[u] > 0,
                         lastSeen: lastSeen == Self.none ? nil : lastSeen, connections: Int(userOpen[u]))
    }

    /// Every user's state, sorted by user id (byte order).
    public func allStates() -> [UserState] {
        var order = Array(0..<users.count)
        order.sort { users.bytes($0).lexicographicallyPrecedes(users.bytes($1)) }
        return order.map(state(at:))
    }

    /// The gateways seen, with their last heartbeat time (nil if none).
    public func gatewayHeartbeats() -> [(gateway: String, lastHeartbeat: Int64?)] {
        (0..<gateways.count).map { g in
            (String(decoding: gateways.bytes(g), as: UTF8.self), gatewayHeartbeat[g] == Self.none ? nil : gatewayHeartbeat[g])
        }
    }
}
