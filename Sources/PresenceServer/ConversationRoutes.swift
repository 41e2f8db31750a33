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

/// The conversation routes' bodies and answers: the snapshot (a page of messages and the members'
/// presence, with the cursor it reflects), the inbox, and who may read what (`Access`).
extension PresenceHTTPServer {
    /// The members of conversation `id`, if `caller` is one of them: 404 for an unknown conversation,
    /// 403 for a caller outside it.
    static func members(of id: String, for caller: String, state: PresenceNode) -> Result<[String], APIError> {
        state.access.conversation(id, for: caller).mapError(APIError.init(chat:))
    }

    /// Runs a chat operation, answering its refusals (`ChatError`) as the API's errors.
    static func chat<T>(_ operation: () async throws -> T) async throws -> T {
        do {
            return try await operation()
        } catch {
            if let refusal = error as? ChatError { throw APIError(chat: refusal) }
            if let failure = error as? LogError { throw APIError(storage: failure) }
            throw error
        }
    }

    /// The body of `GET /v1/conversations/{id}` for `caller`: a page of messages (at most `limit`,
    /// default 50, capped at 200: the oldest after `afterSeq`, the newest before `beforeSeq`, or with
    /// neither the newest of all, as a chat opens at the bottom), always in seq order, and every other
    /// member's presence with the cursor it reflects. Written straight into the buffer: the messages'
    /// JSON is encoded once, when they are posted. `inMemoryOnly` (the fast path, on an event loop): a
    /// page the message cache does not hold fails with `not_in_memory`, which is never sent: the fast
    /// path hands such a request to the route, which reads the page from disk off the event loop.
    static func snapshot(of id: String, for caller: String, afterSeq afterText: String?, beforeSeq beforeText: String? = nil,
                         limit limitText: String?, state: PresenceNode, inMemoryOnly: Bool = false) -> Result<ByteBuffer, APIError> {
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
        // The snapshot's fast path answers on an event loop: a page that would be read from disk is the route's.
        if inMemoryOnly && !state.conversations.pageIsInMemory(of: id, page: page, limit: min(limit, 200)) {
            return .failure(APIError(.serviceUnavailable, "not_in_memory", "the page is read from disk by the route"))
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
            // A page read from disk that failed its checks (a damaged batch, an index that does not fit the log).
            return .failure(APIError(.internalServerError, "storage_error", "\(error)"))
        }
        out.removeAll(keepingCapacity: true)
        out.append(contentsOf: "],\"has_more\":\(hasMore),\"presence\":".utf8)
        // Presence of every other member as the settings in force show it to the caller, and the cursor
        // it reflects, read together.
        state.readShown { projection, access in
            appendPresence(of: members, to: caller, projection, access, to: &out)
            out.append(contentsOf: ",\"presence_cursor\":\(projection.nextOffset)}".utf8)
        }
        buffer.writeBytes(out)
        return .success(buffer)
    }

    /// The body of `GET /v1/me/conversations`: `{"conversations":[{"id","members","last_message",
    /// "presence"}],"presence_cursor":N}`, the most recently active first; every presence is read in one
    /// go with the cursor, as a snapshot's is.
    static func inbox(of caller: String, state: PresenceNode) -> ByteBuffer {
        let summaries = state.conversations.conversations(of: caller)
        var out: [UInt8] = Array("{\"conversations\":[".utf8)
        state.readShown { projection, access in
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
                appendPresence(of: summary.members, to: caller, projection, access, to: &out)
                out.append(125)
            }
            out.append(contentsOf: "],\"presence_cursor\":\(projection.nextOffset)}".utf8)
        }
        return ByteBuffer(bytes: out)
    }

    /// `{"bob":{"online":..,"last_seen":..,"connections":..},..}` for every member of one of `viewer`'s
    /// conversations but `viewer`, as `access` shows them to `viewer` (members share the conversation:
    /// they are contacts).
    static func appendPresence(of members: [String], to viewer: String, _ projection: PresenceProjection, _ access: Access,
                               to out: inout [UInt8]) {
        out.append(123)
        var first = true
        for member in members where member != viewer {
            if !first { out.append(44) }
            first = false
            EventJSON.appendString(member, to: &out)
            out.append(contentsOf: ":{".utf8)
            appendPresenceFields(of: member, projection, access.visibility(of: member, to: viewer, contacts: true), to: &out)
            out.append(125)
        }
        out.append(125)
    }

    /// `"online":..,"last_seen":..,"connections":..` for `user` as `visibility` shows it (offline with no
    /// last seen if never seen, and a hidden field as if never seen).
    static func appendPresenceFields(of user: String, _ projection: PresenceProjection, _ visibility: Visibility, to out: inout [UInt8]) {
        (visibility.apply(projection.state(of: user)) ?? .init(user: user, online: false, lastSeen: nil, connections: 0)).appendJSONFields(to: &out)
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
}
