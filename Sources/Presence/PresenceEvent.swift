/// What a gateway reports.
public enum EventKind: UInt8, Sendable, CaseIterable {
    /// A device's connection opened.
    case connect = 1
    /// A device's connection closed.
    case disconnect = 2

    /// The name used in NDJSON (`"type"`).
    public var name: String {
        switch self {
        case .connect: "connect"
        case .disconnect: "disconnect"
        }
    }

    /// The kind named `name` in NDJSON, if any.
    public init?(name: some Collection<UInt8>) {
        if name.elementsEqual("connect".utf8) { self = .connect }
        else if name.elementsEqual("disconnect".utf8) { self = .disconnect }
        else { return nil }
    }
}

/// One presence event: a device of `user` connected to or disconnected from `gateway` at `timestamp`.
public struct PresenceEvent: Sendable, Equatable, Hashable {
    public var kind: EventKind
    /// The user id (1 to 256 bytes of UTF-8).
    public var user: String
    /// The connection id, unique per device session, e.g. `bob-phone-7f3a`.
    public var conn: String
    /// The gateway that holds the connection.
    public var gateway: String
    /// Event time, ms since the epoch.
    public var timestamp: Int64
    /// An optional id the sender gives for de-duplication.
    public var id: String?

    public init(kind: EventKind, user: String, conn: String, gateway: String, timestamp: Int64, id: String? = nil) {
        self.kind = kind
        self.user = user
        self.conn = conn
        self.gateway = gateway
        self.timestamp = timestamp
        self.id = id
    }

    /// Limits every field must keep.
    public enum Limits {
        public static let userBytes = 256
        public static let fieldBytes = 256
        public static let lineBytes = 64 * 1024
    }
}

/// The name of the log presence events go to in a data directory.
public let presenceLogName = "presence"
