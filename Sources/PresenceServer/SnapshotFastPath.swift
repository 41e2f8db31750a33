import Chat
import Foundation
import HTTPTypes
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import Presence

#if canImport(Glibc)
import Glibc
#endif

/// The chat client's hot read, `GET /v1/conversations/{id}`, answered from the raw bytes of the
/// connection, ahead of the HTTP codec.
///
/// NIO's HTTP/1 codec alone caps this machine at about half of what a bare NIO server answers
/// (BENCHMARKS.md), so this handler sits at the very front of each connection's pipeline (added by
/// `FastPathChannel` before Hummingbird's handlers) and reads requests itself. A request it can
/// answer at once — a complete `GET /v1/conversations/{id}` over HTTP/1.1 with no body, whose bearer
/// token was already verified (the cache in `TokenAuthority`), is a user's, and whose caller is a member, while no
/// request handed to the codec is still waiting for its answer — it answers with the same body the
/// route builds (`PresenceHTTPServer.snapshot`) and the route's headers. Every other request goes to
/// the codec byte for byte and in order, and the handler stays out of the way until the codec has
/// answered it (`ResponseEnds` reports each answer's end), so answers stay in request order and every
/// error is the route's.
///
/// It forwards only requests it can delimit: a head ending in CRLF CRLF within `maxHeadBytes` and a
/// body of a single plain `Content-Length`. Anything else — `Transfer-Encoding`, `Upgrade` (a
/// WebSocket), `Connection`, `Expect`, HTTP/1.0, bare LF line ends, folded or malformed headers, an
/// oversize head — hands the connection to the codec for good: from then on every byte goes through
/// unread, and the codec judges the request. Served this way a request is counted in
/// `presence_snapshot_fast_path_total` instead of the per-route request metrics.
final class SnapshotFastPath: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    static let prefix: StaticString = "/v1/conversations/"
    /// The longest request head read here; a longer one goes to the codec (which has its own limits).
    static let maxHeadBytes = 16 * 1024

    private enum Mode {
        /// At the start of a request.
        case requests
        /// Forwarding the rest of a forwarded request's body.
        case body(remaining: Int)
        /// The codec has the connection: every byte goes through.
        case passthrough
        /// Nothing more is read: the connection ends with an error answer (`end(with:)`).
        case ending
    }

    /// The error answer that ends a connection whose next request cannot be read.
    struct Refusal {
        var status: String
        var code: String
        var message: String
        /// Header lines (each ending in CRLF) the answer carries besides the usual ones.
        var headers = ""
    }

    private let state: PresenceNode
    private let tokens: TokenAuthority
    /// The largest request body any route takes: a request declaring a longer one is refused (413) from
    /// its head, before any of the body is read.
    private let maxBodyBytes: Int
    private let served: @Sendable () -> Void
    private var mode = Mode.requests
    /// Bytes read and not yet answered or forwarded (the start of an incomplete request).
    private var pending: ByteBuffer?
    /// Requests handed to the codec whose answer has not ended yet.
    private var forwarded = 0
    /// Answers written since the last flush.
    private var unflushed = false
    /// The connection's last verified token and its claims.
    private var lastToken: (token: [UInt8], claims: PresenceClaims)?
    private var cached: CachedSnapshot?
    private var date = HTTPDate()

    init(state: PresenceNode, tokens: TokenAuthority, maxBodyBytes: Int, served: @escaping @Sendable () -> Void) {
        self.state = state
        self.tokens = tokens
        self.maxBodyBytes = maxBodyBytes
        self.served = served
    }

    /// This handler's context, to end a connection with an error from the front of the pipeline.
    private var context: ChannelHandlerContext?
    /// The error that ends the connection once the answers to earlier requests have gone.
    private var refuseAfterForwarded: Refusal?
    /// Answers still to end before the connection closes (0: no close planned). An HTTP/1.0 request
    /// without `Connection: keep-alive` is its connection's last, and Hummingbird (whose request type
    /// has no HTTP version) would keep the connection open after answering it.
    private var closeAfterAnswers = 0

    /// Whether the answer being written is the connection's last (`ResponseEnds` marks its head).
    var closesAfterCurrentAnswer: Bool { closeAfterAnswers == 1 }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    /// The codec's answer to a forwarded request has ended (from `ResponseEnds`); returns whether the
    /// connection closes once it is written.
    @discardableResult
    func responseEnded() -> Bool {
        if forwarded > 0 { forwarded -= 1 }
        if forwarded == 0, let refusal = refuseAfterForwarded {
            refuseAfterForwarded = nil
            send(refusal)
        }
        guard closeAfterAnswers > 0 else { return false }
        closeAfterAnswers -= 1
        return closeAfterAnswers == 0
    }

    /// The HTTP codec could not parse the connection's first request (from `MalformedRequests`). No
    /// answer can be on its way: if this handler forwarded the request (a head it could read but the
    /// codec refuses, such as an unknown method), it is that request that failed.
    func requestWasMalformed(_ reason: String) {
        forwarded = 0
        end(with: Refusal(status: "400 Bad Request", code: "bad_request", message: "malformed HTTP request: \(reason)"))
    }

    /// Reads nothing more from the connection, answers `refusal` after the answers to its earlier
    /// requests, and closes it: nothing after such a request can be delimited (or, for a body over the
    /// limit, is worth reading). Without this a malformed first request would hang (Hummingbird's
    /// WebSocket-upgrade pipeline leaves decoder errors unanswered), and so would a request declaring
    /// a huge body that never comes.
    private func end(with refusal: Refusal) {
        mode = .ending
        pending = nil
        if forwarded > 0 { refuseAfterForwarded = refusal } else { send(refusal) }
    }

    private func send(_ refusal: Refusal) {
        guard let context, context.channel.isActive else { return }
        let body = ByteBuffer(bytes: PresenceHTTPServer.errorBody(refusal.code, refusal.message))
        let response = Self.response(status: refusal.status, body: body, date: date.now(), closing: true, headers: refusal.headers,
                                     allocator: context.channel.allocator)
        // A lingering close: the answer, then our side of the connection shut, while what the client
        // still sends (the rest of a body) is read and dropped for a few seconds. Closing outright with
        // unread bytes would send a reset, and the client might lose the answer with it.
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(response)).whenComplete { _ in
            let context = bound.value
            context.close(mode: .output).whenFailure { _ in bound.value.close(promise: nil) }
            context.eventLoop.scheduleTask(in: Self.lingering) { bound.value.close(promise: nil) }
        }
    }

    /// How long a refused connection's remaining input is read and dropped before it is closed.
    static let lingering = TimeAmount.seconds(5)

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        switch mode {
        case .passthrough:
            context.fireChannelRead(data)
            return
        case .ending:
            return
        case .requests, .body:
            break
        }
        if pending == nil {
            pending = bytes
        } else {
            pending?.writeBuffer(&bytes)
        }
        process(context: context)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if unflushed {
            unflushed = false
            context.flush()
        }
        context.fireChannelReadComplete()
    }

    /// Answers or forwards every complete request in `pending`, in order.
    private func process(context: ChannelHandlerContext) {
        while var buffer = pending, buffer.readableBytes > 0 {
            switch mode {
            case .passthrough:
                pending = nil
                context.fireChannelRead(wrapInboundOut(buffer))
                return
            case .ending:
                pending = nil
                return
            case .body(let remaining):
                let count = min(remaining, buffer.readableBytes)
                if let part = buffer.readSlice(length: count) { context.fireChannelRead(wrapInboundOut(part)) }
                mode = remaining > count ? .body(remaining: remaining - count) : .requests
                pending = buffer.readableBytes > 0 ? buffer : nil
            case .requests:
                let head: RequestHead
                switch RequestHead.parse(buffer) {
                case .incomplete:
                    if buffer.readableBytes > Self.maxHeadBytes { mode = .passthrough }
                    else { return }  // wait for the rest
                    continue
                case .notForUs:
                    if RequestHead.isHTTP10WithoutKeepAlive(buffer) { closeAfterAnswers = forwarded + 1 }
                    mode = .passthrough
                    continue
                case .complete(let parsed):
                    head = parsed
                }
                if head.contentLength > maxBodyBytes {
                    end(with: Refusal(status: "413 Content Too Large", code: "body_too_large",
                                      message: "the body is over the \(maxBodyBytes)-byte limit (its Content-Length is larger)"))
                    return
                }
                if let handshake = head.webSocket, let refusal = handshake.refusal {
                    end(with: refusal)
                    return
                }
                if head.handsOver {
                    mode = .passthrough
                    continue
                }
                if head.contentLength == 0, forwarded == 0, context.channel.isWritable,
                   let response = answer(head, request: buffer, allocator: context.channel.allocator) {
                    buffer.moveReaderIndex(forwardBy: head.size)
                    pending = buffer.readableBytes > 0 ? buffer : nil
                    respond(context: context, response: response)
                    continue
                }
                forwarded += 1
                if let part = buffer.readSlice(length: head.size) { context.fireChannelRead(wrapInboundOut(part)) }
                if head.contentLength > 0 { mode = .body(remaining: head.contentLength) }
                pending = buffer.readableBytes > 0 ? buffer : nil
            }
        }
    }

    /// Writes a whole response (head and body), to go out at the next flush.
    private func respond(context: ChannelHandlerContext, response: ByteBuffer) {
        context.write(wrapOutboundOut(response), promise: nil)
        unflushed = true
        served()
    }

    /// The response to a request this handler can answer, or nil to hand it on. `head` was read from
    /// the start of `request`.
    private func answer(_ head: RequestHead, request: ByteBuffer, allocator: ByteBufferAllocator) -> ByteBuffer? {
        // A gateway's or an operator's token is the route's to refuse (403): only users read conversations.
        guard let target = head.snapshot, let tokenRange = head.bearerToken, let claims = claims(tokenRange, in: request), claims.isUser
        else { return nil }
        let caller = claims.sub.value
        // The versions the body depends on, read before it is built: a change while it is built shows
        // as a newer version next time, never as a stale body taken for current.
        let lastSeq = state.conversations.lastSeq(of: target.id)
        let cursor = state.nextOffset
        let now = date.now()
        if let cached, cached.target == target, cached.caller == caller, cached.lastSeq == lastSeq, cached.cursor == cursor {
            if cached.date == now { return cached.response }
            let response = Self.response(body: cached.body, date: now, allocator: allocator)
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
        let response = Self.response(body: body, date: now, allocator: allocator)
        cached = CachedSnapshot(target: target, caller: caller, lastSeq: lastSeq, cursor: cursor, body: body, date: now, response: response)
        return response
    }

    /// A JSON response as the routes answer (status, content type and length, date, server; `closing`
    /// adds `Connection: close`) with `body`, in one buffer.
    private static func response(status: String = "200 OK", body: ByteBuffer, date: String, closing: Bool = false,
                                 headers: String = "", allocator: ByteBufferAllocator) -> ByteBuffer {
        var response = allocator.buffer(capacity: 180 + body.readableBytes)
        response.writeStaticString("HTTP/1.1 ")
        response.writeString(status)
        response.writeStaticString("\r\nContent-Type: application/json\r\nContent-Length: ")
        response.writeString(String(body.readableBytes))
        response.writeStaticString("\r\nDate: ")
        response.writeString(date)
        if closing { response.writeStaticString("\r\nConnection: close") }
        response.writeStaticString("\r\n")
        response.writeString(headers)
        response.writeStaticString("Server: PresenceLog\r\n\r\n")
        response.writeImmutableBuffer(body)
        return response
    }

    /// The claims of the token at `range` of `request` if `TokenAuthority` has verified it and it has not
    /// expired. The connection's last token is kept, so a client that sends the same one each time
    /// costs a byte comparison.
    private func claims(_ range: Range<Int>, in request: ByteBuffer) -> PresenceClaims? {
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
        var body: ByteBuffer
        var date: String
        var response: ByteBuffer
    }

    /// Sits after the HTTP codec from the connection's start and hands the decoder's errors on the first
    /// request (one that is not HTTP/1.1) to the connection's `SnapshotFastPath`, which answers 400 and
    /// closes.
    final class MalformedRequests: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = Never

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            // Once a request has been read, Hummingbird's HTTP handlers are in (with `ResponseEnds`) and
            // answer the codec's errors themselves.
            if let error = error as? HTTPParserError, (try? context.pipeline.syncOperations.handler(type: ResponseEnds.self)) == nil,
               let fastPath = try? context.pipeline.syncOperations.handler(type: SnapshotFastPath.self) {
                fastPath.requestWasMalformed(Self.describe(error))
            }
            context.fireErrorCaught(error)
        }

        static func describe(_ error: HTTPParserError) -> String {
            switch error {
            case .lfExpected, .invalidConstant, .strictModeAssertion: return "bad line ends (every line must end in CRLF)"
            case .headerOverflow: return "the request's headers are too large"
            case .invalidMethod, .invalidURL, .invalidPath, .invalidQueryString, .invalidHost, .invalidPort, .invalidFragment:
                return "invalid request line"
            case .invalidVersion: return "invalid HTTP version (HTTP/1.1 is expected, every line ending in CRLF)"
            case .invalidHeaderToken, .invalidCharactersUsed: return "invalid header"
            case .invalidContentLength, .unexpectedContentLength: return "invalid Content-Length"
            case .invalidChunkSize: return "invalid chunked body"
            case .invalidEOFState: return "the connection ended inside a request"
            default: return "\(error)"
            }
        }
    }

    /// Sits after the HTTP codec (in Hummingbird's additional handlers) and tells the connection's
    /// `SnapshotFastPath` when the answer to a forwarded request has ended.
    final class ResponseEnds: ChannelOutboundHandler, RemovableChannelHandler {
        typealias OutboundIn = HTTPResponsePart
        typealias OutboundOut = HTTPResponsePart

        private var fastPath: SnapshotFastPath?

        init() {}

        func handlerAdded(context: ChannelHandlerContext) {
            fastPath = try? context.pipeline.syncOperations.handler(type: SnapshotFastPath.self)
        }

        func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
            switch unwrapOutboundIn(data) {
            case .head(var head) where fastPath?.closesAfterCurrentAnswer == true:
                head.headerFields[.connection] = "close"
                context.write(wrapOutboundOut(.head(head)), promise: promise)
            case .end where fastPath?.responseEnded() == true:
                // The connection's last answer (HTTP/1.0 without keep-alive): close once it is written.
                let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
                let written = context.eventLoop.makePromise(of: Void.self)
                written.futureResult.cascade(to: promise)
                written.futureResult.whenComplete { _ in bound.value.close(promise: nil) }
                context.write(data, promise: written)
            default:
                context.write(data, promise: promise)
            }
        }
    }
}

/// A request head read from raw bytes, as far as `SnapshotFastPath` needs it.
struct RequestHead {
    /// A `GET /v1/conversations/{id}[?after_seq=N|before_seq=N][&limit=N]` target, with a plain id
    /// (nothing to decode).
    struct SnapshotTarget: Equatable {
        var id: String
        var afterSeq: String?
        var beforeSeq: String?
        var limit: String?
    }

    /// Bytes of the head, CRLF CRLF included.
    var size: Int
    /// Set for a GET of a conversation snapshot.
    var snapshot: SnapshotTarget?
    /// Where the token of the one `Authorization: Bearer` header is, from the head's first byte.
    var bearerToken: Range<Int>?
    var contentLength: Int
    /// The request asks for a WebSocket (`Upgrade: websocket`): its handshake headers.
    var webSocket: WebSocketHandshake?
    /// The request is the codec's for good (`Connection`, or an upgrade): it takes the connection.
    var handsOver = false

    /// What a WebSocket upgrade request says of its handshake. NIO's upgrader refuses a missing key or a
    /// version other than 13 by closing the connection without a word, and takes any key; checked here
    /// first, such a request gets an answer (RFC 6455, 4.2.1 and 4.4).
    struct WebSocketHandshake {
        /// The one `Sec-WebSocket-Key` and `Sec-WebSocket-Version` values (nil: missing or repeated).
        var key: String?
        var version: String?

        var refusal: SnapshotFastPath.Refusal? {
            guard version == "13" else {
                return .init(status: "426 Upgrade Required", code: "upgrade_required",
                             message: "this server speaks WebSocket version 13: send one Sec-WebSocket-Version: 13",
                             headers: "Sec-WebSocket-Version: 13\r\n")
            }
            guard let key, Self.isKey(key) else {
                return .init(status: "400 Bad Request", code: "bad_request",
                             message: "Sec-WebSocket-Key must be one header holding 16 random bytes in base64 (24 characters ending in ==)")
            }
            return nil
        }

        /// 16 bytes in base64: 22 characters of the alphabet, then "==".
        static func isKey(_ key: String) -> Bool {
            let bytes = Array(key.utf8)
            guard bytes.count == 24, bytes[22] == 61, bytes[23] == 61 else { return false }
            return bytes[..<22].allSatisfy { ($0 >= 65 && $0 <= 90) || ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 43 || $0 == 47 }
        }
    }

    enum Parse {
        case complete(RequestHead)
        /// No CRLF CRLF yet, and nothing wrong so far.
        case incomplete
        /// Not a request this handler can delimit or answer: the codec takes over.
        case notForUs
    }

    /// Reads the head at the start of `buffer`, in one pass over its bytes.
    static func parse(_ buffer: ByteBuffer) -> Parse {
        buffer.withUnsafeReadableBytes { raw in
            guard let base = raw.baseAddress else { return .incomplete }
            let bytes = base.assumingMemoryBound(to: UInt8.self)
            let count = min(raw.count, SnapshotFastPath.maxHeadBytes)
            var head = RequestHead(size: 0, snapshot: nil, bearerToken: nil, contentLength: 0)
            var sawLength = false, authorizations = 0
            var upgrade = false
            var keys: [String] = [], versions: [String] = []
            var lineStart = 0
            var isFirstLine = true
            while lineStart < count {
                guard let found = memchr(bytes + lineStart, 10, count - lineStart) else { return .incomplete }
                let lf = UnsafeRawPointer(found) - UnsafeRawPointer(bytes)
                // Every LF must end a CRLF.
                guard lf > lineStart, bytes[lf - 1] == 13 else { return .notForUs }
                let line = lineStart..<(lf - 1)
                lineStart = lf + 1
                if line.isEmpty {
                    guard !isFirstLine else { return .notForUs }  // a blank line before the request line
                    if authorizations != 1 { head.bearerToken = nil }
                    if upgrade {
                        head.webSocket = WebSocketHandshake(key: keys.count == 1 ? keys[0] : nil, version: versions.count == 1 ? versions[0] : nil)
                        head.handsOver = true
                    }
                    head.size = lineStart
                    return .complete(head)
                }
                if isFirstLine {
                    isFirstLine = false
                    guard readRequestLine(bytes, line, into: &head) else { return .notForUs }
                    continue
                }
                // A header: token ":" value, no control bytes but HT (so no folding, no bare CR).
                var colon = line.lowerBound
                while colon < line.upperBound && isTokenByte(bytes[colon]) { colon += 1 }
                guard colon > line.lowerBound, colon < line.upperBound, bytes[colon] == 58 else { return .notForUs }
                var valueStart = colon + 1, valueEnd = line.upperBound
                for index in valueStart..<valueEnd where (bytes[index] < 32 && bytes[index] != 9) || bytes[index] == 127 {
                    return .notForUs
                }
                while valueStart < valueEnd && (bytes[valueStart] == 32 || bytes[valueStart] == 9) { valueStart += 1 }
                while valueEnd > valueStart && (bytes[valueEnd - 1] == 32 || bytes[valueEnd - 1] == 9) { valueEnd -= 1 }
                let name = line.lowerBound..<colon
                func value() -> String { String(decoding: UnsafeBufferPointer(start: bytes + valueStart, count: valueEnd - valueStart), as: UTF8.self) }
                if nameIs(bytes, name, "transfer-encoding") || nameIs(bytes, name, "expect") || nameIs(bytes, name, "te") {
                    return .notForUs
                } else if nameIs(bytes, name, "upgrade") {
                    // Only a WebSocket upgrade is looked at; anything else is the codec's to judge.
                    guard value().lowercased() == "websocket" else { return .notForUs }
                    upgrade = true
                } else if nameIs(bytes, name, "connection") {
                    head.handsOver = true
                } else if nameIs(bytes, name, "sec-websocket-key") {
                    keys.append(value())
                } else if nameIs(bytes, name, "sec-websocket-version") {
                    versions.append(value())
                } else if nameIs(bytes, name, "content-length") {
                    let digits = valueStart..<valueEnd
                    guard !sawLength, !digits.isEmpty, digits.allSatisfy({ bytes[$0] >= 48 && bytes[$0] <= 57 })
                    else { return .notForUs }
                    sawLength = true
                    // Past 18 digits it would not fit an Int: over any limit anyway.
                    head.contentLength = digits.count > 18 ? .max : digits.reduce(0) { $0 * 10 + Int(bytes[$1] - 48) }
                } else if nameIs(bytes, name, "authorization") {
                    authorizations += 1
                    let prefix = Array("Bearer ".utf8)
                    if valueEnd - valueStart > prefix.count, memcmp(bytes + valueStart, prefix, prefix.count) == 0 {
                        head.bearerToken = (valueStart + prefix.count)..<valueEnd
                    }
                }
            }
            return .incomplete
        }
    }

    /// Whether `buffer` starts with an HTTP/1.0 request whose head (as far as it has come) has no
    /// `Connection: keep-alive`: the connection's last request, after whose answer it closes.
    static func isHTTP10WithoutKeepAlive(_ buffer: ByteBuffer) -> Bool {
        let head = String(decoding: buffer.readableBytesView.prefix(SnapshotFastPath.maxHeadBytes), as: UTF8.self)
        let lines = head.split(separator: "\r\n", omittingEmptySubsequences: false)
        guard let first = lines.first, first.hasSuffix(" HTTP/1.0") else { return false }
        for line in lines.dropFirst() {
            if line.isEmpty { break }
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == "connection", parts[1].lowercased().contains("keep-alive") { return false }
        }
        return true
    }

    /// `METHOD SP target SP HTTP/1.1`, printable ASCII, an origin-form target.
    private static func readRequestLine(_ bytes: UnsafePointer<UInt8>, _ line: Range<Int>, into head: inout RequestHead) -> Bool {
        var methodEnd = line.lowerBound
        while methodEnd < line.upperBound && isTokenByte(bytes[methodEnd]) { methodEnd += 1 }
        guard methodEnd > line.lowerBound, methodEnd < line.upperBound, bytes[methodEnd] == 32 else { return false }
        let targetStart = methodEnd + 1
        var targetEnd = targetStart
        while targetEnd < line.upperBound && bytes[targetEnd] > 32 && bytes[targetEnd] < 127 { targetEnd += 1 }
        let version = Array(" HTTP/1.1".utf8)
        guard targetEnd > targetStart, bytes[targetStart] == 47, line.upperBound - targetEnd == version.count,
              memcmp(bytes + targetEnd, version, version.count) == 0
        else { return false }
        let isGet = methodEnd - line.lowerBound == 3 && bytes[line.lowerBound] == 71 && bytes[line.lowerBound + 1] == 69
            && bytes[line.lowerBound + 2] == 84
        if isGet { head.snapshot = snapshotTarget(bytes, targetStart..<targetEnd) }
        return true
    }

    /// The snapshot a target asks for, or nil for any other target (or one with something to decode:
    /// the route handles those).
    private static func snapshotTarget(_ bytes: UnsafePointer<UInt8>, _ target: Range<Int>) -> SnapshotTarget? {
        let prefix = SnapshotFastPath.prefix
        guard target.count > prefix.utf8CodeUnitCount, memcmp(bytes + target.lowerBound, prefix.utf8Start, prefix.utf8CodeUnitCount) == 0
        else { return nil }
        func text(_ range: Range<Int>) -> String {
            String(decoding: UnsafeBufferPointer(start: bytes + range.lowerBound, count: range.count), as: UTF8.self)
        }
        let idStart = target.lowerBound + prefix.utf8CodeUnitCount
        var idEnd = idStart
        while idEnd < target.upperBound && bytes[idEnd] != 63 {  // '?'
            switch bytes[idEnd] {
            case 47, 37, 43, 35: return nil  // '/', '%', '+', '#'
            default: idEnd += 1
            }
        }
        guard idEnd > idStart else { return nil }
        var result = SnapshotTarget(id: text(idStart..<idEnd), afterSeq: nil, beforeSeq: nil, limit: nil)
        var pairStart = idEnd + 1
        while pairStart < target.upperBound {
            var pairEnd = pairStart
            while pairEnd < target.upperBound && bytes[pairEnd] != 38 { pairEnd += 1 }  // '&'
            guard let equals = (pairStart..<pairEnd).first(where: { bytes[$0] == 61 }) else { return nil }
            let value = text((equals + 1)..<pairEnd)
            if equals - pairStart == 9 && memcmp(bytes + pairStart, "after_seq", 9) == 0 {
                result.afterSeq = value
            } else if equals - pairStart == 10 && memcmp(bytes + pairStart, "before_seq", 10) == 0 {
                result.beforeSeq = value
            } else if equals - pairStart == 5 && memcmp(bytes + pairStart, "limit", 5) == 0 {
                result.limit = value
            } else {
                return nil
            }
            pairStart = pairEnd + 1
        }
        return result
    }

    /// Whether the header name at `range` is `expected` (lowercase letters and '-'), in any case.
    @inline(__always)
    private static func nameIs(_ bytes: UnsafePointer<UInt8>, _ range: Range<Int>, _ expected: StaticString) -> Bool {
        guard expected.utf8CodeUnitCount == range.count else { return false }
        let letters = expected.utf8Start
        // Token bytes only: `| 0x20` folds letters to lowercase and leaves '-' as it is.
        for offset in 0..<range.count where bytes[range.lowerBound + offset] | 0x20 != letters[offset] { return false }
        return true
    }

    /// RFC 9110 token characters.
    private static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case 48...57, 65...90, 97...122: return true
        case 33, 35, 36, 37, 38, 39, 42, 43, 45, 46, 94, 95, 96, 124, 126: return true
        default: return false
        }
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
