/// The life of a connection as a value: events in, actions out. ``NATSConnection`` performs the actions
/// (opening sockets, arming timers, failing waiters), so the decisions are tested without a socket.
///
/// ```
///             start                 handshake done
///   idle ─────────────▶ connecting ───────────────▶ connected
///                        │    ▲  ▲                     │
///        attempt failed  │    │  └─────────────────────┘ connection lost (next server at once)
///                        ▼    │ timer fired
///                       waiting (backoff + jitter)
///
///   any state ── close() or too many failed attempts ──▶ closed
/// ```
///
/// Before the first successful handshake a failed attempt moves straight to the next server, and when
/// every server has failed once the initial connect fails with what each one said.
struct ConnectionStateMachine {
    enum State: Equatable {
        case idle
        /// A TCP connect and handshake in progress (attempt numbers let stale callbacks be ignored).
        case connecting(server: NATSServerAddress, attempt: UInt64)
        case connected(server: NATSServerAddress)
        /// Waiting out the backoff before the next attempt.
        case waiting
        case closed
    }

    enum Action: Equatable {
        /// Open a connection to this server now (tag its callbacks with `attempt`).
        case connect(NATSServerAddress, attempt: UInt64)
        /// Call ``timerFired()`` after this delay.
        case wait(Duration)
        /// The handshake finished: resubscribe, write what was buffered, wake the waiters.
        case connected(NATSServerAddress, isReconnect: Bool)
        /// The initial connect failed on every server.
        case failInitialConnect(String)
        /// Give up: fail everything that waits and close.
        case close(String?)
        case none
    }

    private(set) var state = State.idle
    private(set) var pool: ServerPool
    let policy: ReconnectPolicy
    private var random: SplitMix64
    /// Failed attempts since the last successful handshake.
    private(set) var failures = 0
    private(set) var everConnected = false
    /// Successful handshakes after the first.
    private(set) var reconnects = 0
    private var attemptCounter: UInt64 = 0
    /// What each server said when the initial connect failed on it.
    private var initialFailures: [String] = []

    init(servers: [NATSServerAddress], policy: ReconnectPolicy, seed: UInt64) {
        self.pool = ServerPool(servers)
        self.policy = policy
        self.random = SplitMix64(seed: seed)
    }

    var isConnected: Bool { if case .connected = state { true } else { false } }
    var isClosed: Bool { state == .closed }

    /// The current attempt's number, if an attempt is under way.
    var currentAttempt: UInt64? { if case .connecting(_, let attempt) = state { attempt } else { nil } }

    mutating func start() -> Action {
        guard state == .idle else { return .none }
        return connectNext()
    }

    /// The server sent INFO during an attempt: learn its cluster's other servers.
    mutating func learn(connectURLs: [String]) {
        pool.add(connectURLs: connectURLs)
    }

    /// The attempt `attempt` finished its handshake.
    mutating func handshakeCompleted(attempt: UInt64) -> Action {
        guard case .connecting(let server, let current) = state, current == attempt else { return .none }
        state = .connected(server: server)
        failures = 0
        let isReconnect = everConnected
        if isReconnect { reconnects += 1 }
        everConnected = true
        return .connected(server, isReconnect: isReconnect)
    }

    /// The attempt `attempt` failed (connect refused, timed out, or the server closed during the handshake).
    mutating func attemptFailed(attempt: UInt64, reason: String) -> Action {
        guard case .connecting(let server, let current) = state, current == attempt else { return .none }
        if !everConnected {
            initialFailures.append("\(server): \(reason)")
            if initialFailures.count >= pool.count {
                state = .closed
                return .failInitialConnect(initialFailures.joined(separator: "; "))
            }
            return connectNext()
        }
        failures += 1
        if let max = policy.maxAttempts, failures >= max {
            state = .closed
            return .close("gave up after \(failures) failed reconnect attempts (last: \(server): \(reason))")
        }
        state = .waiting
        return .wait(policy.delay(afterFailures: failures, unit: random.nextUnit()))
    }

    /// The connected server went away.
    mutating func connectionLost() -> Action {
        guard case .connected = state else { return .none }
        return connectNext()
    }

    mutating func timerFired() -> Action {
        guard state == .waiting else { return .none }
        return connectNext()
    }

    mutating func closeRequested() -> Action {
        guard state != .closed else { return .none }
        state = .closed
        return .close(nil)
    }

    private mutating func connectNext() -> Action {
        let server = pool.next()
        attemptCounter += 1
        state = .connecting(server: server, attempt: attemptCounter)
        return .connect(server, attempt: attemptCounter)
    }
}

/// The servers a connection may use, tried in turn: the ones given, then those learnt from INFO's
/// `connect_urls` (which take the credentials of the first given server).
struct ServerPool: Equatable {
    private(set) var servers: [NATSServerAddress]
    /// The index of the server used last (-1: none yet).
    private var last = -1

    init(_ servers: [NATSServerAddress]) {
        self.servers = servers
    }

    var count: Int { servers.count }

    /// The server after the one used last (servers learnt since then come next).
    mutating func next() -> NATSServerAddress {
        last = (last + 1) % servers.count
        return servers[last]
    }

    /// Adds the `host:port` entries not already known.
    mutating func add(connectURLs: [String]) {
        for url in connectURLs {
            guard var address = try? NATSServerAddress(parsing: url) else { continue }
            guard !servers.contains(where: { $0.sameServer(as: address) }) else { continue }
            if let first = servers.first {
                address.user = first.user
                address.password = first.password
                address.token = first.token
            }
            servers.append(address)
        }
    }
}

/// A small seedable generator for the reconnect jitter (tests give a seed; connections draw one).
struct SplitMix64: Equatable {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A value in [0, 1).
    mutating func nextUnit() -> Double { Double(next() >> 11) / Double(1 << 53) }
}
