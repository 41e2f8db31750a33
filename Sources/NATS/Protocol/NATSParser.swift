import NIOCore

/// Cuts the bytes the server sends into ``ServerOp``s, whatever the reads look like: an operation may
/// arrive in pieces split at any byte, and one read may hold many operations.
///
/// A state machine walks the bytes once. A control line or a body that lies whole inside one read is
/// handed on as a slice of that read's buffer (no copy); only what straddles two reads is copied, into
/// `partialLine` (at most ``maxControlLine`` bytes) or `partialBody` (exactly the announced size).
///
/// ```
///            ┌──────────── line ───────────┐  ┌── body (total bytes) ──┐ ┌ end ┐
/// read 1:    HMSG s 1 _INBOX.x 12 17␍␊NATS/1.0␍␊␍␊he
/// read 2:                                                    llo␍␊PING␍␊
///                                                   ^ partialBody holds "NATS/1.0␍␊␍␊he" until "llo" arrives
/// ```
struct NATSParser {
    /// The longest control line accepted (an INFO with many `connect_urls` is the longest one).
    static let maxControlLine = 64 * 1024

    /// The largest body accepted (a guard against a hostile size, well above any `max_payload`).
    var maxPayload = 64 * 1024 * 1024

    private enum State {
        /// Reading a control line up to its LF.
        case line
        /// Reading the header block and payload announced by a MSG or HMSG line.
        case body(MessageHead)
        /// Expecting the CR (false) or the LF (true) that ends a body.
        case bodyEnd(sawCR: Bool)
    }

    private var state = State.line
    /// The start of a control line that the previous reads ended in.
    private var partialLine = ByteBuffer()
    /// The start of a body that the previous reads ended in (capacity: the whole body).
    private var partialBody: ByteBuffer?

    init() {}

    /// Parses the readable bytes of `input`, calling `emit` for each complete operation in order. What is
    /// left incomplete at the end is kept for the next call. Throws a ``NATSError`` with code
    /// `.protocolError` on bytes that break the protocol; the parser is not usable after that.
    mutating func parse(_ input: ByteBuffer, _ emit: (ServerOp) throws -> Void) throws {
        let base = input.readerIndex
        let count = input.readableBytes
        try input.withUnsafeReadableBytes { bytes in
            var index = 0
            while index < count {
                switch state {
                case .line:
                    let end = firstLineFeed(bytes, from: index)
                    if partialLine.readableBytes == 0 {
                        guard let end else {
                            try keepPartialLine(UnsafeRawBufferPointer(rebasing: bytes[index..<count]))
                            index = count
                            continue
                        }
                        // The whole line is in this read: parse it in place.
                        let line = UnsafeRawBufferPointer(rebasing: bytes[index..<end])
                        try handle(ServerOp.parseControlLine(line, in: input, at: base + index, maxPayload: maxPayload), emit)
                        index = end + 1
                    } else {
                        guard let end else {
                            try keepPartialLine(UnsafeRawBufferPointer(rebasing: bytes[index..<count]))
                            index = count
                            continue
                        }
                        // The line began in an earlier read: finish it in partialLine and parse it there.
                        try keepPartialLine(UnsafeRawBufferPointer(rebasing: bytes[index..<end]))
                        index = end + 1
                        let line = partialLine
                        partialLine.clear()  // a slice of `line` may live on: the next write copies first
                        try line.withUnsafeReadableBytes { lineBytes in
                            try handle(ServerOp.parseControlLine(lineBytes, in: line, at: line.readerIndex, maxPayload: maxPayload), emit)
                        }
                    }
                case .body(let head):
                    let available = count - index
                    if let have = partialBody?.readableBytes {
                        let take = min(head.totalLength - have, available)
                        partialBody?.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[index..<(index + take)]))
                        index += take
                        if let body = partialBody, body.readableBytes == head.totalLength {
                            partialBody = nil
                            try finishBody(head, body, emit)
                        }
                    } else if available >= head.totalLength {
                        // The whole body is in this read: hand on a slice.
                        guard let body = input.getSlice(at: base + index, length: head.totalLength) else {
                            throw NATSError(.protocolError, "body outside the read buffer")
                        }
                        index += head.totalLength
                        try finishBody(head, body, emit)
                    } else {
                        var body = ByteBufferAllocator().buffer(capacity: head.totalLength)
                        body.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[index..<count]))
                        partialBody = body
                        index = count
                    }
                case .bodyEnd(let sawCR):
                    let byte = bytes[index]
                    if !sawCR, byte == 13 {
                        state = .bodyEnd(sawCR: true)
                    } else if sawCR, byte == 10 {
                        state = .line
                    } else {
                        throw NATSError(.protocolError, "a message body is not followed by CRLF (byte \(byte) instead)")
                    }
                    index += 1
                }
            }
        }
    }

    private mutating func handle(_ line: ServerOp.ControlLine, _ emit: (ServerOp) throws -> Void) throws {
        switch line {
        case .op(let op): try emit(op)
        case .messageHead(let head): state = .body(head)
        }
    }

    private mutating func finishBody(_ head: MessageHead, _ body: ByteBuffer, _ emit: (ServerOp) throws -> Void) throws {
        state = .bodyEnd(sawCR: false)
        guard let message = head.message(body: body) else {
            throw NATSError(.protocolError, "a message body shorter than its header size")
        }
        try emit(.msg(message))
    }

    private mutating func keepPartialLine(_ bytes: UnsafeRawBufferPointer) throws {
        guard partialLine.readableBytes + bytes.count <= Self.maxControlLine else {
            throw NATSError(.protocolError, "a control line longer than \(Self.maxControlLine) bytes (no LF found)")
        }
        partialLine.writeBytes(bytes)
    }

    private func firstLineFeed(_ bytes: UnsafeRawBufferPointer, from start: Int) -> Int? {
        guard start < bytes.count, let base = bytes.baseAddress else { return nil }
        guard let found = memchr(base + start, 10, bytes.count - start) else { return nil }
        return base.distance(to: UnsafeRawPointer(found))
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
