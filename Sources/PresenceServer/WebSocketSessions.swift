import Chat
import ClientInput
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
///     {"op":"open","conversation":"<id>"}   → {"type":"opened","conversation":..,"presence":{..},"presence_cursor":N,"last_seq":S}
///     {"op":"open","conversation":"<id>","presence_cursor":C}
///                                           → the presence frames the client missed since C, then
///                                             {"type":"opened",..,"resumed":true} (false: a fresh view)
///     {"op":"close","conversation":"<id>"}  → {"type":"closed","conversation":..}
///     {"op":"send","conversation":"<id>","content":"..","client_id":".."}
///                                           → {"type":"sent","conversation":..,"client_id":..,"seq":N,"ts":".."}
///
/// While a conversation is open, every change of another member's shown presence (online, or offline
/// with a new last seen) is pushed once durable, in log order:
/// `{"type":"presence","user":"bob","online":true,"offset":N}`. A bad frame gets
/// `{"type":"error","error":{"code":..,"message":..}}` and the socket stays open.
///
/// A browser cannot read the status of a refused handshake, so a missing, bad or expired token is
/// answered on the socket: an error frame, then a close with code 4401 (4403 for a gateway token).
enum WebSocketSessions {
    /// The largest client message read (one frame, or the fragments of one); larger ones close the socket (1009).
    static let maxFrameBytes = 16 * 1024

    /// Serves one socket until the client closes it. Throws what reading a message threw (a message over
    /// `maxFrameBytes` once its fragments are put together, a protocol error), after the session's
    /// disconnect is recorded, so that the library closes with that error's code (1009, 1002, 1007).
    static func run(inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter, request: Request,
                    state: PresenceNode, tokens: TokenAuthority, logger: Logger) async throws {
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
            // A full disk closes with 4507 (try again later: nothing was recorded).
            let failure = error as? LogError
            let code = failure?.code == .invalidArgument ? "refused" : failure?.code == .noSpace ? "insufficient_storage" : "log_unavailable"
            try? await outbound.write(.text(errorFrame(code, "could not record the connection: \(failure?.message ?? "\(error)")")))
            try? await outbound.close(failure?.code == .noSpace ? .unknown(4507) : .unexpectedServerError, reason: code)
            return
        }
        logger.debug("websocket open", metadata: ["user": "\(session.user)", "conn": "\(session.conn)"])
        let readError: (any Error)? = await withTaskGroup(of: Void.self) { group in
            // The writer: frames leave in the order they were queued.
            group.addTask {
                for await frame in session.frames {
                    do { try await outbound.write(.text(frame)) } catch { break }
                }
                if session.overflowed {
                    try? await outbound.close(.unknown(4008), reason: "too far behind: reconnect and open the conversations again")
                } else if session.erased {
                    try? await outbound.close(.unknown(PushSession.erasedCloseCode), reason: "this user's presence records were erased")
                }
            }
            // The reader, until the client closes the socket.
            var iterator = inbound.messages(maxSize: maxFrameBytes).makeAsyncIterator()
            var failure: (any Error)?
            while true {
                let message: WebSocketMessage?
                do { message = try await iterator.next() } catch {
                    failure = error
                    break
                }
                guard let message else { break }
                await handle(message, session: session, state: state)
            }
            await state.closeSession(session)
            return failure
        }
        logger.debug("websocket closed", metadata: ["user": "\(session.user)", "conn": "\(session.conn)", "overflowed": "\(session.overflowed)"])
        if let readError { throw readError }
    }

    /// Answers one client frame. Frames are read one at a time, so a `send` is answered before the
    /// session's next frame is looked at.
    static func handle(_ message: WebSocketMessage, session: PushSession, state: PresenceNode) async {
        guard case .text(let text) = message else {
            return state.reply(session, errorFrame("invalid_frame", "frames are JSON text"))
        }
        switch ClientRequest.read(Array(text.utf8)) {
        case .failure(let refusal):
            state.reply(session, errorFrame(refusal.code, refusal.message, conversation: refusal.conversation))
        case .success(.open(let conversation, let presenceCursor)):
            switch PresenceHTTPServer.members(of: conversation, for: session.user, state: state) {
            case .success(let members):
                if let cursor = presenceCursor {
                    guard cursor >= 0 else {
                        return state.reply(session, errorFrame("invalid_request", "\"presence_cursor\" must be an offset (0 or more)", conversation: conversation))
                    }
                    // A node of the cluster a moment behind the client's old one catches up first.
                    _ = await state.waitUntilApplied(through: cursor)
                }
                state.watch(session, conversation: conversation, members: members, resumeFrom: presenceCursor)
            case .failure(let error): state.reply(session, errorFrame(error.code, error.message, conversation: conversation))
            }
        case .success(.send(let conversation, let content, let clientID)):
            await send(content: content, clientID: clientID, to: conversation, session: session, state: state)
        case .success(.close(let conversation)):
            state.unwatch(session, conversation: conversation)
        }
    }

    /// `{"op":"send",..}`: posts the message as `POST /v1/conversations/{id}/messages` does and answers
    /// `{"type":"sent","conversation":..,"client_id":..,"seq":N,"ts":".."}` once it is durable; a
    /// `client_id` this sender already used in this conversation is answered with the first seq and
    /// time, and nothing is posted (a client that lost the answer sends again).
    static func send(content: String, clientID: String?, to conversation: String, session: PushSession, state: PresenceNode) async {
        do {
            let (seq, timestamp, _) = try await state.conversations.post(to: conversation, sender: session.user, content: content,
                                                                         clientID: clientID)
            var out: [UInt8] = Array("{\"type\":\"sent\",\"conversation\":".utf8)
            EventJSON.appendString(conversation, to: &out)
            out.append(contentsOf: ",\"client_id\":".utf8)
            if let clientID { EventJSON.appendString(clientID, to: &out) } else { out.append(contentsOf: "null".utf8) }
            out.append(contentsOf: ",\"seq\":\(seq),\"ts\":\"\(Timestamp.format(timestamp))\"}".utf8)
            state.reply(session, String(decoding: out, as: UTF8.self))
        } catch let refusal as ChatError {
            let answer = APIError(chat: refusal)
            state.reply(session, errorFrame(answer.code, answer.message, conversation: conversation))
        } catch let failure as LogError {
            let answer = APIError(storage: failure)
            state.reply(session, errorFrame(answer.code, "the message was not posted: \(failure.message)", conversation: conversation))
        } catch {
            state.reply(session, errorFrame("log_unavailable", "the message was not posted: \(error)", conversation: conversation))
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
        guard claims.isUser else { throw APIError(.forbidden, "forbidden", "a\(claims.isGateway ? " gateway" : claims.isAdmin ? "n admin" : "n operator") token cannot open a user's socket") }
        return claims
    }

    /// A `{"type":"error",..}` frame (`ClientRequest.errorFrame`).
    static func errorFrame(_ code: String, _ message: String, conversation: String? = nil) -> String {
        ClientRequest.errorFrame(code, message, conversation: conversation)
    }
}
