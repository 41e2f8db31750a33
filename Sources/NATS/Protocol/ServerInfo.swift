/// The server's `INFO` (sent first on every connection, and again when the cluster changes).
public struct ServerInfo: Codable, Sendable, Equatable {
    public var serverID: String
    public var serverName: String?
    public var version: String
    public var proto: Int?
    public var host: String?
    public var port: Int?
    public var headers: Bool?
    public var authRequired: Bool?
    public var tlsRequired: Bool?
    /// The largest payload (headers included) the server accepts, in bytes.
    public var maxPayload: Int
    /// Other servers of the cluster that clients may connect to (`host:port`).
    public var connectURLs: [String]?
    public var clientID: UInt64?
    public var clientIP: String?
    public var cluster: String?
    public var jetStream: Bool?
    /// Lame duck mode: the server is about to shut down and asks clients to move.
    public var lameDuckMode: Bool?
    public var domain: String?

    enum CodingKeys: String, CodingKey {
        case serverID = "server_id"
        case serverName = "server_name"
        case version, proto, host, port, headers
        case authRequired = "auth_required"
        case tlsRequired = "tls_required"
        case maxPayload = "max_payload"
        case connectURLs = "connect_urls"
        case clientID = "client_id"
        case clientIP = "client_ip"
        case cluster
        case jetStream = "jetstream"
        case lameDuckMode = "ldm"
        case domain
    }

    public init(serverID: String, serverName: String? = nil, version: String, maxPayload: Int, headers: Bool? = true, connectURLs: [String]? = nil) {
        self.serverID = serverID
        self.serverName = serverName
        self.version = version
        self.maxPayload = maxPayload
        self.headers = headers
        self.connectURLs = connectURLs
    }
}

/// What the client sends in `CONNECT`.
public struct ConnectInfo: Codable, Sendable, Equatable {
    /// The server answers every operation with `+OK` when true; this client sends false.
    public var verbose = false
    public var pedantic = false
    public var tlsRequired = false
    public var name: String?
    public var lang = "swift"
    public var version = "0.1.0"
    /// 1: the client understands INFO updates (cluster topology, `connect_urls`).
    public var `protocol` = 1
    /// The client sends and understands headers (HPUB/HMSG).
    public var headers = true
    /// A request to a subject nobody subscribes answers at once with status 503.
    public var noResponders = true
    /// Whether the client receives its own publishes on matching subscriptions.
    public var echo = true
    public var user: String?
    public var password: String?
    public var authToken: String?

    enum CodingKeys: String, CodingKey {
        case verbose, pedantic
        case tlsRequired = "tls_required"
        case name, lang, version
        case `protocol`
        case headers
        case noResponders = "no_responders"
        case echo
        case user
        case password = "pass"
        case authToken = "auth_token"
    }

    public init() {}
}
