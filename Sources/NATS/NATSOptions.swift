import Logging

/// How a ``NATSConnection`` connects, authenticates, watches the server and reconnects. A value, read once
/// when the connection is made.
public struct NATSOptions: Sendable {
    /// The servers to try, in order (more are learnt from the servers' `connect_urls`).
    public var servers: [NATSServerAddress]
    /// User and password sent in CONNECT (the URL's own credentials win).
    public var user: String?
    public var password: String?
    /// A token sent in CONNECT as `auth_token` (the URL's own token wins).
    public var token: String?
    /// The name the server shows for this client (`connz`).
    public var name: String?
    /// Whether subscriptions receive this connection's own publishes.
    public var echo = true

    /// The longest a TCP connect plus the INFO / CONNECT / PING / PONG handshake may take.
    public var connectTimeout: Duration = .seconds(2)
    /// How often the client pings the server when connected.
    public var pingInterval: Duration = .seconds(30)
    /// Pings left unanswered before the connection is taken for dead and a reconnect starts.
    public var maxPingsOutstanding = 2
    /// Backoff between reconnect attempts.
    public var reconnect = ReconnectPolicy()
    /// Bytes of publishes kept while reconnecting, written once connected again; a publish that does not fit
    /// fails with `.reconnectBufferFull`. 0: publishes fail at once while disconnected.
    public var reconnectBufferSize = 8 * 1024 * 1024

    public var logger = Logger(label: "nats", factory: { _ in SwiftLogNoOpLogHandler() })

    /// Options for the servers at `urls` (`nats://host:port`, with optional credentials).
    public init(servers urls: [String]) throws {
        self.servers = try urls.map(NATSServerAddress.init(parsing:))
        guard !servers.isEmpty else { throw NATSError(.connectFailed, "no server to connect to") }
    }

    /// Options for the servers at `addresses`.
    public init(servers addresses: [NATSServerAddress]) {
        self.servers = addresses
    }
}

/// When to try again after a lost connection or a failed attempt.
///
/// The first attempt after a connection is lost goes at once to the next server of the list. Each failed
/// attempt after that waits `min(initialDelay × 2^(failures − 1), maxDelay)` plus a random jitter of up to
/// `jitter`, so clients of a restarted server do not all come back at the same instant.
public struct ReconnectPolicy: Sendable, Equatable {
    public var initialDelay: Duration = .milliseconds(50)
    public var maxDelay: Duration = .seconds(2)
    public var jitter: Duration = .milliseconds(100)
    /// Consecutive failed attempts before giving up and closing; nil: never give up.
    public var maxAttempts: Int? = 120

    public init(initialDelay: Duration = .milliseconds(50), maxDelay: Duration = .seconds(2), jitter: Duration = .milliseconds(100), maxAttempts: Int? = 120) {
        self.initialDelay = initialDelay
        self.maxDelay = maxDelay
        self.jitter = jitter
        self.maxAttempts = maxAttempts
    }

    /// The wait before attempt number `failures + 1` after `failures` failed ones; `unit` in [0, 1) draws the jitter.
    func delay(afterFailures failures: Int, unit: Double) -> Duration {
        guard failures > 0 else { return .zero }
        let doublings = min(failures - 1, 30)
        var base = initialDelay * (1 << doublings)
        if base > maxDelay { base = maxDelay }
        return base + jitter * unit
    }
}
