import Chat
import ClientInput
import Foundation
import Metrics
import NIOCore
import Presence
import SegmentLog

/// The fast path's posts: `POST /v1/conversations/{id}/messages` taken ahead of the HTTP codec
/// (`SnapshotFastPath`), answered once the message is durable with the route's statuses and bodies.
///
/// A post is taken only when the route would accept it up to the append: a user's token already
/// verified, a caller who is a member, a body the route's decoder reads (`NewMessage`). Everything
/// else (and every error those checks would give) is the route's, through the codec. What the append
/// itself refuses or fails with (a content over the limit, a full disk) is answered here as the route
/// answers it (`APIError(chat:)`, `APIError(storage:)`).
extension SnapshotAnswers {
    static let postsTaken = Counter(label: "presence_post_fast_path_total")

    /// Takes the post whose head is `head` (read from the start of `request`) and whose body is `body`,
    /// and calls `reply` once it is answered; false to hand it to the codec.
    func takePost(_ head: RequestHead, request: ByteBuffer, body: ByteBuffer,
                  reply: @escaping @Sendable (SnapshotFastPath.LateAnswer) -> Void) -> Bool {
        guard let conversation = head.postMessageTo, let tokenRange = head.bearerToken,
              let claims = claims(tokenRange, in: request), claims.isUser else { return false }
        let sender = claims.sub.value
        guard case .success = PresenceHTTPServer.members(of: conversation, for: sender, state: state) else { return false }
        let message: PresenceHTTPServer.NewMessage
        do throws(JSONInputProblem) {
            message = try JSONInput.decode(PresenceHTTPServer.NewMessage.self, Array(body.readableBytesView), what: "the body")
        } catch {
            return false
        }
        Self.postsTaken.increment()
        let conversations = state.conversations
        Task {
            do {
                let (seq, timestamp, repeated) = try await conversations.post(to: conversation, sender: sender, content: message.content,
                                                                                clientID: message.clientID)
                // A retried client_id is answered as the first time, with 200: nothing new was created.
                reply((repeated ? "200 OK" : "201 Created", ByteBuffer(string: "{\"seq\":\(seq),\"ts\":\"\(Timestamp.format(timestamp))\"}")))
            } catch {
                let failure: APIError
                if let refusal = error as? ChatError {
                    failure = APIError(chat: refusal)
                } else if let logError = error as? LogError {
                    failure = APIError(storage: logError)
                } else {
                    failure = APIError(.internalServerError, "internal_error", "\(error)")
                }
                reply(("\(failure.status.code) \(failure.status.reasonPhrase)",
                       ByteBuffer(bytes: PresenceHTTPServer.errorBody(failure.code, failure.message))))
            }
        }
        return true
    }
}
