import NIOCore

/// A message delivered by the server (MSG or HMSG).
///
/// Its parts are slices of the bytes the socket delivered: reading a message copies nothing unless it
/// arrived split over several reads. A slice keeps the whole read buffer it comes from alive; copy the
/// payload (`ByteBuffer(buffer: message.payload)` does not; `Array(message.payload.readableBytesView)`
/// does) before keeping it for long.
public struct NATSMessage: Sendable, Equatable {
    /// The subject the message was published to, as bytes.
    public var subjectBytes: ByteBuffer
    /// The subscription the server delivered it to.
    public var sid: UInt64
    /// The subject to answer to, as bytes, when the publisher gave one.
    public var replyBytes: ByteBuffer?
    /// The raw header block (HMSG), starting with `NATS/1.0`.
    public var headerBytes: ByteBuffer?
    /// The payload.
    public var payload: ByteBuffer

    public init(subject: ByteBuffer, sid: UInt64, reply: ByteBuffer?, headers: ByteBuffer?, payload: ByteBuffer) {
        self.subjectBytes = subject
        self.sid = sid
        self.replyBytes = reply
        self.headerBytes = headers
        self.payload = payload
    }

    /// The subject the message was published to.
    public var subject: String { String(buffer: subjectBytes) }

    /// The subject to answer to, if any.
    public var replyTo: String? { replyBytes.map { String(buffer: $0) } }

    /// The headers, parsed (allocates; ``status`` does not).
    public var headers: NATSHeaders? { headerBytes.flatMap(NATSHeaders.parse) }

    /// The status code of the header block (`503` no responders; JetStream's `100`, `404`, `408`, `409`), read
    /// without allocating.
    public var status: Int? { headerBytes.flatMap(NATSHeaders.status(of:)) }

    /// Whether this is the server's "no responders" answer to a request (status 503, no payload).
    public var isNoResponders: Bool { status == 503 && payload.readableBytes == 0 }
}
