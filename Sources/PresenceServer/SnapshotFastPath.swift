import Chat
import ClientInput
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
/// route builds (`SnapshotAnswers`) and the route's headers. Every other request goes to
/// the codec byte for byte and in order, and the handler stays out of the way until the codec has
/// answered it (`ResponseEnds` reports each answer's end), so answers stay in request order and every
/// error is the route's.
///
/// Where requests begin and end is `RequestFraming`'s to say (a value type, tested on its own and
/// fuzzed against NIO's decoder): it forwards only requests it can delimit, a head ending in CRLF CRLF
/// within `RequestFraming.defaultMaxHeadBytes` (16 KiB) and a body of a single plain `Content-Length`. Anything else —
/// `Transfer-Encoding`, `Upgrade` (a WebSocket), `Connection`, `Expect`, HTTP/1.0, bare LF line ends,
/// folded or malformed headers, an oversize head — hands the connection to the codec for good: from
/// then on every byte goes through unread, and the codec judges the request. Served this way a
/// request is counted in `presence_snapshot_fast_path_total` instead of the per-route request metrics.
final class SnapshotFastPath: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer


    /// Whether servers put this handler in front of their connections: true unless the environment
    /// variable `PRESENCE_SNAPSHOT_FAST_PATH` is `off` (read once, when the first connection opens).
    /// Off, every request goes through the codec and the routes: for measuring what the fast path is
    /// worth (tools/load-snapshot.sh), not for production.
    static let isEnabled = ProcessInfo.processInfo.environment["PRESENCE_SNAPSHOT_FAST_PATH"] != "off"

    typealias Refusal = RequestFraming.Refusal

    /// The response to a complete request without a body that this handler may answer itself, or nil
    /// to hand it to the codec. Given the head and the bytes it was read from (its start).
    typealias Answerer = (RequestHead, ByteBuffer, ByteBufferAllocator) -> ByteBuffer?

    /// A status line's text ("201 Created") and a JSON body: an answer that comes later, from any thread.
    typealias LateAnswer = (status: String, body: ByteBuffer)

    /// Takes a complete request with a body (a message post) that this handler may answer itself,
    /// once `reply` is called (from any thread, exactly once), or returns false to hand it to the codec.
    /// Given the head, the bytes it was read from (its start) and the body.
    typealias Taker = (RequestHead, ByteBuffer, ByteBuffer, @escaping @Sendable (LateAnswer) -> Void) -> Bool

    private let answer: Answerer
    private let take: Taker
    private let served: () -> Void
    /// A request taken by `take` is waiting for its answer: nothing after it is processed until it is
    /// written, and the socket is not read meanwhile (`heldRead`), so a client that sends on without
    /// reading its answers costs one read's bytes.
    private var awaitingAnswer = false
    private var heldRead = false
    /// A stop's quiesce event that came while a taken request waited: the HTTP handlers, which know
    /// nothing of that request, would close the connection before its answer is written.
    private var heldQuiesce: Any?
    /// Bytes were handed to the codec by `process` (after a late answer, outside a read, the codec is
    /// then told the read ended).
    private var handedOn = false
    private var framing: RequestFraming
    /// Bytes read and not yet answered or forwarded (the start of an incomplete request).
    private var pending: ByteBuffer?
    /// Requests handed to the codec whose answer has not ended yet.
    private var forwarded = 0
    /// Answers written since the last flush.
    private var unflushed = false
    private var date = HTTPDate()

    /// The server's handler: snapshots answered and posts taken by `SnapshotAnswers` over `state`;
    /// `served` counts them.
    convenience init(state: PresenceNode, tokens: TokenAuthority, maxBodyBytes: Int, served: @escaping @Sendable () -> Void) {
        let answers = SnapshotAnswers(state: state, tokens: tokens)
        self.init(maxBodyBytes: maxBodyBytes, answer: { answers.answer($0, request: $1, allocator: $2) },
                  take: { answers.takePost($0, request: $1, body: $2, reply: $3) }, served: served)
    }

    /// A handler whose answers come from `answer` and `take` (tests give their own).
    init(maxBodyBytes: Int, answer: @escaping Answerer, take: @escaping Taker = { _, _, _, _ in false }, served: @escaping () -> Void = {}) {
        self.framing = RequestFraming(maxBodyBytes: maxBodyBytes)
        self.answer = answer
        self.take = take
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
        framing.end()
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
        switch framing.mode {
        case .passthrough:
            context.fireChannelRead(data)
            return
        case .ending:
            return
        case .requests, .body:
            break
        }
        var bytes = unwrapInboundIn(data)
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

    /// Answers or forwards every complete request in `pending`, in order; stops at a request taken by
    /// `take` until its answer is written (`lateAnswer`), so answers stay in request order.
    private func process(context: ChannelHandlerContext) {
        while !awaitingAnswer, var buffer = pending, buffer.readableBytes > 0 {
            switch buffer.withUnsafeReadableBytes({ framing.next($0) }) {
            case .wait:
                return
            case .drop:
                pending = nil
                return
            case .handOver(let closesAfterAnswer):
                if closesAfterAnswer { closeAfterAnswers = forwarded + 1 }
                pending = nil
                handedOn = true
                context.fireChannelRead(wrapInboundOut(buffer))
                return
            case .refuse(let refusal):
                end(with: refusal)
                return
            case .body(let count):
                if let part = buffer.readSlice(length: count) {
                    handedOn = true
                    context.fireChannelRead(wrapInboundOut(part))
                }
                pending = buffer.readableBytes > 0 ? buffer : nil
            case .request(let head):
                if head.contentLength == 0, forwarded == 0, context.channel.isWritable,
                   let response = answer(head, buffer, context.channel.allocator) {
                    buffer.moveReaderIndex(forwardBy: head.size)
                    pending = buffer.readableBytes > 0 ? buffer : nil
                    context.write(wrapOutboundOut(response), promise: nil)
                    unflushed = true
                    served()
                    continue
                }
                if head.contentLength > 0, head.postMessageTo != nil, forwarded == 0, context.channel.isWritable,
                   buffer.readableBytes >= head.size + head.contentLength,
                   let body = buffer.getSlice(at: buffer.readerIndex + head.size, length: head.contentLength) {
                    let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
                    let loop = context.eventLoop
                    let taken = take(head, buffer, body) { answer in
                        loop.execute { bound.value.lateAnswer(answer) }
                    }
                    if taken {
                        buffer.moveReaderIndex(forwardBy: head.size + head.contentLength)
                        pending = buffer.readableBytes > 0 ? buffer : nil
                        awaitingAnswer = true
                        return
                    }
                }
                forwarded += 1
                framing.forwarded(head)
                if let part = buffer.readSlice(length: head.size) {
                    handedOn = true
                    context.fireChannelRead(wrapInboundOut(part))
                }
                pending = buffer.readableBytes > 0 ? buffer : nil
            }
        }
    }

    /// The answer to a request `take` took: written (and flushed) now, then the requests read after it,
    /// then the socket is read again.
    private func lateAnswer(_ answer: LateAnswer) {
        awaitingAnswer = false
        guard let context, context.channel.isActive else { return }
        let response = Self.response(status: answer.status, body: answer.body, date: date.now(), allocator: context.channel.allocator)
        context.writeAndFlush(wrapOutboundOut(response), promise: nil)
        handedOn = false
        process(context: context)
        if unflushed {
            unflushed = false
            context.flush()
        }
        if handedOn { context.fireChannelReadComplete() }
        if !awaitingAnswer, let event = heldQuiesce {
            heldQuiesce = nil
            context.fireUserInboundEventTriggered(event)
        }
        if heldRead && !awaitingAnswer {
            heldRead = false
            context.read()
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if awaitingAnswer, event is ChannelShouldQuiesceEvent {
            heldQuiesce = event
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func read(context: ChannelHandlerContext) {
        if awaitingAnswer { heldRead = true } else { context.read() }
    }

    /// A JSON response as the routes answer (status, content type and length, date, server; `closing`
    /// adds `Connection: close`) with `body`, in one buffer.
    static func response(status: String = "200 OK", body: ByteBuffer, date: String, closing: Bool = false,
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
