import ArgumentParser
import Chat
import Foundation
import Logging
import Metrics
import NIOCore
import NIOPosix
import Prometheus
import Presence
import PresenceServer
import SegmentLog

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the query server: gateway ingest, conversations and presence over HTTP, live pushes over WebSocket, on the embedded log.",
        discussion: """
            One process: the log writer, the live projection and the HTTP and WebSocket server. On start it \
            opens DIR (recovering the log if needed), loads the newest checkpoint, replays the log after it, \
            and ends with a gateway_down the connections its previous run left open (after a kill -9).

            While running it appends its own heartbeat every --heartbeat-interval, and a gateway_down for \
            any gateway whose heartbeats stopped more than --lease ago. On SIGTERM or SIGINT it stops \
            accepting, sends each WebSocket a close frame and waits up to --shutdown-timeout for the \
            connections to end; then it closes those left (clients that never answer the close frame) \
            itself, at once on a second SIGTERM or SIGINT. Every socket ends with its disconnect appended; \
            then it flushes, closes the log cleanly, writes a checkpoint and exits 0.

            Tokens are HS256 JWTs (`presence token` mints them) signed with the secret in \
            PRESENCE_TOKEN_SECRET or --secret-file (at least 32 bytes either way); --dev uses a built-in \
            development secret. A gateway token posts events for its own gateway only; one named like \
            this node (--node) may post nothing.

            Prints "listening on HOST:PORT" once it accepts connections (--port 0 picks a free port). \
            Nothing is created in DIR before the port is bound. Open http://HOST:PORT/ in a browser for the \
            web console: a chat view (a user's token) and an audit view (an operator's token); with --dev \
            its sign-in form mints the token.

            \(apiSummary)
            """
    )

    @Option(name: .long, help: ArgumentHelp("The data directory (created if missing).", valueName: "dir"))
    var data: String

    @Option(help: "The address to listen on.")
    var host: String = "127.0.0.1"

    @Option(parsing: .unconditional, help: "The port to listen on (0: any free port).")
    var port: Int = 8080

    @Option(help: ArgumentHelp("A file holding the token secret (at least 32 bytes).", valueName: "file"))
    var secretFile: String?

    @Flag(help: "Use the built-in development token secret. Never in production.")
    var dev = false

    @Option(help: ArgumentHelp("When to fsync: always, interval:MS or never.", valueName: "policy"))
    var fsync: FsyncArgument = .always

    @OptionGroup var horizon: HorizonOption

    @Option(help: ArgumentHelp("How far back in event time a posted event's \"id\" is remembered: an event whose id (from the same gateway) the log holds within it is acknowledged with the first offset and not written again (default: the late-arrival horizon).", valueName: "duration"))
    var idWindow: DurationArgument?

    @Option(help: ArgumentHelp("The largest request body, e.g. 4MiB (bytes, or KiB, MiB, GiB); larger ones get 413.", valueName: "size"))
    var maxBody = SizeArgument(default: "4MiB")

    @Option(help: ArgumentHelp("trace, debug, info, notice, warning, error or critical; debug logs every request and WebSocket session.", valueName: "level"))
    var logLevel: LogLevelArgument = .info

    @Option(help: ArgumentHelp("This node's gateway name, on its sockets' connects and disconnects and its heartbeats. Keep it the same across restarts: on start the node ends the connections its previous run left open. The name is reserved: a gateway token of this name may not post events.", valueName: "name"))
    var node: String = "presence-node"

    @Option(help: ArgumentHelp("Memory for the newest messages of the conversations used lately (the page a chat opens on is answered from it; older pages are read from disk through the message index), e.g. 64MiB.", valueName: "size"))
    var messageCache = SizeArgument(default: "64MiB")

    @Option(help: ArgumentHelp("How far back in the messages log's time a message's client_id is remembered: a retry within it gets the first post's seq and posts nothing.", valueName: "duration"))
    var clientIDWindow = DurationArgument(default: "24h")

    @Option(help: ArgumentHelp("Cluster mode: the NATS servers of a JetStream cluster (nats://host:port, comma-separated). Every write is published to the stream PRESENCE (presence events), CHAT (conversations and messages) or PRIVACY (privacy settings changes), 3 replicas, file storage, and answered once JetStream's quorum has it and this node has applied it; every node materializes the whole stream into its own data folder, the same event at the same offset on every node. Give every node its own --node name and --data folder.", valueName: "urls"))
    var cluster: String?

    @Option(help: ArgumentHelp("Cluster mode: copies of the stream, when this node creates it (1, 3 or 5).", valueName: "n"))
    var clusterReplicas: Int = 3

    @Option(parsing: .unconditional, help: ArgumentHelp("Frames a WebSocket client may fall behind before it is cut off (close code 4008; it reconnects and opens its conversations again, rather than miss a push).", valueName: "frames"))
    var pushQueueLimit: Int = PushSession.defaultQueueLimit

    @Option(help: ArgumentHelp("Shown presence changes kept (about 50 bytes each) for WebSocket clients that come back with the cursor they had reached ({\"op\":\"open\",..,\"presence_cursor\":N}): they get each change they missed instead of a fresh view. 0 keeps none.", valueName: "changes"))
    var resumeWindow: Int = PresenceNode.defaultResumeWindow

    @Option(help: ArgumentHelp("How often this node appends its own heartbeat (a number with ms, s, m, h or d).", valueName: "duration"))
    var heartbeatInterval = DurationArgument(default: "5s")

    @Option(help: ArgumentHelp("A gateway whose heartbeats stop for longer than this (e.g. 60s, 2m) gets a gateway_down at its last heartbeat.", valueName: "duration"))
    var lease = DurationArgument(default: "60s")

    @Option(help: ArgumentHelp("Keep this much presence history (e.g. 30d) and remove older whole sealed segments, at start and then every tenth of it (at most hourly), as `presence retain` does. Default: keep everything.", valueName: "duration"))
    var retention: DurationArgument?

    @Option(parsing: .unconditional, help: ArgumentHelp("Threads that serve connections (default: one per core). Where other busy processes share the cores, fewer can answer more: on this project's 2-core machine with the load generator on one core, 1 answers the snapshot about 1.25x faster (BENCHMARKS.md).", valueName: "n"))
    var eventLoops: Int?

    @Option(help: ArgumentHelp("On SIGTERM or SIGINT, how long to wait for the connections to end after the WebSocket close frames have gone out (e.g. 10s, 500ms); then those still open are closed by the server, each socket's disconnect appended as on a normal close, and it exits 0. Keep it below the grace period of whatever stops the server (systemd's TimeoutStopSec, Kubernetes' terminationGracePeriodSeconds: 30s by default). A second signal closes them at once.", valueName: "duration"))
    var shutdownTimeout = DurationArgument(default: "10s")

    /// The checks between options and of ranges, before anything runs.
    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be between 0 and 65535") }
        if let eventLoops, !(1...256).contains(eventLoops) { throw ValidationError("--event-loops must be between 1 and 256") }
        guard !node.isEmpty, node.utf8.count <= PresenceEvent.Limits.fieldBytes else { throw ValidationError("--node must be 1 to \(PresenceEvent.Limits.fieldBytes) bytes") }
        guard heartbeatInterval.milliseconds < lease.milliseconds else { throw ValidationError("--heartbeat-interval must be shorter than --lease") }
        guard pushQueueLimit >= 1 else { throw ValidationError("--push-queue-limit must be at least 1") }
        guard shutdownTimeout.milliseconds <= 3_600_000 else { throw ValidationError("--shutdown-timeout must be 1h or less") }
        guard resumeWindow >= 0 else { throw ValidationError("--resume-window must be 0 or more") }
        if retention != nil, cluster != nil { throw ValidationError("--retention is not supported with --cluster yet (every node's log is a copy of the stream)") }
        if let servers = clusterServers, servers.isEmpty { throw ValidationError("--cluster needs at least one nats://host:port") }
        guard [1, 3, 5].contains(clusterReplicas) else { throw ValidationError("--cluster-replicas must be 1, 3 or 5") }
    }

    /// `--cluster`'s servers, if given.
    var clusterServers: [String]? {
        cluster.map { $0.split(separator: ",").map { String($0.trimmingCharacters(in: .whitespaces)) }.filter { !$0.isEmpty } }
    }

    func run() async throws {
        var configuration = ServerConfiguration(data: data)
        do {
            let level = logLevel.level
            configuration.host = host
            configuration.port = port
            configuration.log.durability = fsync.durability
            configuration.horizon = horizon.requested
            configuration.maxBodyBytes = maxBody.bytes
            configuration.logLevel = level
            if let eventLoops { configuration.eventLoops = eventLoops }
            configuration.shutdownTimeout = .milliseconds(shutdownTimeout.milliseconds)
            // Recovery, checkpoints, leases and shutdown go to the same structured log as the server's.
            let logger = {
                var logger = Logger(label: "presence")
                logger.logLevel = level
                return logger
            }()
            guard let secret = try TokenAuthority.secret(file: secretFile, dev: dev) else {
                throw ValidationError("no token secret: set PRESENCE_TOKEN_SECRET, pass --secret-file, or --dev for development")
            }
            configuration.developmentTokens = secret == TokenAuthority.developmentSecret
            if secret == TokenAuthority.developmentSecret {
                printError("WARNING: --dev: tokens are signed with the built-in development secret; anyone can mint them. Never use this in production.")
            }
            let tokens = await TokenAuthority(secret: secret)
            // The port before the data directory: a server that cannot listen creates nothing in DIR.
            if port != 0 { try await checkCanListen(host: host, port: port) }
            let registry = PrometheusCollectorRegistry()
            MetricsSystem.bootstrap(HelpfulMetricsFactory(registry: registry))
            let heartbeat = heartbeatInterval.milliseconds, leaseTime = lease.milliseconds
            let window = idWindow?.milliseconds
            let keep = retention?.milliseconds
            var chat = ConversationStore.Options()
            chat.cacheBytes = messageCache.bytes
            chat.clientIDWindow = clientIDWindow.milliseconds
            let servers = clusterServers
            let state = try PresenceNode(data: data, configuration: configuration.log, horizon: configuration.horizon, idWindow: window, node: node,
                                         pushQueueLimit: pushQueueLimit, resumeWindow: resumeWindow, chat: chat, clusterMode: servers != nil, logger: logger)
            if let servers {
                try await state.joinCluster(servers: servers, replicas: clusterReplicas)
            }
            try await state.endPreviousRun()
            let keeper = Task { await state.keepAlive(interval: .milliseconds(heartbeat), lease: leaseTime) }
            let retainer = keep.map { keep in
                Task { await state.retain(keeping: keep, every: .milliseconds(min(max(keep / 10, 1000), 3_600_000))) }
            }
            let host = configuration.host
            let group = configuration.eventLoops.map { MultiThreadedEventLoopGroup(numberOfThreads: $0) }
            do {
                // Returns after SIGTERM/SIGINT once every connection has ended (within --shutdown-timeout).
                try await PresenceHTTPServer.run(state: state, tokens: tokens, configuration: configuration, metrics: registry,
                                                 eventLoopGroup: group) { bound in
                    var line = "listening on \(host):\(bound)\n"
                    line.withUTF8 { try? writeAll(1, UnsafeRawBufferPointer($0)) }
                }
            } catch let error as IOError {
                // The port was free a moment ago (checked above) and was taken since.
                throw listenError(error, host: host, port: port)
            }
            try await group?.shutdownGracefully()
            keeper.cancel()
            await keeper.value
            retainer?.cancel()
            await retainer?.value
            try await state.shutdown()
        } catch let exit as ExitCode {
            throw exit
        } catch {
            throw fail(error)
        }
    }
}

extension ServeCommand {
    /// Binds `host:port` and lets it go at once, to refuse a port in use (or an address this machine
    /// does not have) with a message that names it, before anything is opened or created.
    func checkCanListen(host: String, port: Int) async throws {
        do {
            let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .bind(host: host, port: port).get()
            try await channel.close()
        } catch let error as IOError {
            throw listenError(error, host: host, port: port)
        } catch {
            throw ServerError("cannot listen on \(host):\(port): \(error)")
        }
    }

    /// A failure to listen, in words: which address, and what to do.
    func listenError(_ error: IOError, host: String, port: Int) -> ServerError {
        if error.errnoCode == EADDRINUSE {
            return ServerError("cannot listen on \(host):\(port): the address is already in use (another server?); stop it or choose another --port")
        }
        return ServerError("cannot listen on \(host):\(port): \(String(cString: strerror(error.errnoCode)))")
    }
}

struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token",
        abstract: "Mint a bearer token for a user, a gateway, an operator or an admin.",
        discussion: """
            Signs with the same secret as `presence serve`: PRESENCE_TOKEN_SECRET, --secret-file, or --dev.

            An operator token (--operator) reads any user's history and past state and the log's figures \
            (the audit routes and the web console's audit view), and is nobody's chat account.

            An admin token (--admin) erases users while the server runs (POST /v1/admin/forget, as \
            `presence forget` on a stopped server) and does nothing else: mint it when it is needed, \
            with a short --ttl.

            A gateway token (--gateway) may post events naming its own gateway (--user) and nothing else. \
            The server's own gateway name (serve --node, default presence-node) is reserved: the server \
            refuses events from a gateway token of that name (this command cannot know a server's name).
            """
    )

    @Option(help: "The user id (or gateway name, with --gateway) the token speaks for: 1 to 256 bytes of UTF-8.")
    var user: String

    @Option(help: ArgumentHelp("How long the token is valid, e.g. 1h.", valueName: "duration"))
    var ttl = DurationArgument(default: "1h")

    @Flag(help: "A gateway token (may post events).")
    var gateway = false

    @Flag(name: .customLong("operator"), help: "An operator token (reads the audit routes: any user's history and past state, the log's figures).")
    var isOperator = false

    @Flag(name: .customLong("admin"), help: "An admin token (erases users: POST /v1/admin/forget; nothing else).")
    var isAdmin = false

    @Option(help: ArgumentHelp("A file holding the token secret (at least 32 bytes).", valueName: "file"))
    var secretFile: String?

    @Flag(help: "Use the built-in development secret.")
    var dev = false

    func run() async throws {
        do {
            if let problem = PresenceClaims.subjectProblem(user) {
                throw ValidationError("--user: a token for '\(user.prefix(40))\(user.count > 40 ? "…" : "")' cannot be minted: \(problem)")
            }
            let seconds = Double(ttl.milliseconds) / 1000
            guard let secret = try TokenAuthority.secret(file: secretFile, dev: dev) else {
                throw ValidationError("no token secret: set PRESENCE_TOKEN_SECRET, pass --secret-file, or --dev for development")
            }
            let tokens = await TokenAuthority(secret: secret)
            if [gateway, isOperator, isAdmin].filter({ $0 }).count > 1 {
                throw ValidationError("a token is for one of a gateway (--gateway), an operator (--operator) or an admin (--admin)")
            }
            print(try await tokens.mint(subject: user, role: gateway ? .gateway : isOperator ? .operator : isAdmin ? .admin : .user, ttl: seconds))
        } catch {
            throw fail(error)
        }
    }
}
