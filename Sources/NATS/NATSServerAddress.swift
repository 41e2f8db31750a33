/// A server to connect to: `nats://[user:password@|token@]host[:port]` (port 4222 when not given).
public struct NATSServerAddress: Hashable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int
    /// User and password given in the URL, if any.
    public var user: String?
    public var password: String?
    /// A token given in the URL (`nats://token@host`), if any.
    public var token: String?

    public init(host: String, port: Int = 4222, user: String? = nil, password: String? = nil, token: String? = nil) {
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.token = token
    }

    /// Parses `nats://user:password@host:port`, `nats://token@host:port`, `host:port` or `host`.
    public init(parsing url: String) throws {
        var rest = Substring(url)
        if let scheme = rest.range(of: "://") {
            let name = rest[..<scheme.lowerBound].lowercased()
            guard name == "nats" else { throw NATSError(.connectFailed, "server URL '\(url)': only nats:// is supported (no TLS in this client)") }
            rest = rest[scheme.upperBound...]
        }
        if rest.hasSuffix("/") { rest = rest.dropLast() }
        var user: String?, password: String?, token: String?
        if let at = rest.lastIndex(of: "@") {
            let credentials = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = credentials.firstIndex(of: ":") {
                user = String(credentials[..<colon])
                password = String(credentials[credentials.index(after: colon)...])
            } else {
                token = String(credentials)
            }
        }
        var host = rest
        var port = 4222
        if let colon = rest.lastIndex(of: ":"), !rest.hasSuffix("]") {
            guard let parsed = Int(rest[rest.index(after: colon)...]), (1...65535).contains(parsed) else {
                throw NATSError(.connectFailed, "server URL '\(url)': the port is not a number from 1 to 65535")
            }
            port = parsed
            host = rest[..<colon]
        }
        if host.hasPrefix("["), host.hasSuffix("]") { host = host.dropFirst().dropLast() }
        guard !host.isEmpty else { throw NATSError(.connectFailed, "server URL '\(url)' names no host") }
        self.init(host: String(host), port: port, user: user, password: password, token: token)
    }

    /// `host:port`, without credentials (what errors and logs show).
    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// Whether two addresses name the same server, whatever their credentials.
    func sameServer(as other: NATSServerAddress) -> Bool { host == other.host && port == other.port }
}
