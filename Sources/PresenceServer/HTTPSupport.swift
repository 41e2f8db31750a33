import Chat
import ClientInput
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

/// What every route shares: bodies read under `StrictJSON`'s rules, tokens, path parameters, and the
/// API's JSON answers and errors.
extension PresenceHTTPServer {
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

    /// `bytes` as `Body` (a JSON object), or the 400 that says what is wrong with it (`JSONInput`);
    /// `what` names it ("the body", "the frame").
    static func decodeJSON<Body: Decodable & JSONBodyShape>(_ type: Body.Type, _ bytes: [UInt8], what: String) throws -> Body {
        do throws(JSONInputProblem) {
            return try JSONInput.decode(Body.self, bytes, what: what)
        } catch {
            throw APIError(.badRequest, error.code, error.message)
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

    /// The claims of a user's token; throws the 401 to send, or a 403 for a gateway token (a gateway
    /// may post events and nothing else: it is no member of any conversation, and sees no one's presence)
    /// or an operator token (it reads the audit routes; it is nobody's chat account).
    static func authenticateUser(_ request: Request, _ tokens: TokenAuthority) async throws -> PresenceClaims {
        let claims = try await authenticate(request, tokens)
        guard claims.isUser else { throw claims.isGateway ? gatewayRefused : claims.isAdmin ? adminRefused : operatorRefused }
        return claims
    }

    /// The answer to a gateway token on a route for users.
    static let gatewayRefused = APIError(.forbidden, "forbidden", "a gateway token may only post events (POST /v1/events); this route takes a user's token")
    /// The answer to an operator token on a route for users.
    static let operatorRefused = APIError(.forbidden, "forbidden", "an operator token reads the audit routes (history, state at a time, the log); this route takes a user's token")

    /// The answer to an admin token on any route but the admin's.
    static let adminRefused = APIError(.forbidden, "forbidden", "an admin token erases users (POST /v1/admin/forget) and nothing else")

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

    /// The answer to a write the storage did not take: 507 `insufficient_storage` when the filesystem is
    /// full (nothing was written; writes resume by themselves once there is space), else 503
    /// `log_unavailable` (the log refuses writes until the node restarts).
    init(storage failure: LogError) {
        if failure.code == .noSpace {
            self.init(.init(code: 507, reasonPhrase: "Insufficient Storage"), "insufficient_storage", failure.message)
        } else {
            self.init(.serviceUnavailable, "log_unavailable", failure.message)
        }
    }

    var headers: HTTPFields { [:] }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        PresenceHTTPServer.error(status, code, message)
    }
}
