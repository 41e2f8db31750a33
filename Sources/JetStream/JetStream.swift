import Foundation
import NATS
import NIOCore

/// JetStream over a ``NATSConnection``: JSON requests on `$JS.API.*` subjects, publishes answered with a
/// ``PubAck``, and pull consumers. Holds no state of its own beyond its settings.
///
/// ```swift
/// let js = JetStream(nats)
/// _ = try await js.createStream(StreamConfig(name: "ORDERS", subjects: ["orders.>"], replicas: 3))
/// let ack = try await js.publish(payload, to: "orders.new", messageID: "order-17",
///                                retryUntil: .now + .seconds(30))
/// ```
public struct JetStream: Sendable {
    public let connection: NATSConnection
    /// The API's subject prefix (`$JS.API`, or `$JS.<domain>.API`).
    public let apiPrefix: String
    /// How long an API request or a publish waits for its answer.
    public let timeout: Duration

    public init(_ connection: NATSConnection, apiPrefix: String = "$JS.API", timeout: Duration = .seconds(5)) {
        self.connection = connection
        self.apiPrefix = apiPrefix
        self.timeout = timeout
    }

    // MARK: Streams

    /// Creates a stream (`$JS.API.STREAM.CREATE.<name>`); creating one that exists with the same config
    /// succeeds.
    public func createStream(_ config: StreamConfig) async throws -> StreamInfo {
        try await api("STREAM.CREATE.\(config.name)", body: config)
    }

    /// Changes a stream's configuration (`$JS.API.STREAM.UPDATE.<name>`).
    public func updateStream(_ config: StreamConfig) async throws -> StreamInfo {
        try await api("STREAM.UPDATE.\(config.name)", body: config)
    }

    /// A stream's configuration, state and cluster placement (`$JS.API.STREAM.INFO.<name>`).
    public func streamInfo(_ name: String) async throws -> StreamInfo {
        try await api("STREAM.INFO.\(name)", body: Optional<Int>.none)
    }

    /// Deletes a stream and its messages (`$JS.API.STREAM.DELETE.<name>`).
    public func deleteStream(_ name: String) async throws {
        struct Deleted: Decodable { var success: Bool }
        let _: Deleted = try await api("STREAM.DELETE.\(name)", body: Optional<Int>.none)
    }

    // MARK: Consumers

    /// Creates (or updates) the durable pull consumer `config.durableName` on `stream`
    /// (`$JS.API.CONSUMER.CREATE.<stream>.<durable>`).
    public func createConsumer(stream: String, _ config: ConsumerConfig) async throws -> ConsumerInfo {
        try await api("CONSUMER.CREATE.\(stream).\(config.durableName)", body: CreateConsumerRequest(streamName: stream, config: config))
    }

    /// A consumer's state (`$JS.API.CONSUMER.INFO.<stream>.<consumer>`).
    public func consumerInfo(stream: String, consumer: String) async throws -> ConsumerInfo {
        try await api("CONSUMER.INFO.\(stream).\(consumer)", body: Optional<Int>.none)
    }

    /// Deletes a consumer (`$JS.API.CONSUMER.DELETE.<stream>.<consumer>`).
    public func deleteConsumer(stream: String, consumer: String) async throws {
        struct Deleted: Decodable { var success: Bool }
        let _: Deleted = try await api("CONSUMER.DELETE.\(stream).\(consumer)", body: Optional<Int>.none)
    }

    /// The pull consumer `consumer` of `stream`, to fetch from (it must exist).
    public func pullConsumer(stream: String, consumer: String) -> PullConsumer {
        PullConsumer(jetStream: self, stream: stream, consumer: consumer)
    }

    // MARK: Publishing

    /// Publishes `payload` to a stream's subject and waits for the stream's ``PubAck``.
    ///
    /// - Parameters:
    ///   - messageID: sent as `Nats-Msg-Id`: a second publish with the same id within the stream's
    ///     duplicate window is not stored again, and its PubAck says `duplicate`.
    ///   - expectedLastSequence: sent as `Nats-Expected-Last-Sequence`: the stream refuses the message
    ///     (error 10071) unless its last sequence is this one.
    /// - Throws: `NATSError` `.noResponders` (no stream takes the subject, or its leader is being elected),
    ///   `.timeout`, `.connectionLost`; ``JetStreamError`` when the stream refuses the message.
    public func publish(_ payload: ByteBuffer, to subject: String, messageID: String? = nil, expectedLastSequence: UInt64? = nil,
                        timeout: Duration? = nil) async throws -> PubAck {
        var headers = NATSHeaders()
        if let messageID { headers.append("Nats-Msg-Id", messageID) }
        if let expectedLastSequence { headers.append("Nats-Expected-Last-Sequence", String(expectedLastSequence)) }
        let answer = try await connection.request(payload, to: subject, headers: headers.isEmpty ? nil : headers, timeout: timeout ?? self.timeout)
        return try PubAck.parse(answer.payload, subject: subject)
    }

    /// Publishes until a ``PubAck`` comes back or `deadline` passes: a publish whose ack times out, finds no
    /// responders (the stream's leader is being elected), finds its earlier attempt still in process, or is
    /// lost with its connection is sent again with
    /// the same `Nats-Msg-Id`, after a backoff of 50 ms doubling up to 500 ms, plus up to 50 ms of jitter (during
    /// an election every attempt finds no responders at once, so the backoff decides how soon after the election
    /// the write goes through).
    ///
    /// So the message is stored once (the duplicate window drops the repeats: keep it longer than the time
    /// given here) and this returns only once it is. A refusal by the stream (wrong last sequence, no such
    /// stream) is thrown at once. With `expectedLastSequence`, a retry refused as "wrong last sequence"
    /// looks at the message after the expected one: when it carries `messageID`, the first attempt was
    /// stored, and this returns its PubAck (marked `duplicate`).
    ///
    /// `onRetry` is told of every attempt that failed and is retried (its number from 1, and its error):
    /// for a log line or a figure of how long the stream was away.
    ///
    /// - Throws: ``JetStreamError`` "not acknowledged" with the number of attempts and the last error when
    ///   the deadline passes first: the message may or may not be stored, and publishing it again with the
    ///   same id within the duplicate window stores it at most once.
    public func publish(_ payload: ByteBuffer, to subject: String, messageID: String, expectedLastSequence: UInt64? = nil,
                        retryUntil deadline: ContinuousClock.Instant, attemptTimeout: Duration = .seconds(2),
                        onRetry: ((_ attempt: Int, _ error: any Error) -> Void)? = nil) async throws -> PubAck {
        var attempts = 0
        var backoff = Duration.milliseconds(50)
        var generator = SystemRandomNumberGenerator()
        while true {
            attempts += 1
            let lastError: any Error
            do {
                let left = deadline - .now
                return try await publish(payload, to: subject, messageID: messageID, expectedLastSequence: expectedLastSequence,
                                         timeout: min(attemptTimeout, max(left, .milliseconds(10))))
            } catch let error as NATSError where Self.isRetryable(error) {
                lastError = error
            } catch let error as JetStreamError where Self.isRetryable(error) {
                lastError = error
            } catch let error as JetStreamError where attempts > 1 && error.errorCode == JetStreamError.ErrorCode.wrongLastSequence {
                // The stream checks the expected sequence before the message id, so the retry of an attempt
                // that was stored (its ack lost) is refused as "wrong last sequence". Then the message right
                // after the expected sequence is ours exactly when it carries our id.
                if let expected = expectedLastSequence, let ack = await storedEarlier(error, after: expected, messageID: messageID) {
                    return ack
                }
                throw JetStreamError(code: error.code, errorCode: error.errorCode, description: error.errorDescription,
                                     subject: subject, attempts: attempts, underlying: error, stream: error.stream)
            }
            let wait = backoff + .milliseconds(Int64(generator.next() % 50))
            guard ContinuousClock.now + wait < deadline else {
                throw JetStreamError(code: 0, errorCode: nil, description: "message \(messageID) not acknowledged before the deadline",
                                     subject: subject, attempts: attempts, underlying: lastError)
            }
            onRetry?(attempts, lastError)
            try await Task.sleep(for: wait)
            backoff = min(backoff * 2, .milliseconds(500))
        }
    }

    /// The message stored at `sequence` in `stream` (`$JS.API.STREAM.MSG.GET.<stream>`).
    public func message(stream: String, sequence: UInt64) async throws -> StoredMessage {
        let answer: StoredMessageAnswer = try await api("STREAM.MSG.GET.\(stream)", body: ["seq": sequence])
        return answer.message
    }

    /// The PubAck of an earlier attempt of `messageID`, if the stream that refused a retry with `error`
    /// holds it right after `expected`.
    func storedEarlier(_ error: JetStreamError, after expected: UInt64, messageID: String) async -> PubAck? {
        guard let stream = error.stream, let stored = try? await message(stream: stream, sequence: expected + 1),
              stored.headers?["Nats-Msg-Id"] == messageID
        else { return nil }
        return PubAck(stream: stream, sequence: expected + 1, duplicate: true)
    }

    /// A stream's answer that a later attempt may turn into a PubAck: 503 (no stream leader yet), or
    /// "duplicate message id is in process" (an earlier attempt with this id is still being stored, as when
    /// its ack timed out under load: the next attempt finds it stored and is acknowledged as a duplicate).
    static func isRetryable(_ error: JetStreamError) -> Bool {
        error.code == 503 || error.errorCode == JetStreamError.ErrorCode.duplicateMessageIDInProcess
    }

    static func isRetryable(_ error: NATSError) -> Bool {
        switch error.code {
        case .timeout, .noResponders, .connectionLost, .reconnectBufferFull, .staleConnection: true
        default: false
        }
    }

    // MARK: The API

    /// Sends `body` as JSON to `$JS.API.<suffix>` and decodes the answer, or throws the error it holds.
    func api<Body: Encodable, Answer: Decodable>(_ suffix: String, body: Body?) async throws -> Answer {
        let subject = "\(apiPrefix).\(suffix)"
        let payload = try body.map { ByteBuffer(bytes: try JSONEncoder().encode($0)) } ?? ByteBuffer()
        let answer = try await connection.request(payload, to: subject, timeout: timeout)
        let data = Data(answer.payload.readableBytesView)
        if let probe = try? JSONDecoder().decode(ErrorProbe.self, from: data), let error = probe.error {
            throw JetStreamError(code: error.code, errorCode: error.errCode, description: error.description ?? "no description", subject: subject)
        }
        do {
            return try JSONDecoder().decode(Answer.self, from: data)
        } catch {
            throw JetStreamError(code: 0, errorCode: nil, description: "unexpected answer (\(error)): '\(String(decoding: data.prefix(300), as: UTF8.self))'", subject: subject)
        }
    }
}

/// Any API answer, read for its `error` object only.
private struct ErrorProbe: Decodable {
    var error: APIErrorBody?
}

/// A durable pull consumer: fetch a batch, process it, ack.
public struct PullConsumer: Sendable {
    public let jetStream: JetStream
    public let stream: String
    public let consumer: String

    /// Pulls up to `batch` messages (`$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>`), waiting at most
    /// `expires` for them to come.
    ///
    /// Returns early with fewer (or none) when the server says it has no more now (status 404 with
    /// `noWait`, 408 when the request expires). With `idleHeartbeat`, the server sends a status 100 message
    /// at that interval while it has nothing to deliver; two intervals without anything end the fetch with
    /// `.timeout` (the server or the stream's leader is gone), unless messages were already received.
    /// - Throws: ``JetStreamError`` on status 409 (consumer deleted, leadership change, too many waiting
    ///   pulls...), `NATSError` `.noResponders` when nobody serves the consumer.
    public func fetch(batch: Int, expires: Duration = .seconds(5), idleHeartbeat: Duration? = nil, noWait: Bool = false) async throws -> [JetStreamMessage] {
        let subject = "\(jetStream.apiPrefix).CONSUMER.MSG.NEXT.\(stream).\(consumer)"
        // no_wait answers 404 at once when nothing is pending; with expires beside it the server waits instead.
        var json = noWait ? #"{"batch":\#(batch),"no_wait":true"# : #"{"batch":\#(batch),"expires":\#(nanoseconds(expires))"#
        if let idleHeartbeat { json += #","idle_heartbeat":\#(nanoseconds(idleHeartbeat))"# }
        json += "}"
        let messages = try await jetStream.connection.requestMany(
            ByteBuffer(string: json), to: subject, maxAnswers: batch, timeout: expires + .seconds(1),
            stallTimeout: idleHeartbeat.map { $0 * 2 }
        ) { message in
            guard let status = message.status else { return .keep }
            switch status {
            case 100: return .skip  // idle heartbeat
            case 404, 408: return .finish  // no messages now / the pull expired
            case 409:
                let text = message.headers?.statusDescription ?? "conflict"
                if text.contains("Exceeds MaxBytes") { return .finish }
                return .fail(NATSError(.serverError, "pull refused: \(text)", subject: subject, serverMessage: text))
            default:
                return .fail(NATSError(.serverError, "unexpected status \(status) in a pull", subject: subject, serverMessage: message.headers?.statusDescription))
            }
        }
        let connection = jetStream.connection
        return messages.map { JetStreamMessage(message: $0, connection: connection) }
    }

    /// The consumer's state.
    public func info() async throws -> ConsumerInfo {
        try await jetStream.consumerInfo(stream: stream, consumer: consumer)
    }

    private func nanoseconds(_ duration: Duration) -> Int64 {
        duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000
    }
}
