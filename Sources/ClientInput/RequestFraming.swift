/// Where the requests of one connection's byte stream begin and end, as `SnapshotFastPath` reads them:
/// a state machine over the bytes not yet consumed, returning what to do with them. It performs no
/// I/O, so the handler's reading of a stream can be tested, and fuzzed against NIO's own decoder,
/// without a channel.
///
///     requests ──head with a body──▶ body(remaining) ──body forwarded──▶ requests
///        │
///        ├──a head it cannot delimit, Connection, Upgrade, a codec error──▶ passthrough (for good)
///        └──a refusal (413, a bad WebSocket handshake), end()──────────────▶ ending (reads nothing more)
///
/// The caller passes the bytes it holds from the current position (`next`), performs the step, and
/// consumes exactly the bytes the step names: a head it answers or forwards (`RequestHead.size`, then
/// `forwarded(_:)` for a forwarded one, which expects its body next), a body part, or everything from
/// here on once the stream is handed over.
package struct RequestFraming {
    package enum Mode: Equatable {
        /// At the start of a request.
        case requests
        /// Inside a forwarded request's body.
        case body(remaining: Int)
        /// The codec has the connection: every byte goes to it, unread.
        case passthrough
        /// Nothing more is read: the connection ends with an error answer.
        case ending
    }

    /// What to do with the bytes at the current position.
    package enum Step {
        /// No whole request head yet: wait for more bytes.
        case wait
        /// A complete head (`head.size` bytes, CRLF CRLF included), to answer or to forward.
        case request(RequestHead)
        /// The next `count` bytes are the body of the request forwarded last: forward them.
        case body(count: Int)
        /// The codec takes the connection from here: forward these bytes and every later one unread.
        /// `closesAfterAnswer`: the request is HTTP/1.0 without keep-alive, the connection's last.
        case handOver(closesAfterAnswer: Bool)
        /// Answer this and close the connection, after the answers to earlier requests.
        case refuse(Refusal)
        /// The connection is ending: drop the bytes.
        case drop
    }

    /// The error answer that ends a connection whose next request cannot be read.
    package struct Refusal: Equatable {
        package var status: String
        package var code: String
        package var message: String
        /// Header lines (each ending in CRLF) the answer carries besides the usual ones.
        package var headers = ""

        package init(status: String, code: String, message: String, headers: String = "") {
            self.status = status
            self.code = code
            self.message = message
            self.headers = headers
        }
    }

    /// The longest request head read by default; a longer one goes to the codec (which has its own limits).
    package static let defaultMaxHeadBytes = 16 * 1024

    /// The largest request body any route takes: a longer declared one is refused from the head.
    package let maxBodyBytes: Int
    /// The longest request head read; a longer one goes to the codec (which has its own limits).
    package let maxHeadBytes: Int
    package private(set) var mode = Mode.requests

    package init(maxBodyBytes: Int, maxHeadBytes: Int = Self.defaultMaxHeadBytes) {
        self.maxBodyBytes = maxBodyBytes
        self.maxHeadBytes = maxHeadBytes
    }

    /// The step for `bytes`, the stream's unconsumed bytes from the current position (not empty).
    /// A `body` step assumes its bytes are then forwarded; a `handOver` or `refuse` step changes the
    /// mode for good.
    package mutating func next(_ bytes: UnsafeRawBufferPointer) -> Step {
        switch mode {
        case .passthrough:
            return .handOver(closesAfterAnswer: false)
        case .ending:
            return .drop
        case .body(let remaining):
            let count = min(remaining, bytes.count)
            mode = remaining > count ? .body(remaining: remaining - count) : .requests
            return .body(count: count)
        case .requests:
            break
        }
        let head: RequestHead
        switch RequestHead.parse(bytes, maxHeadBytes: maxHeadBytes) {
        case .incomplete:
            guard bytes.count > maxHeadBytes else { return .wait }
            mode = .passthrough
            return .handOver(closesAfterAnswer: false)
        case .notForUs:
            // An HTTP/1.0 request is its connection's last unless its Connection header says keep-alive:
            // decided on the whole head, never on the part of it that has come.
            let closes: Bool
            switch RequestHead.http10KeepAlive(bytes, maxHeadBytes: maxHeadBytes) {
            case .incomplete: return .wait
            case .notHTTP10, .keepsAlive: closes = false
            case .closes: closes = true
            }
            mode = .passthrough
            return .handOver(closesAfterAnswer: closes)
        case .complete(let parsed):
            head = parsed
        }
        if head.contentLength > maxBodyBytes {
            mode = .ending
            return .refuse(.init(status: "413 Content Too Large", code: "body_too_large",
                                 message: "the body is over the \(maxBodyBytes)-byte limit (its Content-Length is larger)"))
        }
        if let handshake = head.webSocket, let refusal = handshake.refusal {
            mode = .ending
            return .refuse(refusal)
        }
        if head.handsOver {
            mode = .passthrough
            return .handOver(closesAfterAnswer: false)
        }
        return .request(head)
    }

    /// The head `next` returned was forwarded to the codec: its body, if any, comes next.
    package mutating func forwarded(_ head: RequestHead) {
        if head.contentLength > 0 { mode = .body(remaining: head.contentLength) }
    }

    /// Reads nothing more: the connection ends with an error answer.
    package mutating func end() { mode = .ending }

    /// The codec failed on a request it was given (its answer, if any, is Hummingbird's): the codec
    /// keeps the connection, and nothing more is answered here, so that no request after one the codec
    /// could not read is read differently here.
    package mutating func handOver() {
        if mode != .ending { mode = .passthrough }
    }
}
