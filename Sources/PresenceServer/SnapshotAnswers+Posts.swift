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
        // Without a client id (decided under a claim, which waits) on a single node, the post answers
        // from the commit thread: no task, no hop through the cooperative pool.
        if message.clientID == nil, conversations.appendsLocally {
            do {
                try conversations.post(to: conversation, sender: sender, content: message.content) { result in
                    switch result {
                    case .success(let posted):
                        reply(Self.postedAnswer(seq: posted.seq, timestamp: posted.timestamp, repeated: false))
                    case .failure(let failure):
                        reply(Self.lateAnswer(failure))
                    }
                }
            } catch {
                reply(Self.lateAnswer(error))
            }
            return true
        }
        Self.postInTask(conversations, to: conversation, sender: sender, content: message.content, clientID: message.clientID, reply: reply)
        return true
    }

    /// A post answered from a task: one with a client id (`ConversationStore.post` holds a claim while it
    /// looks for the client id's earlier post), or a cluster node's.
    static func postInTask(_ conversations: ConversationStore, to conversation: String, sender: String, content: String, clientID: String?,
                           reply: @escaping @Sendable (SnapshotFastPath.LateAnswer) -> Void) {
        Task {
            do {
                let posted = try await conversations.post(to: conversation, sender: sender, content: content, clientID: clientID)
                reply(postedAnswer(seq: posted.seq, timestamp: posted.timestamp, repeated: posted.repeated))
            } catch {
                reply(lateAnswer(error))
            }
        }
    }

    /// The route's answer to a post: 201 `{"seq","ts"}`, or 200 for a retried client_id (answered as the
    /// first time: nothing new was created).
    static func postedAnswer(seq: Int, timestamp: Int64, repeated: Bool) -> SnapshotFastPath.LateAnswer {
        (repeated ? "200 OK" : "201 Created", ByteBuffer(string: "{\"seq\":\(seq),\"ts\":\"\(Timestamp.format(timestamp))\"}"))
    }

    /// The route's answer to what a post threw: `ChatError` and `LogError` as `chat` maps them.
    static func lateAnswer(_ error: any Error) -> SnapshotFastPath.LateAnswer {
        let failure: APIError
        if let refusal = error as? ChatError {
            failure = APIError(chat: refusal)
        } else if let logError = error as? LogError {
            failure = APIError(storage: logError)
        } else {
            failure = APIError(.internalServerError, "internal_error", "\(error)")
        }
        return ("\(failure.status.code) \(failure.status.reasonPhrase)", ByteBuffer(bytes: PresenceHTTPServer.errorBody(failure.code, failure.message)))
    }
}
