import Logging
import NIOCore
import NIOPosix
import Synchronization

/// A connection to a NATS server (or a cluster of them), kept alive across server restarts.
///
/// ```swift
/// let nats = try await NATSConnection.connect(NATSOptions(servers: ["nats://127.0.0.1:4222"]))
/// let sub = try nats.subscribe(to: "greet.*")
/// try nats.publish(ByteBuffer(string: "hello"), to: "greet.joe")
/// for try await message in sub { print(message.subject, String(buffer: message.payload)) }
/// ```
///
/// **Writes are coalesced**: ``publish(_:to:replyTo:headers:)`` appends the operation to an outbound buffer
/// and returns; one write per turn of the event loop sends everything appended since, so many publishes
/// become one syscall. ``flush(timeout:)`` returns once the server has processed everything before it.
///
/// **Reconnecting**: when the server goes away the connection tries the next server of the list (the given
/// ones and those the cluster announces in INFO's `connect_urls`) at once, then waits with backoff and
/// jitter (``ReconnectPolicy``). Subscriptions are sent again after the handshake. Publishes made while
/// disconnected are kept (up to ``NATSOptions/reconnectBufferSize`` bytes) and written after the
/// subscriptions, or fail with `.reconnectBufferFull`; bytes not yet written when the socket broke are
/// kept the same way. Requests whose question was already written to the lost server fail at once with
/// `.connectionLost` (their answer cannot come); requests made while disconnected wait for the reconnect.
///
/// > Warning: core NATS is at-most-once: a publish written to a server that dies before reading it is lost.
/// > Use JetStream's publish with an ack for writes that must not be lost.
public final class NATSConnection: Sendable {
    /// Where the connection is in its life.
    public enum Status: Sendable, Equatable {
        case connecting, connected, reconnecting, closed
    }

    let options: NATSOptions
    let eventLoop: any EventLoop
    let core: Mutex<Core>
    var logger: Logger { options.logger }

    private init(options: NATSOptions, eventLoop: any EventLoop) {
        self.options = options
        self.eventLoop = eventLoop
        var seed = SystemRandomNumberGenerator()
        self.core = Mutex(Core(
            machine: ConnectionStateMachine(servers: options.servers, policy: options.reconnect, seed: seed.next()),
            inboxPrefix: "_INBOX." + Self.randomToken(using: &seed) + "."
        ))
    }

    /// Connects to the first server of `options` that answers, trying each once; throws `.connectFailed`
    /// naming what each server said when none does.
    public static func connect(_ options: NATSOptions, on group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws -> NATSConnection {
        let connection = NATSConnection(options: options, eventLoop: group.next())
        try await connection.start()
        return connection
    }

    /// Where the connection is in its life.
    public var status: Status {
        core.withLock { c in
            switch c.machine.state {
            case .idle: .connecting
            case .connecting, .waiting: c.machine.everConnected ? .reconnecting : .connecting
            case .connected: .connected
            case .closed: .closed
            }
        }
    }

    /// The server connected to now, if any.
    public var connectedServer: NATSServerAddress? {
        core.withLock { c in if case .connected(let server) = c.machine.state { server } else { nil } }
    }

    /// The INFO of the server connected to (or last connected to).
    public var serverInfo: ServerInfo? { core.withLock { $0.info } }

    /// How many times the connection was made again after the first time.
    public var reconnectCount: Int { core.withLock { $0.machine.reconnects } }

    /// The servers the connection knows: the given ones, then those learnt from the cluster.
    public var knownServers: [NATSServerAddress] { core.withLock { $0.machine.pool.servers } }

    // MARK: Publishing and subscribing

    /// Publishes `payload` to `subject`, with a subject to answer to and headers if given.
    ///
    /// Returns once the message is in the outbound buffer (or the reconnect buffer while disconnected); it
    /// is written with whatever else is published in the same turn of the event loop.
    /// - Throws: `.invalidSubject`, `.payloadTooLarge`, `.reconnectBufferFull`, `.connectionClosed`.
    public func publish(_ payload: ByteBuffer, to subject: String, replyTo: String? = nil, headers: NATSHeaders? = nil) throws {
        try checkSubject(subject)
        if let replyTo { try checkSubject(replyTo) }
        let reply = replyTo.map(WireSubject.string)
        try publish(payload, to: .string(subject), reply: reply, headers: headers)
    }

    /// Publishes `payload` to a subject given as bytes, such as a message's ``NATSMessage/replyBytes``
    /// (answering a request, acknowledging a JetStream message), without building a String.
    public func publish(_ payload: ByteBuffer, toSubjectBytes subject: ByteBuffer) throws {
        try publish(payload, to: .bytes(subject), reply: nil, headers: nil)
    }

    func publish(_ payload: ByteBuffer, to subject: WireSubject, reply: WireSubject?, headers: NATSHeaders?) throws {
        let op: ClientOp
        if let headers {
            if let problem = headers.validationProblem() { throw NATSError(.invalidSubject, problem, subject: subject.text) }
            op = .hpub(subject: subject, reply: reply, headers: headers, payload: payload)
        } else {
            op = .pub(subject: subject, reply: reply, payload: payload)
        }
        let scheduleFlush = try core.withLock { c -> Bool in
            if let max = c.info?.maxPayload, payload.readableBytes + (headers?.encodedLength ?? 0) > max {
                throw NATSError(.payloadTooLarge, "a message of \(payload.readableBytes) bytes is larger than the server's max_payload of \(max)", server: c.serverName, subject: subject.text)
            }
            return try c.enqueue(op, bufferSize: options.reconnectBufferSize)
        }
        if scheduleFlush { eventLoop.execute { self.flushOutbound() } }
    }

    /// Subscribes to `subject` (wildcards `*` and `>` allowed), in queue group `queue` if given.
    ///
    /// Messages are kept until read (no limit): read them promptly. The subscription is sent again after
    /// every reconnect.
    public func subscribe(to subject: String, queue: String? = nil) throws -> NATSSubscription {
        try checkSubject(subject)
        if let queue { try checkSubject(queue) }
        let (stream, continuation) = AsyncThrowingStream<NATSMessage, any Error>.makeStream()
        let (sid, scheduleFlush) = try core.withLock { c -> (UInt64, Bool) in
            guard !c.machine.isClosed else { throw NATSError(.connectionClosed, "the connection is closed", subject: subject) }
            let sid = c.nextSid
            c.nextSid += 1
            c.subscriptions[sid] = Subscriber(subject: subject, queue: queue, kind: .stream(continuation))
            return (sid, c.enqueueIfConnected(.sub(subject: subject, queue: queue, sid: sid)))
        }
        if scheduleFlush { eventLoop.execute { self.flushOutbound() } }
        return NATSSubscription(connection: self, sid: sid, subject: subject, stream: stream)
    }

    func unsubscribe(sid: UInt64) {
        let scheduleFlush = core.withLock { c -> Bool in
            guard let subscriber = c.subscriptions.removeValue(forKey: sid) else { return false }
            if case .stream(let continuation) = subscriber.kind { continuation.finish() }
            return c.enqueueIfConnected(.unsub(sid: sid, max: nil))
        }
        if scheduleFlush { eventLoop.execute { self.flushOutbound() } }
    }

    // MARK: Flush and close

    /// Returns once the server has processed everything published before (a PING answered by a PONG).
    /// While reconnecting it waits for the reconnect.
    public func flush(timeout: Duration = .seconds(5)) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let deadline = NIODeadline.now() + TimeAmount(timeout)
            let outcome = core.withLock { c -> Result<Bool, NATSError> in
                switch c.machine.state {
                case .closed:
                    return .failure(NATSError(.connectionClosed, "the connection is closed"))
                case .connected:
                    c.pongWaiters.append(PongWaiter(continuation: continuation, deadline: deadline))
                    ClientOp.ping.encode(into: &c.outbound)
                    return .success(c.markFlushScheduled())
                default:
                    c.reconnectPongWaiters.append(PongWaiter(continuation: continuation, deadline: deadline))
                    ClientOp.ping.encode(into: &c.reconnectBuffer)
                    return .success(false)
                }
            }
            switch outcome {
            case .failure(let error): continuation.resume(throwing: error)
            case .success(true): eventLoop.execute { self.flushOutbound() }
            case .success(false): break
            }
        }
    }

    /// Writes what is buffered, closes the socket and fails whatever still waits (`.connectionClosed`).
    public func close() async {
        let action = core.withLock { $0.machine.closeRequested() }
        guard case .close = action else { return }
        let closed = shutdown(NATSError(.connectionClosed, "the connection was closed"), graceful: true)
        try? await closed.get()
    }

    // MARK: Writing

    /// Writes the outbound buffer in one go (runs on the event loop, once per turn that published).
    func flushOutbound() {
        let write = core.withLock { c -> (any Channel, ByteBuffer)? in
            c.flushScheduled = false
            guard let channel = c.channel, c.machine.isConnected, c.outbound.readableBytes > 0 else { return nil }
            let bytes = c.outbound
            c.outbound.clear()
            return (channel, bytes)
        }
        if let (channel, bytes) = write { channel.writeAndFlush(bytes, promise: nil) }
    }

    // MARK: Delivery (on the event loop)

    func deliver(_ message: NATSMessage) {
        let scheduleFlush = core.withLock { c -> Bool in
            guard let subscriber = c.subscriptions[message.sid] else { return false }
            switch subscriber.kind {
            case .stream(let continuation):
                continuation.yield(message)
                return false
            case .inbox:
                guard let token = Self.lastTokenNumber(message.subjectBytes), let request = c.requests[token] else { return false }
                return request.receive(message) ? false : c.removeRequest(token)
            case .batch(let token):
                guard let request = c.requests[token] else { return false }
                return request.receive(message) ? false : c.removeRequest(token)
            }
        }
        if scheduleFlush { eventLoop.execute { self.flushOutbound() } }
    }

    /// The decimal number after the subject's last dot, read in place.
    static func lastTokenNumber(_ subject: ByteBuffer) -> UInt64? {
        subject.withUnsafeReadableBytes { bytes -> UInt64? in
            var value: UInt64 = 0
            var index = bytes.count
            var digits = 0
            while index > 0, bytes[index - 1] != UInt8(ascii: ".") {
                index -= 1
                let byte = bytes[index]
                guard byte >= 48, byte <= 57, digits < 18 else { return nil }
                value = value &+ UInt64(byte &- 48) &* Self.powersOfTen[digits]  // < 10^18: no overflow
                digits += 1
            }
            return digits == 0 ? nil : value
        }
    }

    private static let powersOfTen: [UInt64] = (0..<19).map { exponent in (0..<exponent).reduce(1) { value, _ in value * 10 } }

    // MARK: Timers

    func startTimers() {
        let sweeper = eventLoop.scheduleRepeatedTask(initialDelay: .milliseconds(20), delay: .milliseconds(20)) { _ in
            self.sweep()
        }
        let interval = TimeAmount(options.pingInterval)
        let pinger = eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
            self.ping()
        }
        core.withLock { $0.timers = [sweeper, pinger] }
    }

    /// Fails the requests and flushes whose time is up.
    private func sweep() {
        let now = NIODeadline.now()
        let (expired, scheduleFlush) = core.withLock { c -> ([(PendingRequest, Bool)], Bool) in
            var expired: [(PendingRequest, Bool)] = []
            var scheduleFlush = false
            for (token, request) in c.requests {
                if request.deadline <= now {
                    expired.append((request, false))
                    if c.removeRequest(token) { scheduleFlush = true }
                } else if request.isStalled(now) {
                    expired.append((request, true))
                    if c.removeRequest(token) { scheduleFlush = true }
                }
            }
            for index in c.pongWaiters.indices where (c.pongWaiters[index]?.deadline ?? .distantFuture) <= now {
                c.pongWaiters[index]?.continuation?.resume(throwing: NATSError(.timeout, "flush: no PONG in time", server: c.serverName))
                c.pongWaiters[index]?.continuation = nil
            }
            c.reconnectPongWaiters.removeAll { waiter in
                guard waiter.deadline <= now else { return false }
                waiter.continuation?.resume(throwing: NATSError(.timeout, "flush: not reconnected in time"))
                return true
            }
            return (expired, scheduleFlush)
        }
        if scheduleFlush { flushOutbound() }
        for (request, stalled) in expired { request.expire(stalled: stalled) }
    }

    /// Pings the server; too many pings unanswered means the server is gone (closing the socket reconnects).
    private func ping() {
        enum Step { case none, flush, stale(any Channel) }
        let step = core.withLock { c -> Step in
            guard c.machine.isConnected, let channel = c.channel else { return .none }
            if c.pingsOutstanding >= options.maxPingsOutstanding {
                c.lastError = "stale connection: \(c.pingsOutstanding) pings unanswered"
                return .stale(channel)
            }
            c.pingsOutstanding += 1
            c.pongWaiters.append(nil)
            ClientOp.ping.encode(into: &c.outbound)
            return c.markFlushScheduled() ? .flush : .none
        }
        switch step {
        case .none: break
        case .flush: flushOutbound()
        case .stale(let channel):
            logger.warning("nats: the server stopped answering pings; reconnecting")
            channel.close(promise: nil)
        }
    }

    // MARK: Helpers

    func checkSubject(_ subject: String) throws {
        if let problem = ClientOp.subjectProblem(subject) { throw NATSError(.invalidSubject, problem, subject: subject) }
    }

    private static func randomToken(using generator: inout SystemRandomNumberGenerator) -> String {
        let alphabet = Array("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".utf8)
        return String(decoding: (0..<22).map { _ in alphabet[Int(generator.next() % UInt64(alphabet.count))] }, as: UTF8.self)
    }
}
