import Foundation
import Hummingbird
import HummingbirdWebSocket
import Logging
import Presence
import SegmentLog

/// `GET /v1/ws`: a chat client's live connection.
///
/// Opening it appends a `connect` for the token's user (gateway: this node, conn: a fresh id) and,
/// once that is durable, the server sends `{"type":"ready","user":..,"conn":..,"offset":N}`. Closing
/// it appends the `disconnect`. Client frames, JSON text:
///
///     {"op":"open","conversation":"<id>"}   → {"type":"opened","conversation":..,"presence":{..},"presence_cursor":N}
///     {"op":"close","conversation":"<id>"}  → {"type":"closed","conversation":..}
///
/// While a conversation is open, every change of another member's shown presence (online, or offline
/// with a new last seen) is pushed once durable, in log order:
/// `{"type":"presence","user":"bob","online":true,"offset":N}`. A bad frame gets
/// `{"type":"error","error":{"code":..,"message":..}}` and the socket stays open.
///
/// A browser cannot read the status of a refused handshake, so a missing, bad or expired token is
/// answered on the socket: an error frame, then a close with code 4401 (4403 for a gateway token).
enum WebSocketSessions {
    /// The largest client frame read; larger ones close the socket (1009).
    static let maxFrameBytes = 16 * 1024

    static func run(inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter, request: Request,
                    state: LiveState, tokens: TokenAuthority, logger: Logger) async {
        let claims: PresenceClaims
        do {
            claims = try await authenticate(request, tokens)
        } catch let error as APIError {
            logger.debug("websocket refused", metadata: ["code": "\(error.code)"])
            try? await outbound.write(.text(errorFrame(error.code, error.message)))
            try? await outbound.close(.unknown(error.status == .forbidden ? 4403 : 4401), reason: error.code)
            return
        } catch {
            try? await outbound.close(.unexpectedServerError, reason: "internal_error")
            return
        }
        let session: PushSession
        do {
            session = try await state.openSession(user: claims.sub.value)
        } catch {
            // The log refused the connect (older than the late-arrival horizon by this node's clock) or failed.
            let code = (error as? LogError)?.code == .invalidArgument ? "refused" : "log_unavailable"
            try? await outbound.write(.text(errorFrame(code, "could not record the connection: \((error as? LogError)?.message ?? "\(error)")")))
            try? await outbound.close(.unexpectedServerError, reason: code)
            return
        }
        logger.debug("websocket open", metadata: ["user": "\(session.user)", "conn": "\(session.conn)"])
        await withTaskGroup(of: Void.self) { group in
            // The writer: frames leave in the order they were queued.
            group.addTask {
                for await frame in session.frames {
                    do { try await outbound.write(.text(frame)) } catch { break }
                }
                if session.overflowed {
                    try? await outbound.close(.unknown(4008), reason: "too far behind: reconnect and open the conversations again")
                }
            }
            // The reader, until the client closes the socket.
            var iterator = inbound.messages(maxSize: maxFrameBytes).makeAsyncIterator()
            while true {
                let message: WebSocketMessage?
                do { message = try await iterator.next() } catch { break }
                guard let message else { break }
                await handle(message, session: session, state: state)
            }
            await state.closeSession(session)
        }
        logger.debug("websocket closed", metadata: ["user": "\(session.user)", "conn": "\(session.conn)", "overflowed": "\(session.overflowed)"])
    }

    /// Answers one client frame.
    static func handle(_ message: WebSocketMessage, session: PushSession, state: LiveState) async {
        guard case .text(let text) = message else {
            return state.reply(session, errorFrame("invalid_frame", "frames are JSON text"))
        }
        guard let object = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] else {
            return state.reply(session, errorFrame("invalid_json", "a frame must be a JSON object"))
        }
        guard let op = object["op"] as? String else {
            return state.reply(session, errorFrame("invalid_request", "\"op\" must be \"open\" or \"close\""))
        }
        guard op == "open" || op == "close" else {
            return state.reply(session, errorFrame("invalid_request", "unknown op '\(op)': use \"open\" or \"close\""))
        }
        guard let conversation = object["conversation"] as? String, !conversation.isEmpty else {
            return state.reply(session, errorFrame("invalid_request", "\"conversation\" must be a conversation id"))
        }
        switch op {
        case "open":
            switch PresenceHTTPServer.members(of: conversation, for: session.user, state: state) {
            case .success(let members): state.watch(session, conversation: conversation, members: members)
            case .failure(let error): state.reply(session, errorFrame(error.code, error.message, conversation: conversation))
            }
        default:
            state.unwatch(session, conversation: conversation)
        }
    }

    /// The claims of the token in the Authorization header or the `token` query parameter.
    static func authenticate(_ request: Request, _ tokens: TokenAuthority) async throws -> PresenceClaims {
        let claims: PresenceClaims
        if request.headers[.authorization] != nil {
            claims = try await PresenceHTTPServer.authenticate(request, tokens)
        } else if let token = request.uri.queryParameters.get("token"), !token.isEmpty {
            do { claims = try await tokens.verify(token) } catch {
                throw APIError(.unauthorized, "unauthorized", "the token is not valid: \(TokenAuthority.explain(error))")
            }
        } else {
            throw APIError(.unauthorized, "unauthorized", "a token is required (Authorization: Bearer <token>, or ?token=)")
        }
        guard !claims.isGateway else { throw APIError(.forbidden, "forbidden", "a gateway token cannot open a user's socket") }
        return claims
    }

    static func errorFrame(_ code: String, _ message: String, conversation: String? = nil) -> String {
        var out: [UInt8] = Array("{\"type\":\"error\",".utf8)
        if let conversation {
            out.append(contentsOf: "\"conversation\":".utf8)
            EventJSON.appendString(conversation, to: &out)
            out.append(44)
        }
        out.append(contentsOf: "\"error\":{\"code\":\"\(code)\",\"message\":".utf8)
        EventJSON.appendString(message, to: &out)
        out.append(contentsOf: "}}".utf8)
        return String(decoding: out, as: UTF8.self)
    }
}
