import NATS
import NIOCore

/// A message pulled from a consumer, with what its reply subject says about it and the means to ack it.
public struct JetStreamMessage: Sendable {
    /// The message as the server delivered it; its reply subject is the ack subject.
    public let message: NATSMessage
    let connection: NATSConnection

    init(message: NATSMessage, connection: NATSConnection) {
        self.message = message
        self.connection = connection
    }

    /// The payload.
    public var payload: ByteBuffer { message.payload }
    /// The subject the message was published to.
    public var subject: String { message.subject }
    /// The headers it was published with.
    public var headers: NATSHeaders? { message.headers }

    /// Stream and consumer sequences, delivery count and pending count, read from the reply subject.
    public var metadata: AckMetadata? { message.replyBytes.flatMap(AckMetadata.init(replySubject:)) }

    /// The message's sequence in the stream, read from the reply subject without allocating.
    public var streamSequence: UInt64? { message.replyBytes.flatMap { AckMetadata.numbers(of: $0)?.streamSequence } }

    private static let ackBody = ByteBuffer(string: "+ACK")
    private static let nakBody = ByteBuffer(string: "-NAK")
    private static let progressBody = ByteBuffer(string: "+WPI")
    private static let termBody = ByteBuffer(string: "+TERM")

    /// Acknowledges the message (with an `.all` ack policy: every message delivered before it too).
    /// Fire and forget: the ack is written with the next batch of writes.
    public func ack() throws { try reply(Self.ackBody) }

    /// Acknowledges the message and waits for the server to confirm it has recorded the ack.
    public func ackSync(timeout: Duration = .seconds(5)) async throws {
        guard let reply = message.replyBytes else { throw notAckable() }
        _ = try await connection.request(Self.ackBody, to: String(buffer: reply), timeout: timeout)
    }

    /// Asks for the message to be delivered again (now, or after `delay`).
    public func nak(delay: Duration? = nil) throws {
        guard let delay else { return try reply(Self.nakBody) }
        let nanoseconds = delay.components.seconds * 1_000_000_000 + delay.components.attoseconds / 1_000_000_000
        try reply(ByteBuffer(string: #"-NAK {"delay":\#(nanoseconds)}"#))
    }

    /// Says the message is still being worked on (resets its ack wait).
    public func inProgress() throws { try reply(Self.progressBody) }

    /// Tells the server never to deliver the message again.
    public func term() throws { try reply(Self.termBody) }

    private func reply(_ body: ByteBuffer) throws {
        guard let reply = message.replyBytes else { throw notAckable() }
        try connection.publish(body, toSubjectBytes: reply)
    }

    private func notAckable() -> JetStreamError {
        JetStreamError(code: 0, errorCode: nil, description: "the message has no reply subject, so it cannot be acknowledged", subject: message.subject)
    }
}

/// What a JetStream reply subject says about the message it came with:
///
/// ```
/// $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<timestamp ns>.<pending>                  (9 tokens)
/// $JS.ACK.<domain>.<account hash>.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<timestamp>.<pending>.<random>  (11 or 12)
/// ```
public struct AckMetadata: Sendable, Equatable {
    public var domain: String?
    public var stream: String
    public var consumer: String
    /// How many times this message has been delivered (1 the first time).
    public var delivered: UInt64
    public var streamSequence: UInt64
    public var consumerSequence: UInt64
    /// When the message was stored, in nanoseconds since 1970.
    public var timestamp: UInt64
    /// Messages left for the consumer after this one.
    public var pending: UInt64

    /// Parses a reply subject; nil when it is not a `$JS.ACK` subject of 9, 11 or 12 tokens.
    public init?(replySubject: ByteBuffer) {
        let tokens = String(buffer: replySubject).split(separator: ".", omittingEmptySubsequences: false)
        guard let numbers = Self.numbers(of: replySubject) else { return nil }
        let first = tokens.count == 9 ? 2 : 4
        if tokens.count != 9, tokens[2] != "_" { domain = String(tokens[2]) }
        stream = String(tokens[first])
        consumer = String(tokens[first + 1])
        delivered = numbers.delivered
        streamSequence = numbers.streamSequence
        consumerSequence = numbers.consumerSequence
        timestamp = numbers.timestamp
        pending = numbers.pending
    }

    public init?(replySubject: String) {
        self.init(replySubject: ByteBuffer(string: replySubject))
    }

    struct Numbers {
        var delivered, streamSequence, consumerSequence, timestamp, pending: UInt64
    }

    /// The five numbers of a reply subject, read in place.
    static func numbers(of reply: ByteBuffer) -> Numbers? {
        reply.withUnsafeReadableBytes { bytes -> Numbers? in
            guard bytes.count > 8, bytes.starts(with: "$JS.ACK.".utf8) else { return nil }
            return withUnsafeTemporaryAllocation(of: Range<Int>.self, capacity: 12) { tokens -> Numbers? in
                var count = 0
                var start = 0
                for index in 0...bytes.count where index == bytes.count || bytes[index] == UInt8(ascii: ".") {
                    guard count < 12 else { return nil }
                    tokens.initializeElement(at: count, to: start..<index)
                    count += 1
                    start = index + 1
                }
                guard count == 9 || count == 11 || count == 12 else { return nil }
                let first = count == 9 ? 4 : 6  // the index of <delivered>
                var values: (UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0)
                for position in 0..<5 {
                    let token = tokens[first + position]
                    guard !token.isEmpty, token.count <= 19 else { return nil }
                    var value: UInt64 = 0
                    for index in token {
                        let digit = bytes[index]
                        guard digit >= 48, digit <= 57 else { return nil }
                        value = value &* 10 &+ UInt64(digit &- 48)  // 19 digits at most: below 2^64
                    }
                    switch position {
                    case 0: values.0 = value
                    case 1: values.1 = value
                    case 2: values.2 = value
                    case 3: values.3 = value
                    default: values.4 = value
                    }
                }
                return Numbers(delivered: values.0, streamSequence: values.1, consumerSequence: values.2, timestamp: values.3, pending: values.4)
            }
        }
    }
}
