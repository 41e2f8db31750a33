/// What a gateway reports.
public enum EventKind: UInt8, Sendable, CaseIterable {
    /// A device's connection opened.
    case connect = 1
    /// A device's connection closed.
    case disconnect = 2
    /// The gateway crashed or restarted: every connection it held ended at this time.
    case gatewayDown = 3
    /// The gateway is alive.
    case heartbeat = 4

    /// The name used in NDJSON (`"type"`).
    public var name: String {
        switch self {
        case .connect: "connect"
        case .disconnect: "disconnect"
        case .gatewayDown: "gateway_down"
        case .heartbeat: "heartbeat"
        }
    }

    /// Whether the event is about a gateway as a whole (no user, no conn).
    @inlinable public var isGatewayEvent: Bool { self == .gatewayDown || self == .heartbeat }
}

/// One presence event: a device of `user` connected to or disconnected from `gateway` at `timestamp`,
/// or (`gatewayDown`, `heartbeat`) news about the gateway itself, with empty `user` and `conn`.
public struct PresenceEvent: Sendable, Equatable, Hashable {
    public var kind: EventKind
    /// The user id (1 to 256 bytes of UTF-8); empty for gateway events.
    public var user: String
    /// The connection id, unique per device session, e.g. `bob-phone-7f3a`; empty for gateway events.
    public var conn: String
    /// The gateway that holds the connection.
    public var gateway: String
    /// Event time, ms since the epoch.
    public var timestamp: Int64
    /// An optional id the sender gives for de-duplication.
    public var id: String?

    public init(kind: EventKind, user: String, conn: String, gateway: String, timestamp: Int64, id: String? = nil) {
        precondition(kind.isGatewayEvent == user.isEmpty, "gateway events have no user; connection events have one")
        self.kind = kind
        self.user = user
        self.conn = conn
        self.gateway = gateway
        self.timestamp = timestamp
        self.id = id
    }

    /// A gateway event.
    public static func gateway(_ kind: EventKind, gateway: String, timestamp: Int64, id: String? = nil) -> PresenceEvent {
        PresenceEvent(kind: kind, user: "", conn: "", gateway: gateway, timestamp: timestamp, id: id)
    }

    /// Limits every field must keep.
    public enum Limits {
        public static let userBytes = 256
        public static let fieldBytes = 256
        public static let lineBytes = 64 * 1024
    }
}

/// How far behind the log's newest event time an event may arrive: older ones are refused at ingest
/// and never applied by the projector. 24 hours of event time.
public let defaultLateArrivalHorizon: Int64 = 86_400_000

/// The name of the log presence events go to in a data directory.
public let presenceLogName = "presence"
