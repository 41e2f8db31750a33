import Chat
import Foundation
import Hummingbird
import Logging
import Metrics
import HummingbirdCore
import HummingbirdWebSocket
import NIOCore
import Prometheus
import ServiceLifecycle
import Presence
import Projector
import SegmentLog

/// How `presence serve` runs, validated once at start.
public struct ServerConfiguration: Sendable {
    public var data: String
    public var host = "127.0.0.1"
    public var port = 8080
    /// The largest request body accepted (bytes); larger ones get 413.
    public var maxBodyBytes = 4 << 20
    /// The late-arrival horizon asked for (nil: the stored one, else the default; see `StoredHorizon`).
    public var horizon: Int64?
    public var log = LogConfiguration()
    /// The server's log level; `debug` adds a line per request.
    public var logLevel: Logger.Level = .info
    /// Threads that run the connections (nil: NIO's shared group, one per core).
    public var eventLoops: Int?
    /// Tokens are signed with the development secret (`--dev`): the web console may mint them
    /// (`POST /v1/dev/tokens`), since anyone can anyway.
    public var developmentTokens = false
    /// How long a stop (SIGTERM, SIGINT) waits for the connections to end after the close frames have
    /// gone out, before it closes those left itself (`BoundedShutdown`).
    public var shutdownTimeout: Duration = .seconds(10)

    public init(data: String) { self.data = data }
}

/// The HTTP and WebSocket API: health, gateway ingest, conversations with the piggybacked snapshot,
/// a user's presence, and live pushes.
///
///     GET  /health                    no token: {"status":"ok","log_end_offset":N,"durable_end_offset":N}
///     GET  /metrics                   any token: Prometheus text (requests and latency by route,
///                                     events appended, commit latency)
///     POST /v1/events                 gateway token; NDJSON; all lines valid or nothing is written;
///                                     200 {"first_offset":..,"last_offset":..} once durable
///     GET  /v1/users/{id}/presence    user token; {"user":..,"online":..,"last_seen":..,"connections":..,
///                                     "presence_cursor":N}
///     GET  /v1/ws                     WebSocket (see `WebSocketSessions`): pushes presence changes of the
///                                     members of the conversations the client opens
///
/// and the conversation routes (`ConversationRoutes`), the audit routes (`AuditRoutes`) and the web
/// console (`ConsoleRoutes`).
///
/// Errors are `{"error":{"code":"...","message":"..."}}` with the matching status: 401 for a missing,
/// bad or expired token, 403 for a token without the right, 400 for bad input, 413 for a body over
/// the limit.
public enum PresenceHTTPServer {
    /// Serves until SIGTERM or SIGINT, then stops within `configuration.shutdownTimeout` (`BoundedShutdown`):
    /// returns once every connection has ended and its handler has finished (each WebSocket session's
    /// disconnect appended), so the caller may close the log. `onRunning` gets the bound port.
    /// `eventLoopGroup` runs the connections (nil: NIO's shared group); its owner shuts it down after this returns.
    public static func run(state: PresenceNode, tokens: TokenAuthority, configuration: ServerConfiguration,
                           metrics: PrometheusCollectorRegistry, eventLoopGroup: (any EventLoopGroup)? = nil,
                           onRunning: @escaping @Sendable (Int) async -> Void) async throws {
        let connections = OpenConnections()
        let app = application(state: state, tokens: tokens, configuration: configuration, metrics: metrics,
                              eventLoopGroup: eventLoopGroup, connections: connections, onRunning: onRunning)
        let logger = app.logger
        let service = BoundedShutdown(app: app, timeout: configuration.shutdownTimeout, connections: connections, state: state, logger: logger)
        // A second SIGTERM/SIGINT is the service's to act on (it ends the wait at once): the group
        // ignores it during a shutdown already under way.
        let group = ServiceGroup(configuration: .init(services: [service], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }

    /// Builds the application; `connections` tracks every connection it accepts.
    static func application(state: PresenceNode, tokens: TokenAuthority, configuration: ServerConfiguration,
                            metrics: PrometheusCollectorRegistry, eventLoopGroup: (any EventLoopGroup)?, connections: OpenConnections,
                            onRunning: @escaping @Sendable (Int) async -> Void) -> some ApplicationProtocol {
        let router = Router(context: BasicRequestContext.self, options: .autoGenerateHeadEndpoints)
        let fastPathServed = Counter(label: "presence_snapshot_fast_path_total")
        // Request counts and latency by route (swift-metrics, exported below in Prometheus text).
        router.add(middleware: RequestMetricsMiddleware())
        // One structured line per request (method, path, status, duration) at debug level (--log-level debug).
        router.add(middleware: LogRequestsMiddleware(.debug))
        // Hummingbird's own errors (no such route) in the API's JSON form, like every other error.
        router.add(middleware: JSONErrorsMiddleware())
        router.get("metrics") { request, _ in
            _ = try await authenticate(request, tokens)
            var out: [UInt8] = []
            metrics.emit(into: &out)
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                            body: .init(byteBuffer: ByteBuffer(bytes: out)))
        }
        router.get("health") { _, _ in
            // In cluster mode, also the stream sequence this node has applied and whether it has caught up.
            let cluster = state.clusterStatus.map { ",\"cluster\":{\"stream_sequence\":\($0.sequence),\"caught_up\":\($0.caughtUp)}" } ?? ""
            return json(.ok, "{\"status\":\"ok\",\"log_end_offset\":\(state.writer.endOffset),\"durable_end_offset\":\(state.writer.durableEndOffset)\(cluster)}")
        }
        router.post("v1/events") { request, _ in
            let claims = try await authenticate(request, tokens)
            guard claims.isGateway else { return error(.forbidden, "forbidden", "only a gateway token may post events") }
            // The node's own name is reserved: its heartbeats and gateway_downs are what keep its sockets'
            // users online, and a token of that name could end them all.
            guard claims.sub.value != state.node else {
                return error(.forbidden, "forbidden", "'\(state.node)' is this node's own gateway name (--node); a gateway token of that name may not post events")
            }
            var request = request
            let body: ByteBuffer
            do {
                body = try await request.collectBody(upTo: configuration.maxBodyBytes)
            } catch is NIOTooManyBytesError {
                return error(.contentTooLarge, "body_too_large", "the body is over the \(configuration.maxBodyBytes)-byte limit")
            }
            return try await ingest(body, gateway: claims.sub.value, state: state)
        }
        router.get("v1/users/:id/presence") { request, context in
            let claims = try await authenticateUser(request, tokens)
            let user = try pathParameter(context, "id", what: "user id")
            // Any user may ask; each field is shown as the privacy settings allow (`Access`).
            return json(.ok, userPresence(of: user, for: claims.sub.value, state: state))
        }
        addPrivacyRoutes(to: router, state: state, tokens: tokens, configuration: configuration)
        router.post("v1/conversations") { request, _ in
            let claims = try await authenticateUser(request, tokens)
            let members = try await decodeBody(NewConversation.self, request, limit: configuration.maxBodyBytes).members
            let (id, created) = try await chat { try await state.conversations.create(members: members, by: claims.sub.value) }
            // Two users' existing chat is answered again: 200 and its id, instead of 201 and a new one.
            return json(created ? .created : .ok, "{\"id\":\"\(id)\"}")
        }
        router.post("v1/conversations/:id/messages") { request, context in
            let claims = try await authenticateUser(request, tokens)
            let id = try pathParameter(context, "id", what: "conversation id")
            _ = try members(of: id, for: claims.sub.value, state: state).get()
            let message = try await decodeBody(NewMessage.self, request, limit: configuration.maxBodyBytes)
            let (seq, timestamp, repeated) = try await chat {
                try await state.conversations.post(to: id, sender: claims.sub.value, content: message.content, clientID: message.clientID)
            }
            // A retried client_id is answered as the first time, with 200: nothing new was created.
            return json(repeated ? .ok : .created, "{\"seq\":\(seq),\"ts\":\"\(Timestamp.format(timestamp))\"}")
        }
        router.get("v1/conversations/:id") { request, context in
            let claims = try await authenticateUser(request, tokens)
            let id = try pathParameter(context, "id", what: "conversation id")
            let query = request.uri.queryParameters
            let body = try snapshot(of: id, for: claims.sub.value, afterSeq: query.get("after_seq"), beforeSeq: query.get("before_seq"),
                                    limit: query.get("limit"), state: state).get()
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: body))
        }
        // The inbox: the caller's conversations, each with its last message and the peers' presence.
        router.get("v1/me/conversations") { request, _ in
            let claims = try await authenticateUser(request, tokens)
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: inbox(of: claims.sub.value, state: state)))
        }
        // Without an upgrade, /v1/ws explains itself: 401 without a valid token, 426 with one.
        router.get("v1/ws") { request, _ in
            _ = try await WebSocketSessions.authenticate(request, tokens)
            return error(.upgradeRequired, "upgrade_required", "/v1/ws is a WebSocket: connect with Upgrade: websocket")
        }
        // The audit routes (operators), the admin's erasure and the web console (its page and files at /).
        addAuditRoutes(to: router, state: state, tokens: tokens)
        addAdminRoutes(to: router, state: state, tokens: tokens)
        addConsoleRoutes(to: router, tokens: tokens, configuration: configuration)
        // Added after every route, so it wraps only what no route takes: a known path asked with another
        // method gets 405 and `Allow` instead of 404.
        router.add(middleware: MethodNotAllowedMiddleware(routes: router.routes))
        // Upgrade requests go to their own router; the session authenticates on the socket (see
        // `WebSocketSessions`).
        let webSocketRouter = Router(context: BasicWebSocketRequestContext.self)
        webSocketRouter.ws("v1/ws") { inbound, outbound, context in
            try await WebSocketSessions.run(inbound: inbound, outbound: outbound, request: context.request, state: state, tokens: tokens,
                                            logger: context.logger)
        }
        // HTTP/1 with the WebSocket upgrade, as `HTTPServerBuilder.http1WebSocketUpgrade(webSocketRouter:
        // configuration:)` builds it, with the snapshot's fast path in front of each connection.
        let webSocketResponder = webSocketRouter.buildResponder()
        let channelConfiguration = HTTP1WebSocketUpgradeChannel.Configuration(
            http1: .init(additionalChannelHandlers: [SnapshotFastPath.ResponseEnds()]),
            ws: .init(maxFrameSize: WebSocketSessions.maxFrameBytes, autoPing: .enabled(timePeriod: .seconds(30)))
        )
        let server = HTTPServerBuilder { responder in
            FastPathChannel(
                base: HTTP1WebSocketUpgradeChannel(responder: responder, webSocketResponder: webSocketResponder, configuration: channelConfiguration),
                connections: connections,
                makeFastPath: { SnapshotFastPath(state: state, tokens: tokens, maxBodyBytes: configuration.maxBodyBytes) { fastPathServed.increment() } }
            )
        }
        return Application(
            router: router,
            server: server,
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "PresenceLog"),
            onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? configuration.port) },
            eventLoopGroupProvider: eventLoopGroup.map { .shared($0) } ?? .singleton,
            logger: {
                var logger = Logger(label: "presence")
                logger.logLevel = configuration.logLevel
                return logger
            }()
        )
    }
}
