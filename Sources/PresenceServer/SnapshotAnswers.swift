import Chat
import ClientInput
import Foundation
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// What `SnapshotFastPath` answers a snapshot request with: the route's body
/// (`PresenceHTTPServer.snapshot`) for a caller whose token `TokenAuthority` has already verified.
/// One per connection: it keeps the connection's last verified token and its last snapshot with the
/// versions it reflects (the conversation's last seq and the projection's next offset, read before the
/// body is built), so a client asking again for an unchanged snapshot costs a byte comparison.
final class SnapshotAnswers {
    let state: PresenceNode
    private let tokens: TokenAuthority
    /// The connection's last verified token and its claims.
    private var lastToken: (token: [UInt8], claims: PresenceClaims)?
    private var cached: CachedSnapshot?
    private var date = HTTPDate()

    init(state: PresenceNode, tokens: TokenAuthority) {
        self.state = state
        self.tokens = tokens
    }

    /// The response to a request this handler can answer, or nil to hand it on. `head` was read from
    /// the start of `request`.
    func answer(_ head: RequestHead, request: ByteBuffer, allocator: ByteBufferAllocator) -> ByteBuffer? {
        // A gateway's or an operator's token is the route's to refuse (403): only users read conversations.
        guard let target = head.snapshot, let tokenRange = head.bearerToken, let claims = claims(tokenRange, in: request), claims.isUser
        else { return nil }
        let caller = claims.sub.value
        // The versions the body depends on, read before it is built: a change while it is built shows
        // as a newer version next time, never as a stale body taken for current.
        let lastSeq = state.conversations.lastSeq(of: target.id)
        let cursor = state.nextOffset
        // A privacy settings change shows or hides members' fields without moving the cursor.
        let privacy = state.privacy.version
        let now = date.now()
        if let cached, cached.target == target, cached.caller == caller, cached.lastSeq == lastSeq, cached.cursor == cursor,
           cached.privacy == privacy {
            if cached.date == now { return cached.response }
            let response = SnapshotFastPath.response(body: cached.body, date: now, allocator: allocator)
            self.cached?.response = response
            self.cached?.date = now
            return response
        }
        guard case .success(let body) = PresenceHTTPServer.snapshot(of: target.id, for: caller, afterSeq: target.afterSeq,
                                                                   beforeSeq: target.beforeSeq, limit: target.limit, state: state,
                                                                   inMemoryOnly: true)
        else {
            cached = nil
            return nil
        }
        let response = SnapshotFastPath.response(body: body, date: now, allocator: allocator)
        cached = CachedSnapshot(target: target, caller: caller, lastSeq: lastSeq, cursor: cursor, privacy: privacy, body: body, date: now,
                                response: response)
        return response
    }


    /// The claims of the token at `range` of `request` if `TokenAuthority` has verified it and it has not
    /// expired. The connection's last token is kept, so a client that sends the same one each time
    /// costs a byte comparison.
    func claims(_ range: Range<Int>, in request: ByteBuffer) -> PresenceClaims? {
        let same = request.withUnsafeReadableBytes { raw in
            guard let base = raw.baseAddress, let last = lastToken, last.token.count == range.count else { return false }
            return last.token.withUnsafeBytes { token in
                guard let start = token.baseAddress else { return false }
                return memcmp(base + range.lowerBound, start, range.count) == 0
            }
        }
        if same, let last = lastToken {
            if last.claims.exp.value > Date() { return last.claims }
            lastToken = nil
            return nil
        }
        let token = request.withUnsafeReadableBytes { raw in
            String(decoding: UnsafeRawBufferPointer(rebasing: raw[range]), as: UTF8.self)
        }
        guard let claims = tokens.cachedClaims(token) else { return nil }
        lastToken = (Array(token.utf8), claims)
        return claims
    }

    /// The last snapshot this connection was answered, the versions it reflects, and the response
    /// built from it for the second `date` names.
    private struct CachedSnapshot {
        var target: RequestHead.SnapshotTarget
        var caller: String
        var lastSeq: Int
        var cursor: Int64
        /// `PrivacyStore.version`: the settings changes installed when it was built.
        var privacy: Int64
        var body: ByteBuffer
        var date: String
        var response: ByteBuffer
    }

}
