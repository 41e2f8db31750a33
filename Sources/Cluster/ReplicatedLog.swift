import Foundation
import JetStream
import Logging
import NATS
import NIOCore
import SegmentLog
import Synchronization

/// A log replicated through a JetStream stream: every node publishes its requests to one stream
/// (replicated with Raft, each publish acknowledged by a quorum) and materializes the whole stream, in
/// stream order, into its own local log. So the stream gives the one total order and the durability;
/// the nodes are deterministic replicas of it, and the same record gets the same local offset on every
/// node. Knows nothing of presence: the node says what materializing a message means.
///
/// A request is one message (`RecordBufferCodec`), published with a `Nats-Msg-Id` unique to the request
/// and retried with it until acknowledged (`JetStream.publish(retryUntil:)`: never written twice,
/// never reported written without an acknowledgement). The caller is answered once its own node has
/// materialized the message, with what materializing gave: acknowledged means applied, here too.
public final class ReplicatedLog<Outcome: Sendable>: @unchecked Sendable {
    // @unchecked: `waiters`, `caughtUpWaiters` and `caughtUp` are touched only under `lock`; `connection`
    // and `jetStream` are set once in `connect`, before anything else runs.

    public struct Configuration: Sendable {
        /// NATS servers, `nats://host:port` (with credentials if the server wants them).
        public var servers: [String]
        public var stream: String
        public var subject: String
        /// Copies of the stream (3 for a cluster of three servers: a majority acknowledges each write).
        public var replicas: Int
        /// This node's name: its consumer's and its message ids' prefix.
        public var node: String
        /// How long JetStream drops a repeated `Nats-Msg-Id`: longer than `publishDeadline`.
        public var duplicateWindow: Duration = .seconds(120)
        /// How long a publish is retried (a leader election takes seconds) before the caller is told it
        /// was not written.
        public var publishDeadline: Duration = .seconds(30)
        /// Messages pulled at a time while materializing.
        public var fetchBatch = 256
        /// How a request's records are cut into batches and compressed (the message carries them so).
        public var batching = LogConfiguration()

        public init(servers: [String], stream: String, subject: String, replicas: Int, node: String) {
            self.servers = servers
            self.stream = stream
            self.subject = subject
            self.replicas = replicas
            self.node = node
        }
    }

    /// A message of the stream, decoded: its records, their batches as the stream carried them (nil from a
    /// version-1 message), its stream sequence and its id.
    public struct Delivery: Sendable {
        public let records: RecordBuffer
        public let batches: EncodedBatches?
        public let sequence: UInt64
        public let messageID: String?
        /// The stream's message, to acknowledge.
        let message: JetStreamMessage
    }

    /// What the node does with messages, on the materializer's task, in stream order: called with one or
    /// more consecutive messages (several while the node catches up, so that it may commit them
    /// together), it applies them in order and returns the outcome of each one it applied, which answers
    /// the request when this node published it. Fewer outcomes than messages: the node could not apply
    /// the rest here (its disk is full, its log failed), so they are not passed over: they come again, a
    /// second later, until applied.
    public typealias Materialize = @Sendable (_ deliveries: [Delivery]) async -> [Outcome]

    public let configuration: Configuration
    private let logger: Logger
    private var connection: NATSConnection?
    private var jetStream: JetStream?
    private let lock = NSLock()
    private var waiters: [String: CheckedContinuation<Outcome, any Error>] = [:]
    private var caughtUp = false
    private var caughtUpWaiters: [CheckedContinuation<Void, Never>] = []
    private var materializer: Task<Void, Never>?
    private let appliedSequence = Atomic<UInt64>(0)
    private let published = Atomic<UInt64>(0)
    /// Differs for every start of the node, so that message ids never repeat across restarts.
    private let boot = String(UInt64.random(in: 0...UInt64.max), radix: 36)

    public init(configuration: Configuration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    /// The stream sequence of the last message materialized here.
    public var sequence: UInt64 { appliedSequence.load(ordering: .acquiring) }

    /// Whether this node has materialized everything the stream held when it last looked.
    public var isCaughtUp: Bool { lock.withLock { caughtUp } }

    /// The consumer's name for this node (NATS names hold no dots, stars, `>` or spaces).
    var consumerName: String {
        "node-" + String(configuration.node.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" ? $0 : "_" })
    }

    /// Connects to the servers and makes sure the stream exists (created with the configured replicas and
    /// file storage if it does not).
    public func connect() async throws {
        var options = try NATSOptions(servers: configuration.servers)
        options.name = "presence-\(configuration.node)"
        options.reconnect.maxAttempts = nil
        let connection = try await NATSConnection.connect(options)
        let jetStream = JetStream(connection)
        self.connection = connection
        self.jetStream = jetStream
        // A cluster that has just started elects its JetStream leader first (seconds): until then the API
        // answers nothing or "temporarily unavailable". Ask again until it answers, for a while.
        let deadline = ContinuousClock.now + .seconds(60)
        var attempts = 0
        while true {
            attempts += 1
            do {
                try await ensureStream(jetStream)
                return
            } catch {
                guard ContinuousClock.now < deadline else {
                    throw LogError(.io, "the cluster's JetStream did not answer for stream \(configuration.stream) within 60 s: \(error)")
                }
                if attempts % 10 == 1 { logger.notice("cluster: waiting for JetStream (\(error))") }
                try await Task.sleep(for: .milliseconds(500))
            }
        }
    }

    /// Makes sure the stream exists: created with the configured replicas and file storage if not.
    private func ensureStream(_ jetStream: JetStream) async throws {
        do {
            _ = try await jetStream.streamInfo(configuration.stream)
        } catch let error as JetStreamError where error.errorCode == JetStreamError.ErrorCode.streamNotFound {
            var stream = StreamConfig(name: configuration.stream, subjects: [configuration.subject], storage: .file,
                                      replicas: configuration.replicas, duplicateWindow: configuration.duplicateWindow)
            stream.discard = .new
            do {
                _ = try await jetStream.createStream(stream)
                logger.notice("created stream \(configuration.stream) (\(configuration.replicas) replicas, file storage)")
            } catch let error as JetStreamError where error.errorCode == JetStreamError.ErrorCode.streamNameInUse {
                // Another node created it first.
            }
        }
    }

    /// Starts materializing the stream from `sequence` (the first not yet in the local log) on a task of
    /// its own, calling `materialize` for each message in order.
    public func start(from sequence: UInt64, materialize: @escaping Materialize) {
        appliedSequence.store(sequence - 1, ordering: .releasing)
        materializer = Task { await self.materializeLoop(from: sequence, materialize) }
    }

    /// Waits until this node has materialized what the stream held (a new node catching up serves only then).
    public func waitUntilCaughtUp() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = lock.withLock { () -> Bool in
                if caughtUp { return true }
                caughtUpWaiters.append(continuation)
                return false
            }
            if done { continuation.resume() }
        }
    }

    /// Publishes `records` as one message and returns what this node's materializer made of it. Throws
    /// when the stream did not acknowledge it within `publishDeadline` (it may then be in the stream, once:
    /// the caller must not report it written).
    public func append(_ records: RecordBuffer) async throws -> Outcome {
        guard let jetStream else { throw LogError(.closed, "the replicated log is not connected") }
        let id = "\(configuration.node)-\(boot)-\(published.add(1, ordering: .relaxed).newValue)"
        let payload = RecordBufferCodec.encode(records, configuration: configuration.batching)
        return try await withCheckedThrowingContinuation { continuation in
            lock.withLock { waiters[id] = continuation }
            Task {
                let started = ContinuousClock.now
                var retried: [String] = []
                do {
                    _ = try await jetStream.publish(payload, to: configuration.subject, messageID: id,
                                                    retryUntil: started + configuration.publishDeadline) { _, error in
                        retried.append("\(error)")
                    }
                    if !retried.isEmpty, ContinuousClock.now - started > .seconds(1) {
                        logger.notice("cluster: write \(id) acknowledged after \(retried.count + 1) attempts in \(ContinuousClock.now - started): \(Self.summary(of: retried))")
                    }
                } catch {
                    // Not acknowledged: the caller is told so (unless the materializer got there first).
                    if let waiter = lock.withLock({ waiters.removeValue(forKey: id) }) {
                        waiter.resume(throwing: LogError(.io, "the cluster did not acknowledge the write: \(error)"))
                    }
                }
            }
        }
    }

    /// The errors of a write's failed attempts, each with how often it came: "no responders ×12, ...".
    static func summary(of errors: [String]) -> String {
        var counts: [(error: String, count: Int)] = []
        for error in errors {
            if let index = counts.firstIndex(where: { $0.error == error }) { counts[index].count += 1 } else { counts.append((error, 1)) }
        }
        return counts.map { $0.count == 1 ? $0.error : "\($0.error) ×\($0.count)" }.joined(separator: ", ")
    }

    /// Stops materializing and closes the connection; requests still waiting fail.
    public func close() async {
        materializer?.cancel()
        await materializer?.value
        let left = lock.withLock { () -> [CheckedContinuation<Outcome, any Error>] in
            defer { waiters.removeAll() }
            return Array(waiters.values)
        }
        for waiter in left { waiter.resume(throwing: LogError(.closed, "the node is shutting down")) }
        await connection?.close()
    }

    // MARK: Materializing

    /// Messages decoded ahead, on other threads, while the ones before them are applied: decoding (LZ4
    /// and the records' framing) then overlaps the commit.
    static var decodeAhead: Int { 8 }
    /// Messages handed to the node at once while it catches up (it may commit them together).
    static var deliveredTogether: Int { 4 }

    private func materializeLoop(from start: UInt64, _ materialize: Materialize) async {
        guard let jetStream else { return }
        var next = start
        // The sequence a gap was last seen at: the consumer is made afresh once for it before the gap is
        // believed (a message lost on its way, in a reconnect or a server's death, is then read again).
        var gapRetriedAt: UInt64?
        while !Task.isCancelled {
            // In stream order: each message with its decoding, done or under way.
            var ahead: [(message: JetStreamMessage, decoded: Task<Decoding, Never>)] = []
            do {
                let (pull, pending) = try await makeConsumer(jetStream, from: next)
                if pending == 0 { markCaughtUp() }
                // Messages stream in as they come (`consume`), a pull of `fetchBatch` kept open; three
                // seconds without a heartbeat (its server gone) make the consumer again. Acknowledged
                // every half batch and at the end of what the stream holds (ack-all: one acknowledges
                // every one before it).
                var unacknowledged = 0
                consuming: for try await message in try pull.consume(batch: configuration.fetchBatch, expires: .seconds(5), heartbeat: .seconds(1)) {
                    let atEnd = message.metadata?.pending == 0
                    if atEnd && ahead.isEmpty {
                        // The live case: nothing queued, so nothing to overlap; decoded here, at once.
                        if await apply([(message, Self.decode(message.payload))], next: &next, gapRetriedAt: &gapRetriedAt, unacknowledged: &unacknowledged, materialize) == .restart {
                            break consuming
                        }
                        continue
                    }
                    let payload = message.payload
                    ahead.append((message, Task { Self.decode(payload) }))
                    while ahead.count > (atEnd ? 0 : Self.decodeAhead) {
                        var group: [(JetStreamMessage, Decoding)] = []
                        while group.count < Self.deliveredTogether, !ahead.isEmpty {
                            let (first, decoding) = ahead.removeFirst()
                            group.append((first, await decoding.value))
                        }
                        if await apply(group, next: &next, gapRetriedAt: &gapRetriedAt, unacknowledged: &unacknowledged, materialize) == .restart {
                            break consuming
                        }
                    }
                }
            } catch is CancellationError {
                return
            } catch {
                // A server or the stream's leader going away (an election): look again shortly, through a
                // consumer made afresh.
                logger.debug("materializing \(configuration.stream) from \(next): \(error)")
                try? await Task.sleep(for: .milliseconds(200))
            }
            // What was decoded ahead comes again through the new consumer.
            for item in ahead { item.decoded.cancel() }
        }
    }

    /// A message's records, or why it is not a record message.
    typealias Decoding = Result<RecordBufferCodec.Decoded, RecordBufferCodec.DecodeError>

    static func decode(_ payload: ByteBuffer) -> Decoding {
        Result { () throws(RecordBufferCodec.DecodeError) in try RecordBufferCodec.decodeMessage(payload) }
    }

    private enum Applied { case next, restart }

    /// Materializes consecutive messages, in stream order: `.restart` when the consumer must be made
    /// afresh from `next` (a gap to read again, or a message this node could not apply yet).
    private func apply(_ messages: [(message: JetStreamMessage, decoding: Decoding)], next: inout UInt64, gapRetriedAt: inout UInt64?,
                       unacknowledged: inout Int, _ materialize: Materialize) async -> Applied {
        var deliveries: [Delivery] = []
        var reachedEnd = false
        // The last message passed (applied or passed over), to acknowledge.
        var last: JetStreamMessage?
        // Hands `deliveries` to the node; false when it could not apply them all.
        func flush() async -> Bool {
            guard !deliveries.isEmpty else { return true }
            let outcomes = await materialize(deliveries)
            for (delivery, outcome) in zip(deliveries, outcomes) {
                if let id = delivery.messageID, let waiter = lock.withLock({ waiters.removeValue(forKey: id) }) { waiter.resume(returning: outcome) }
                appliedSequence.store(delivery.sequence, ordering: .releasing)
                next = delivery.sequence + 1
                last = delivery.message
                unacknowledged += 1
            }
            let all = outcomes.count == deliveries.count
            deliveries.removeAll()
            return all
        }
        for (message, decoding) in messages {
            guard let metadata = message.metadata else { continue }
            let sequence = metadata.streamSequence
            let expected = deliveries.last.map { $0.sequence + 1 } ?? next
            if sequence < expected { continue }  // delivered again after a reconnect
            if sequence > expected {
                guard await flush() else { return await notApplied() }
                if gapRetriedAt != next {
                    // Never skip: read again from `next` through a consumer made afresh.
                    logger.notice("stream \(configuration.stream): sequence \(sequence) came after \(next - 1); reading again from \(next)")
                    gapRetriedAt = next
                    return .restart
                }
                logger.warning("stream \(configuration.stream): sequence \(sequence) follows \(next - 1); messages \(next)-\(sequence - 1) are not in the stream")
            }
            switch decoding {
            case .success(let decoded) where !decoded.records.isEmpty:
                deliveries.append(Delivery(records: decoded.records, batches: decoded.batches, sequence: sequence,
                                           messageID: message.headers?["Nats-Msg-Id"], message: message))
            case .success, .failure:
                // Nothing to apply: passed over in its place.
                if case .failure(let error) = decoding {
                    logger.error("stream \(configuration.stream): message \(sequence) is not a record message (\(error)); skipped")
                }
                guard await flush() else { return await notApplied() }
                appliedSequence.store(sequence, ordering: .releasing)
                next = sequence + 1
                last = message
                unacknowledged += 1
            }
            if metadata.pending == 0 { reachedEnd = true }
        }
        let applied = await flush()
        if let last, unacknowledged >= configuration.fetchBatch / 2 || reachedEnd || !applied {
            try? last.ack()
            unacknowledged = 0
        }
        guard applied else { return await notApplied() }
        if reachedEnd { markCaughtUp() }
        return .next
    }

    /// A message not applied here: read again from `next`, after a pause, through a consumer made afresh.
    private func notApplied() async -> Applied {
        try? await Task.sleep(for: .seconds(1))
        return .restart
    }

    /// This node's pull consumer, made afresh to start at `sequence`; and how many messages it has to
    /// deliver. Its state is worth nothing kept: the node notes its own position (`StreamPositions`)
    /// and makes the consumer again from there at every start and after every error. So its state is
    /// one copy in memory: replicated and fsynced by three servers for each of three nodes, the
    /// consumers' acknowledgements cost JetStream more than the stream did. The acknowledgements stay
    /// (ack-all, every half batch): `maxAckPending` is what keeps a node that catches up from being
    /// sent the whole stream faster than it applies it.
    private func makeConsumer(_ jetStream: JetStream, from sequence: UInt64) async throws -> (PullConsumer, pending: UInt64) {
        try? await jetStream.deleteConsumer(stream: configuration.stream, consumer: consumerName)
        var config = ConsumerConfig(durableName: consumerName, ackPolicy: .all, deliverPolicy: sequence <= 1 ? .all : .byStartSequence)
        if sequence > 1 { config.optStartSequence = sequence }
        config.maxAckPending = configuration.fetchBatch * 4
        config.replicas = 1
        config.memoryStorage = true
        let info = try await jetStream.createConsumer(stream: configuration.stream, config)
        return (jetStream.pullConsumer(stream: configuration.stream, consumer: consumerName), info.numPending)
    }

    private func markCaughtUp() {
        let woken = lock.withLock { () -> [CheckedContinuation<Void, Never>] in
            guard !caughtUp else { return [] }
            caughtUp = true
            defer { caughtUpWaiters.removeAll() }
            return caughtUpWaiters
        }
        for waiter in woken { waiter.resume() }
    }
}
