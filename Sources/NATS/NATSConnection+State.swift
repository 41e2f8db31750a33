import NIOCore

/// The state behind `NATSConnection`'s lock: subscribers, pending requests and pings, and `Core`, which
/// holds them with the connection's state machine. Touched only under the lock.
extension NATSConnection {
    struct Subscriber {
        enum Kind {
            case stream(AsyncThrowingStream<NATSMessage, any Error>.Continuation)
            /// The request inbox `_INBOX.<id>.*`.
            case inbox
            /// The inbox of one ``NATSConnection/requestMany(_:to:headers:maxAnswers:timeout:stallTimeout:classify:)``.
            case batch(token: UInt64)
        }
        var subject: String
        var queue: String?
        var kind: Kind
    }

    struct PongWaiter {
        var continuation: CheckedContinuation<Void, any Error>?
        var deadline: NIODeadline
    }

    /// The answers of a ``NATSConnection/requestMany(_:to:headers:maxAnswers:timeout:stallTimeout:classify:)``
    /// as they come. A reference, so that appending does not copy; only touched under the connection's lock.
    final class Batch: @unchecked Sendable {
        var messages: [NATSMessage]
        let maxAnswers: Int
        let classify: @Sendable (NATSMessage) -> AnswerVerdict
        let stall: TimeAmount?
        var lastActivity: NIODeadline
        let continuation: CheckedContinuation<[NATSMessage], any Error>

        init(messages: [NATSMessage], maxAnswers: Int, classify: @escaping @Sendable (NATSMessage) -> AnswerVerdict, stall: TimeAmount?,
             lastActivity: NIODeadline, continuation: CheckedContinuation<[NATSMessage], any Error>) {
            self.messages = messages
            self.maxAnswers = maxAnswers
            self.classify = classify
            self.stall = stall
            self.lastActivity = lastActivity
            self.continuation = continuation
        }
    }

    struct PendingRequest {
        enum Kind {
            case single(CheckedContinuation<NATSMessage, any Error>)
            case batch(Batch)
        }
        var subject: WireSubject
        var deadline: NIODeadline
        /// The connection attempt whose socket the request was written to; nil while it waits in the reconnect buffer.
        var attempt: UInt64?
        /// The subscription of a batch request's own inbox.
        var sid: UInt64?
        var kind: Kind

        /// Takes an answer; true while more answers are expected.
        func receive(_ message: NATSMessage) -> Bool {
            switch kind {
            case .single(let continuation):
                if message.isNoResponders {
                    continuation.resume(throwing: NATSError(.noResponders, "no responders: nobody subscribes to the subject", subject: subject.text))
                } else {
                    continuation.resume(returning: message)
                }
                return false
            case .batch(let batch):
                if message.isNoResponders {
                    batch.continuation.resume(throwing: NATSError(.noResponders, "no responders: nobody subscribes to the subject", subject: subject.text))
                    return false
                }
                batch.lastActivity = .now()
                switch batch.classify(message) {
                case .keep:
                    batch.messages.append(message)
                    if batch.messages.count >= batch.maxAnswers {
                        batch.continuation.resume(returning: batch.messages)
                        return false
                    }
                case .skip:
                    break
                case .finish:
                    batch.continuation.resume(returning: batch.messages)
                    return false
                case .fail(let error):
                    batch.continuation.resume(throwing: error)
                    return false
                }
                return true
            }
        }

        func isStalled(_ now: NIODeadline) -> Bool {
            guard case .batch(let batch) = kind, let stall = batch.stall else { return false }
            return batch.lastActivity + stall <= now
        }

        func expire(stalled: Bool) {
            switch kind {
            case .single(let continuation):
                continuation.resume(throwing: NATSError(.timeout, "no answer in time", subject: subject.text))
            case .batch(let batch):
                if stalled, batch.messages.isEmpty {
                    batch.continuation.resume(throwing: NATSError(.timeout, "no answer nor heartbeat for \(batch.stall.map { "\($0.nanoseconds / 1_000_000) ms" } ?? "")", subject: subject.text))
                } else {
                    batch.continuation.resume(returning: batch.messages)
                }
            }
        }

        func fail(_ error: NATSError) {
            switch kind {
            case .single(let continuation): continuation.resume(throwing: error)
            case .batch(let batch): batch.continuation.resume(throwing: error)
            }
        }
    }

    struct Core {
        var machine: ConnectionStateMachine
        var channel: (any Channel)?
        /// The attempt whose socket is the live connection.
        var liveAttempt: UInt64?
        /// The attempt for which CONNECT was sent.
        var connectSent: UInt64?
        var info: ServerInfo?
        /// What went wrong on the current socket (-ERR text, socket error), reported when it closes.
        var lastError: String?
        var outbound = ByteBuffer()
        var flushScheduled = false
        var reconnectBuffer = ByteBuffer()
        var pongWaiters = CircularBuffer<PongWaiter?>()
        var reconnectPongWaiters: [PongWaiter] = []
        var pingsOutstanding = 0
        var subscriptions: [UInt64: Subscriber] = [:]
        var nextSid: UInt64 = 1
        let inboxPrefix: String
        var inboxSid: UInt64?
        var requests: [UInt64: PendingRequest] = [:]
        var nextToken: UInt64 = 0
        var startWaiter: CheckedContinuation<Void, any Error>?
        var timers: [RepeatedTask] = []

        init(machine: ConnectionStateMachine, inboxPrefix: String) {
            self.machine = machine
            self.inboxPrefix = inboxPrefix
        }

        var serverName: String? {
            if case .connected(let server) = machine.state { server.description } else { nil }
        }

        /// Adds `op` to the outbound buffer when connected (true: a flush must be scheduled), or to the
        /// reconnect buffer otherwise.
        mutating func enqueue(_ op: ClientOp, bufferSize: Int) throws -> Bool {
            switch machine.state {
            case .connected:
                op.encode(into: &outbound)
                return markFlushScheduled()
            case .closed:
                throw NATSError(.connectionClosed, "the connection is closed")
            case .idle, .connecting, .waiting:
                let mark = reconnectBuffer.writerIndex
                op.encode(into: &reconnectBuffer)
                if reconnectBuffer.readableBytes > bufferSize {
                    reconnectBuffer.moveWriterIndex(to: mark)
                    throw NATSError(.reconnectBufferFull, "not connected, and the \(bufferSize) bytes of the reconnect buffer are used up")
                }
                return false
            }
        }

        /// Adds `op` when connected; a subscription change made while disconnected is sent with the handshake.
        mutating func enqueueIfConnected(_ op: ClientOp) -> Bool {
            guard machine.isConnected else { return false }
            op.encode(into: &outbound)
            return markFlushScheduled()
        }

        mutating func markFlushScheduled() -> Bool {
            if flushScheduled { return false }
            flushScheduled = true
            return true
        }

        /// Forgets a request and unsubscribes its own inbox if it has one; true when a flush must be scheduled.
        mutating func removeRequest(_ token: UInt64) -> Bool {
            guard let request = requests.removeValue(forKey: token), let sid = request.sid else { return false }
            subscriptions[sid] = nil
            return enqueueIfConnected(.unsub(sid: sid, max: nil))
        }

        /// Subscribes the request inbox if not yet done; true when a flush must be scheduled.
        mutating func ensureInbox() -> Bool {
            guard inboxSid == nil else { return false }
            let sid = nextSid
            nextSid += 1
            inboxSid = sid
            subscriptions[sid] = Subscriber(subject: inboxPrefix + "*", queue: nil, kind: .inbox)
            return enqueueIfConnected(.sub(subject: inboxPrefix + "*", queue: nil, sid: sid))
        }

        struct Taken {
            var channel: (any Channel)?
            var outbound: ByteBuffer
            var discardedBytes: Int
            var timers: [RepeatedTask]
            var startWaiter: CheckedContinuation<Void, any Error>?
            var pongWaiters: [PongWaiter]
            var requests: [PendingRequest]
            var subscribers: [Subscriber]
        }

        mutating func takeAll() -> Taken {
            let taken = Taken(
                channel: channel, outbound: outbound, discardedBytes: reconnectBuffer.readableBytes, timers: timers,
                startWaiter: startWaiter, pongWaiters: pongWaiters.compactMap { $0 } + reconnectPongWaiters,
                requests: Array(requests.values), subscribers: Array(subscriptions.values)
            )
            outbound.clear()
            reconnectBuffer.clear()
            timers = []
            startWaiter = nil
            pongWaiters.removeAll()
            reconnectPongWaiters = []
            requests = [:]
            subscriptions = [:]
            return taken
        }
    }
}
