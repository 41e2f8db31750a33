import Foundation
import HTTPTypes
import NIOCore
import NIOHTTPTypes

#if canImport(Glibc)
import Glibc
#endif

/// The chat client's hot read, `GET /v1/conversations/{id}`, answered on the event loop that read it.
///
/// It sits in each HTTP/1 connection's pipeline in front of Hummingbird. A request it can answer at
/// once — a GET of a conversation snapshot, with a token already verified (the cache in
/// `TokenAuthority`) and not expired, whose caller is a member, and no other request of the
/// connection still waiting for Hummingbird's answer — it answers itself with the same body the
/// route builds (`PresenceHTTPServer.snapshot`), skipping the task hop, the router and the
/// middleware. Everything else, errors included, goes on to Hummingbird unchanged, so answers stay
/// in request order and every error is the route's. Served this way a request is counted in
/// `presence_snapshot_fast_path_total` instead of the per-route request metrics.
final class SnapshotFastPath: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    static let prefix = "/v1/conversations/"

    private let state: LiveState
    private let tokens: TokenAuthority
    private let served: @Sendable () -> Void
    /// Requests handed to Hummingbird whose response has not ended yet.
    private var forwarded = 0
    /// True while the rest of a request answered here (its end) is still to come.
    private var answering = false
    private var date = HTTPDate()

    init(state: LiveState, tokens: TokenAuthority, served: @escaping @Sendable () -> Void) {
        self.state = state
        self.tokens = tokens
        self.served = served
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            if forwarded == 0, !answering, let body = answer(head) {
                answering = true
                var headers = HTTPFields()
                headers[.contentType] = "application/json"
                headers[.contentLength] = String(body.readableBytes)
                headers[.date] = date.now()
                headers[.server] = "PresenceLog"
                context.write(wrapOutboundOut(.head(HTTPResponse(status: .ok, headerFields: headers))), promise: nil)
                context.write(wrapOutboundOut(.body(body)), promise: nil)
                context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
                served()
                return
            }
            forwarded += 1
            context.fireChannelRead(data)
        case .body:
            if !answering { context.fireChannelRead(data) }
        case .end:
            if answering { answering = false } else { context.fireChannelRead(data) }
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) { forwarded -= 1 }
        context.write(data, promise: promise)
    }

    /// The body for a request this handler can answer, or nil to hand it on.
    private func answer(_ head: HTTPRequest) -> ByteBuffer? {
        guard head.method == .get, head.headerFields[.connection] == nil, let path = head.path, path.hasPrefix(Self.prefix),
              let authorization = head.headerFields[.authorization], authorization.hasPrefix("Bearer "),
              let claims = tokens.cachedClaims(String(authorization.dropFirst("Bearer ".count)))
        else { return nil }
        let rest = path.dropFirst(Self.prefix.count)
        let id: Substring
        var afterSeq: Substring?, limit: Substring?
        if let question = rest.firstIndex(of: "?") {
            id = rest[..<question]
            for pair in rest[rest.index(after: question)...].split(separator: "&") {
                guard let equals = pair.firstIndex(of: "=") else { return nil }
                switch pair[..<equals] {
                case "after_seq": afterSeq = pair[pair.index(after: equals)...]
                case "limit": limit = pair[pair.index(after: equals)...]
                default: return nil
                }
            }
        } else {
            id = rest
        }
        // Plain ids only: anything to decode or another route goes the long way.
        guard !id.isEmpty, id.utf8.allSatisfy({ $0 != 47 && $0 != 37 && $0 != 43 }) else { return nil }
        guard case .success(let body) = PresenceHTTPServer.snapshot(of: String(id), for: claims.sub.value, afterSeq: afterSeq.map(String.init),
                                                                    limit: limit.map(String.init), state: state)
        else { return nil }
        return body
    }
}

/// The `Date` header's value, formatted once a second.
struct HTTPDate {
    private var second = 0
    private var text = ""

    mutating func now() -> String {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        let current = time.tv_sec
        if current != second || text.isEmpty {
            second = current
            var parts = tm()
            var seconds = current
            gmtime_r(&seconds, &parts)
            let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
            let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
            func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
            text = "\(days[Int(parts.tm_wday)]), \(two(parts.tm_mday)) \(months[Int(parts.tm_mon)]) \(parts.tm_year + 1900) "
                + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) GMT"
        }
        return text
    }
}
