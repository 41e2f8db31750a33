import Chat
import Foundation
import Hummingbird
import Logging
import Metrics
import HummingbirdCore
import HummingbirdWebSocket
import NIOCore
import Prometheus
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
/// Errors are `{"error":{"code":"...","message":"..."}}` with the matching status: 401 for a missing,
/// bad or expired token, 403 for a token without the right, 400 for bad input, 413 for a body over
/// the limit.
public enum PresenceHTTPServer {
    /// Builds the application; `onRunning` gets the bound port. `eventLoopGroup` runs the connections
    /// (nil: NIO's shared group); its owner shuts it down after the application has stopped.
    public static func application(state: LiveState, tokens: TokenAuthority, configuration: ServerConfiguration,
                                   metrics: PrometheusCollectorRegistry, eventLoopGroup: (any EventLoopGroup)? = nil,
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
            json(.ok, "{\"status\":\"ok\",\"log_end_offset\":\(state.writer.endOffset),\"durable_end_offset\":\(state.writer.durableEndOffset)}")
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
            // Presence is shared with members of a common conversation (and with oneself).
            guard state.access.maySeePresence(of: user, viewer: claims.sub.value) else {
                return error(.forbidden, "forbidden", "you share no conversation with '\(user)'")
            }
            return state.read { projection in
                var out: [UInt8] = Array("{\"user\":".utf8)
                EventJSON.appendString(user, to: &out)
                out.append(44)
                appendPresenceFields(of: user, projection, to: &out)
                out.append(contentsOf: ",\"presence_cursor\":\(projection.nextOffset)}".utf8)
                return json(.ok, String(decoding: out, as: UTF8.self))
            }
        }
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
        // Added after every route, so it wraps only what no route takes: a known path asked with another
        // method gets 405 and `Allow` instead of 404.
        router.add(middleware: MethodNotAllowedMiddleware(routes: router.routes))
        // Upgrade requests go to their own router; the session authenticates on the socket (see
        // `WebSocketSessions`).
        let webSocketRouter = Router(context: BasicWebSocketRequestContext.self)
        webSocketRouter.ws("v1/ws") { inbound, outbound, context in
            await WebSocketSessions.run(inbound: inbound, outbound: outbound, request: context.request, state: state, tokens: tokens,
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

    /// Validates every line, then appends them all as one request: all or nothing. The sender is the
    /// gateway `gateway` (its token's name): a line naming another gateway refuses the whole body (403).
    static func ingest(_ body: ByteBuffer, gateway: String, state: LiveState) async throws -> Response {
        let parser = NDJSONEventParser()
        var records = RecordBuffer()
        var problems: [(line: Int, reason: String)] = []
        var foreign: [(line: Int, reason: String)] = []
        let ownGateway = Array(gateway.utf8)
        var lateArrivals = state.lateArrivalGuard()
        lateArrivals.refuser = .server
        var recordLines: [Int] = []  // the body's line number of each record
        body.withUnsafeReadableBytes { raw in
            NDJSONLines.forEach(in: raw) { number, line in
                do throws(EventParseError) {
                    if let named = try parser.append(line, to: &records, admittedBy: &lateArrivals, boundTo: ownGateway) {
                        foreign.append((number, "names gateway \"\(named)\"; this token is for gateway \"\(gateway)\""))
                    }
                    while recordLines.count < records.count { recordLines.append(number) }
                } catch {
                    problems.append((number, error.reason))
                }
            }
        }
        // A gateway speaks only for itself: one line naming another refuses the body, before any other
        // problem is looked at.
        if !foreign.isEmpty {
            return lineErrors(.forbidden, "forbidden", "\(foreign.count) line\(foreign.count == 1 ? " names" : "s name") another gateway than the token's; nothing was written", foreign)
        }
        if !problems.isEmpty {
            return lineErrors(.badRequest, "invalid_events", "\(problems.count) line\(problems.count == 1 ? "" : "s") rejected; nothing was written", problems)
        }
        guard !records.isEmpty else { return error(.badRequest, "empty_body", "the body holds no events") }
        func line(of record: Int?) -> Int { record.flatMap { recordLines.indices.contains($0) ? recordLines[$0] : nil } ?? 0 }
        let ack: LiveState.EventsAck
        do {
            ack = try await state.appendEvents(records)
        } catch {
            if let conflict = error as? LiveState.EventIDConflict {
                return lineErrors(.badRequest, "invalid_events", "1 line rejected; nothing was written", [(line(of: conflict.record), conflict.reason)])
            }
            guard let failure = error as? LogError else { throw error }
            guard failure.code == .refused else { return self.error(.serviceUnavailable, "log_unavailable", failure.message) }
            // Checked again on the commit thread against what was written since (a concurrent request
            // may have moved the newest event time on): refused whole, nothing written.
            return lineErrors(.badRequest, "invalid_events", "1 line rejected; nothing was written", [(line(of: failure.recordIndex), failure.message)])
        }
        // The offsets of the body's events; a repeat of an event id already written is at its first offset.
        var out = "{\"first_offset\":\(ack.offsets.min() ?? 0),\"last_offset\":\(ack.offsets.max() ?? 0)"
        if !ack.repeats.isEmpty {
            out += ",\"repeats\":[" + ack.repeats.map { "{\"line\":\(line(of: $0)),\"offset\":\(ack.offsets[$0])}" }.joined(separator: ",") + "]"
        }
        return json(.ok, out + "}")
    }

    /// `{"error":{"code":..,"message":..,"lines":[{"line":N,"reason":".."},..]}}` (the first 1000 lines).
    static func lineErrors(_ status: HTTPResponse.Status, _ code: String, _ message: String, _ lines: [(line: Int, reason: String)]) -> Response {
        var out: [UInt8] = Array("{\"error\":{\"code\":\"\(code)\",\"message\":".utf8)
        EventJSON.appendString(message, to: &out)
        out.append(contentsOf: ",\"lines\":[".utf8)
        for (index, problem) in lines.prefix(1000).enumerated() {
            if index > 0 { out.append(44) }
            out.append(contentsOf: "{\"line\":\(problem.line),\"reason\":".utf8)
            EventJSON.appendString(problem.reason, to: &out)
            out.append(125)
        }
        out.append(contentsOf: "]}}".utf8)
        return json(status, String(decoding: out, as: UTF8.self))
    }

    /// The members of conversation `id`, if `caller` is one of them: 404 for an unknown conversation,
    /// 403 for a caller outside it.
    static func members(of id: String, for caller: String, state: LiveState) -> Result<[String], APIError> {
        state.access.conversation(id, for: caller).mapError(APIError.init(chat:))
    }

    /// Runs a chat operation, answering its refusals (`ChatError`) as the API's errors.
    static func chat<T>(_ operation: () async throws -> T) async throws -> T {
        do {
            return try await operation()
        } catch {
            if let refusal = error as? ChatError { throw APIError(chat: refusal) }
            throw error
        }
    }

    /// The body of `GET /v1/conversations/{id}` for `caller`: a page of messages (at most `limit`,
    /// default 50, capped at 200: the oldest after `afterSeq`, the newest before `beforeSeq`, or with
    /// neither the newest of all, as a chat opens at the bottom), always in seq order, and every other
    /// member's presence with the cursor it reflects. Written straight into the buffer: the messages'
    /// JSON is encoded once, when they are posted.
    static func snapshot(of id: String, for caller: String, afterSeq afterText: String?, beforeSeq beforeText: String? = nil,
                         limit limitText: String?, state: LiveState) -> Result<ByteBuffer, APIError> {
        let members: [String]
        switch self.members(of: id, for: caller, state: state) {
        case .success(let found): members = found
        case .failure(let error): return .failure(error)
        }
        let page: ConversationStore.Page
        switch (afterText, beforeText) {
        case (.some, .some):
            return .failure(APIError(.badRequest, "invalid_request", "give after_seq (older to newer) or before_seq (newer to older), not both"))
        case (.some(let text), nil):
            guard let seq = wholeNumber(text) else { return .failure(APIError(.badRequest, "invalid_request", "after_seq must be a whole number >= 0")) }
            page = .after(seq)
        case (nil, .some(let text)):
            guard let seq = wholeNumber(text) else { return .failure(APIError(.badRequest, "invalid_request", "before_seq must be a whole number >= 0")) }
            page = .before(seq)
        case (nil, nil):
            page = .latest
        }
        guard let limit = wholeNumber(limitText ?? "50"), limit >= 1 else {
            return .failure(APIError(.badRequest, "invalid_request", "limit must be a whole number >= 1 (above 200 it counts as 200)"))
        }
        var buffer = ByteBuffer()
        buffer.reserveCapacity(4096)
        var out: [UInt8] = Array("{\"conversation_id\":".utf8)
        EventJSON.appendString(id, to: &out)
        out.append(contentsOf: ",\"messages\":[".utf8)
        buffer.writeBytes(out)
        let hasMore: Bool
        do {
            hasMore = try state.conversations.writeMessagesJSON(of: id, page: page, limit: min(limit, 200)) { buffer.writeBytes($0) }
        } catch {
            return .failure(APIError(.internalServerError, "storage_error", "\(error)"))
        }
        out.removeAll(keepingCapacity: true)
        out.append(contentsOf: "],\"has_more\":\(hasMore),\"presence\":".utf8)
        // Presence of every other member and the cursor it reflects, read together.
        state.read { projection in
            appendPresence(of: members, except: caller, projection, to: &out)
            out.append(contentsOf: ",\"presence_cursor\":\(projection.nextOffset)}".utf8)
        }
        buffer.writeBytes(out)
        return .success(buffer)
    }

    /// The body of `GET /v1/me/conversations`: `{"conversations":[{"id","members","last_message",
    /// "presence"}],"presence_cursor":N}`, the most recently active first; every presence is read in one
    /// go with the cursor, as a snapshot's is.
    static func inbox(of caller: String, state: LiveState) -> ByteBuffer {
        let summaries = state.conversations.conversations(of: caller)
        var out: [UInt8] = Array("{\"conversations\":[".utf8)
        state.read { projection in
            for (index, summary) in summaries.enumerated() {
                if index > 0 { out.append(44) }
                out.append(contentsOf: "{\"id\":".utf8)
                EventJSON.appendString(summary.id, to: &out)
                out.append(contentsOf: ",\"members\":[".utf8)
                for (position, member) in summary.members.enumerated() {
                    if position > 0 { out.append(44) }
                    EventJSON.appendString(member, to: &out)
                }
                out.append(contentsOf: "],\"last_message\":".utf8)
                if let last = summary.lastMessage { out.append(contentsOf: last.json) } else { out.append(contentsOf: "null".utf8) }
                out.append(contentsOf: ",\"presence\":".utf8)
                appendPresence(of: summary.members, except: caller, projection, to: &out)
                out.append(125)
            }
            out.append(contentsOf: "],\"presence_cursor\":\(projection.nextOffset)}".utf8)
        }
        return ByteBuffer(bytes: out)
    }

    /// `{"bob":{"online":..,"last_seen":..,"connections":..},..}` for every member but `caller`.
    static func appendPresence(of members: [String], except caller: String, _ projection: PresenceProjection, to out: inout [UInt8]) {
        out.append(123)
        var first = true
        for member in members where member != caller {
            if !first { out.append(44) }
            first = false
            EventJSON.appendString(member, to: &out)
            out.append(contentsOf: ":{".utf8)
            appendPresenceFields(of: member, projection, to: &out)
            out.append(125)
        }
        out.append(125)
    }

    /// `"online":..,"last_seen":..,"connections":..` for `user` (offline with no last seen if never seen).
    static func appendPresenceFields(of user: String, _ projection: PresenceProjection, to out: inout [UInt8]) {
        (projection.state(of: user) ?? .init(user: user, online: false, lastSeen: nil, connections: 0)).appendJSONFields(to: &out)
    }

    /// `POST /v1/conversations`' body.
    struct NewConversation: Decodable, JSONBodyShape {
        var members: [String]
        static let example = #"{"members":["alice","bob"]}"#
    }

    /// `POST /v1/conversations/{id}/messages`' body.
    struct NewMessage: Decodable, JSONBodyShape {
        var content: String
        /// The sender's own id for the message: a retry with the same one is not posted twice.
        var clientID: String?
        enum CodingKeys: String, CodingKey { case content, clientID = "client_id" }
        static let example = #"{"content":"hey"}"#
    }

    /// The request body as `Body`, after `StrictJSON`'s rules (the events' rules: valid UTF-8 and
    /// escapes, no field twice); throws the 400 (naming what is wrong) or 413 to send.
    static func decodeBody<Body: Decodable & JSONBodyShape>(_ type: Body.Type, _ request: Request, limit: Int) async throws -> Body {
        var request = request
        let body: ByteBuffer
        do {
            body = try await request.collectBody(upTo: limit)
        } catch is NIOTooManyBytesError {
            throw APIError(.contentTooLarge, "body_too_large", "the body is over the \(limit)-byte limit")
        } catch {
            throw APIError(.badRequest, "invalid_request", "the body could not be read: \(error)")
        }
        return try decodeJSON(Body.self, Array(body.readableBytesView), what: "the body")
    }

    /// `bytes` as `Body` (a JSON object), or the 400 that says what is wrong with it; `what` names it
    /// ("the body", "the frame").
    static func decodeJSON<Body: Decodable & JSONBodyShape>(_ type: Body.Type, _ bytes: [UInt8], what: String) throws -> Body {
        do throws(EventParseError) {
            try StrictJSON.check(bytes)
        } catch {
            throw APIError(.badRequest, "invalid_json", "\(what) is not valid JSON: \(error.reason)")
        }
        guard bytes.first(where: { $0 != 32 && $0 != 9 && $0 != 10 && $0 != 13 }) == 123 else {
            throw APIError(.badRequest, "invalid_json", "\(what) must be a JSON object, such as \(Body.example)")
        }
        do {
            return try JSONDecoder().decode(Body.self, from: Data(bytes))
        } catch let DecodingError.keyNotFound(key, _) {
            throw APIError(.badRequest, "invalid_request", "\(what) has no \"\(key.stringValue)\": it should be like \(Body.example)")
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context) {
            let field = context.codingPath.first?.stringValue ?? "?"
            throw APIError(.badRequest, "invalid_request", "\"\(field)\" in \(what) has the wrong type: it should be like \(Body.example)")
        } catch {
            throw APIError(.badRequest, "invalid_request", "\(what) is not of the expected form \(Body.example)")
        }
    }

    /// The claims of the request's bearer token; throws the 401 to send.
    static func authenticate(_ request: Request, _ tokens: TokenAuthority) async throws -> PresenceClaims {
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer ") else {
            throw APIError(.unauthorized, "unauthorized", "a bearer token is required (Authorization: Bearer <token>)")
        }
        do {
            return try await tokens.verify(String(header.dropFirst("Bearer ".count)))
        } catch {
            throw APIError(.unauthorized, "unauthorized", "the token is not valid: \(TokenAuthority.explain(error))")
        }
    }

    /// A path parameter, percent-decoded (`%F0%9F%99%82` is 🙂, `%20` a space, `%2F` a slash: the router
    /// splits the path before decoding, so an encoded slash stays inside the id); 400 when it is not
    /// percent-encoded UTF-8 or is no id at all (user and conversation ids are 1 to 256 bytes).
    static func pathParameter(_ context: some RequestContext, _ name: String, what: String) throws -> String {
        let raw = try context.parameters.require(name)
        guard let decoded = raw.removingPercentEncoding else {
            throw APIError(.badRequest, "invalid_request", "the \(what) in the path, '\(raw)', is not valid percent-encoded UTF-8")
        }
        guard !decoded.isEmpty, decoded.utf8.count <= PresenceEvent.Limits.userBytes else {
            throw APIError(.badRequest, "invalid_request", "the \(what) in the path is \(decoded.utf8.count) bytes; ids are 1 to \(PresenceEvent.Limits.userBytes) bytes")
        }
        return decoded
    }

    /// The claims of a user's token; throws the 401 to send, or a 403 for a gateway token: a gateway
    /// may post events and nothing else (it is no member of any conversation, and sees no one's presence).
    static func authenticateUser(_ request: Request, _ tokens: TokenAuthority) async throws -> PresenceClaims {
        let claims = try await authenticate(request, tokens)
        guard !claims.isGateway else { throw gatewayRefused }
        return claims
    }

    /// The answer to a gateway token on a route for users.
    static let gatewayRefused = APIError(.forbidden, "forbidden", "a gateway token may only post events (POST /v1/events); this route takes a user's token")

    /// A query's whole number: decimal digits only; one too long for an Int counts as `Int.max` (a
    /// `limit` is capped anyway, and no seq is that large).
    static func wholeNumber(_ text: String) -> Int? {
        guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
        return Int(text) ?? .max
    }

    static func json(_ status: HTTPResponse.Status, _ body: String) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: body)))
    }

    static func error(_ status: HTTPResponse.Status, _ code: String, _ message: String) -> Response {
        json(status, String(decoding: errorBody(code, message), as: UTF8.self))
    }

    /// `{"error":{"code":"...","message":"..."}}`, the body of every error.
    static func errorBody(_ code: String, _ message: String) -> [UInt8] {
        var out: [UInt8] = Array("{\"error\":{\"code\":\"\(code)\",\"message\":".utf8)
        EventJSON.appendString(message, to: &out)
        out.append(contentsOf: "}}".utf8)
        return out
    }
}

/// Answers Hummingbird's own errors (a path no route takes: 404) as `{"error":{"code":"...","message":"..."}}`
/// like every error of the API, instead of an empty body.
struct JSONErrorsMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError {
            let code: String
            let message: String
            switch error.status {
            case .notFound: (code, message) = ("not_found", error.body ?? "no route for \(request.method) \(request.uri.path)")
            case .methodNotAllowed: (code, message) = ("method_not_allowed", error.body ?? "\(request.uri.path) does not take \(request.method)")
            default: (code, message) = ("http_error", error.body ?? error.status.reasonPhrase)
            }
            var response = PresenceHTTPServer.error(error.status, code, message)
            for field in error.headers where response.headers[field.name] == nil { response.headers.append(field) }
            return response
        }
    }
}

/// Answers a request for a path some route takes, with a method none of them takes, with 405 and the
/// methods the path does take in `Allow` (RFC 9110, 15.5.6); Hummingbird's router alone answers 404.
/// Only sees what no route took (see where it is added); `JSONErrorsMiddleware` writes the body.
struct MethodNotAllowedMiddleware<Context: RequestContext>: RouterMiddleware {
    /// Each route's path, split into its components, with the methods it takes.
    private let routes: [(path: [RouterPath.Element], methods: [HTTPRequest.Method])]

    init(routes: [Router<Context>.RouteDescription]) {
        var byPath: [String: (path: [RouterPath.Element], methods: [HTTPRequest.Method])] = [:]
        for route in routes {
            byPath[route.path.description, default: (route.path.components, [])].methods.append(route.method)
        }
        self.routes = Array(byPath.values)
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let components = request.uri.path.split(separator: "/", omittingEmptySubsequences: true)
        var allowed: [HTTPRequest.Method] = []
        for route in routes where route.path.count == components.count
            && zip(route.path, components).allSatisfy({ element, component in element ~= component }) {
            allowed += route.methods
        }
        guard !allowed.isEmpty, !allowed.contains(request.method) else { return try await next(request, context) }
        if allowed.contains(.get) && !allowed.contains(.head) { allowed.append(.head) }
        let list = allowed.map(\.rawValue).sorted().joined(separator: ", ")
        throw HTTPError(.methodNotAllowed, headers: [.allow: list], message: "\(request.uri.path) takes \(list), not \(request.method)")
    }
}

/// A JSON body's form, for the errors that refuse another.
protocol JSONBodyShape {
    /// A valid example, as errors show it.
    static var example: String { get }
}

/// An error answered as `{"error":{"code":"...","message":"..."}}` with its status. Handlers throw it;
/// Hummingbird turns it into the response.
struct APIError: HTTPResponseError {
    let status: HTTPResponse.Status
    let code: String
    let message: String

    init(_ status: HTTPResponse.Status, _ code: String, _ message: String) {
        self.status = status
        self.code = code
        self.message = message
    }

    /// The answer to a refusal of the chat domain: 400 `invalid_request`, 403 `forbidden`, 404 `not_found`.
    init(chat refusal: ChatError) {
        switch refusal.kind {
        case .invalid: self.init(.badRequest, "invalid_request", refusal.message)
        case .forbidden: self.init(.forbidden, "forbidden", refusal.message)
        case .notFound: self.init(.notFound, "not_found", refusal.message)
        }
    }

    var headers: HTTPFields { [:] }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        PresenceHTTPServer.error(status, code, message)
    }
}
