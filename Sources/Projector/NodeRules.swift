import Presence

/// What a client is shown of a user's presence, and when that changes: online or not, and while offline,
/// the last seen time. A second device coming or going changes neither, so it pushes nothing.
public struct ShownPresence: Equatable, Sendable {
    public var online: Bool
    /// The last seen time shown while offline (nil while online or when never seen).
    public var lastSeen: Int64?

    public init(_ state: PresenceProjection.UserState?) {
        self.init(online: state?.online ?? false, lastSeen: state?.lastSeen)
    }

    /// What is shown of a user `online` (or not) with `lastSeen`: a last seen only while offline.
    public init(online: Bool, lastSeen: Int64?) {
        self.online = online
        self.lastSeen = online ? nil : lastSeen
    }
}

/// The lease rules of a node (`presence serve`): gateways, the node among them, prove they are alive with
/// heartbeats; one whose heartbeats stop for longer than the lease is taken to be down. Every decision
/// is an event appended to the log (a `gateway_down` at the last heartbeat), so a replay reproduces it.
/// Pure: the node asks these rules and appends what they say.
public struct LeasePolicy: Sendable {
    /// This node's gateway name: its own sockets' connects and disconnects and its heartbeats carry it.
    public let node: String
    /// How long a gateway may be silent, ms.
    public let lease: Int64

    public init(node: String, lease: Int64) {
        self.node = node
        self.lease = lease
    }

    /// On a tick at wall-clock time `now`: this node's heartbeat, then a `gateway_down` for every other
    /// gateway whose heartbeats stopped longer than the lease ago by the log's clock (the newest event
    /// time, which this node's heartbeats move on) and that was not ended since. The gateway_down is at
    /// the gateway's last sign of life: its last heartbeat, or a later connect or disconnect it sent, so
    /// that a session it opened after its last heartbeat ends too (rule 3 ends sessions open at its time).
    public func tick(now: Int64, projection: PresenceProjection) -> (heartbeat: PresenceEvent, downs: [PresenceEvent]) {
        let clock = max(projection.maxTimestamp, now)
        let downs = projection.expiredLeases(lease: lease, now: clock).filter { $0.gateway != node }.map { expired in
            let lastActivity = max(expired.lastHeartbeat, projection.openConnections(onGateway: expired.gateway).lastActivity ?? expired.lastHeartbeat)
            return PresenceEvent.gateway(.gatewayDown, gateway: expired.gateway, timestamp: lastActivity)
        }
        return (.gateway(.heartbeat, gateway: node, timestamp: now), downs)
    }

    /// When the node starts: a `gateway_down` for itself at its last logged time if its previous run left
    /// connections open (it was killed), so that nobody stays online after a kill -9; nil otherwise.
    public func restart(projection: PresenceProjection) -> (event: PresenceEvent, open: Int)? {
        let (open, last) = projection.openConnections(onGateway: node)
        guard open > 0, let last else { return nil }
        return (.gateway(.gatewayDown, gateway: node, timestamp: last), open)
    }
}
