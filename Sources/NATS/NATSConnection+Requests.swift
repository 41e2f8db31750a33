import NIOCore

/// Request / reply on one wildcard inbox per connection (`_INBOX.<id>.*`): each request is a token under
/// it, answered once (`request`) or many times (`requestMany`, as a JetStream pull is).
extension NATSConnection {

    /// Publishes `payload` to `subject` and waits for the first answer.
    ///
    /// Answers come to one wildcard subscription, `_INBOX.<random>.*`, made on the first request; each
    /// request takes the next number as the last token of its reply subject.
    /// - Throws: `.noResponders` when nobody subscribes to `subject` (the server says so at once),
    ///   `.timeout` when no answer comes within `timeout`, `.connectionLost` when the request was written
    ///   to a server that went away before answering.
    public func request(_ payload: ByteBuffer, to subject: String, headers: NATSHeaders? = nil, timeout: Duration = .seconds(5)) async throws -> NATSMessage {
        try checkSubject(subject)
        return try await request(payload, to: .string(subject), headers: headers, timeout: timeout)
    }

    func request(_ payload: ByteBuffer, to subject: WireSubject, headers: NATSHeaders?, timeout: Duration) async throws -> NATSMessage {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<NATSMessage, any Error>) in
            register(.single(continuation), payload: payload, subject: subject, headers: headers, timeout: timeout) { error in
                continuation.resume(throwing: error)
            }
        }
    }

    /// What to do with one answer of ``requestMany(_:to:headers:maxAnswers:timeout:stallTimeout:classify:)``.
    public enum AnswerVerdict: Sendable {
        /// Keep it, and go on unless `maxAnswers` are kept.
        case keep
        /// Ignore it (a heartbeat) but count it as a sign of life.
        case skip
        /// Stop, returning what was kept.
        case finish
        /// Stop with this error.
        case fail(NATSError)
    }

    /// Publishes `payload` to `subject` and collects the answers until `maxAnswers` are kept, `classify`
    /// says to stop, or `timeout` passes (then what was kept is returned). With `stallTimeout`, a gap of that
    /// long without any answer ends the wait with `.timeout` when nothing was kept yet.
    ///
    /// `classify` runs on the connection's event loop for every answer; keep it short. This is what a
    /// JetStream pull (`$JS.API.CONSUMER.MSG.NEXT`) is made of.
    public func requestMany(
        _ payload: ByteBuffer, to subject: String, headers: NATSHeaders? = nil, maxAnswers: Int, timeout: Duration,
        stallTimeout: Duration? = nil, classify: @escaping @Sendable (NATSMessage) -> AnswerVerdict
    ) async throws -> [NATSMessage] {
        try checkSubject(subject)
        return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<[NATSMessage], any Error>) in
            var messages: [NATSMessage] = []
            messages.reserveCapacity(min(maxAnswers, 4096))
            let batch = Batch(messages: messages, maxAnswers: maxAnswers, classify: classify,
                              stall: stallTimeout.map(TimeAmount.init), lastActivity: .now(), continuation: continuation)
            register(.batch(batch), payload: payload, subject: .string(subject), headers: headers, timeout: timeout) { error in
                continuation.resume(throwing: error)
            }
        }
    }

    private func register(_ kind: PendingRequest.Kind, payload: ByteBuffer, subject: WireSubject, headers: NATSHeaders?, timeout: Duration,
                          onError: (any Error) -> Void) {
        do {
            let scheduleFlush = try core.withLock { c -> Bool in
                guard !c.machine.isClosed else { throw NATSError(.connectionClosed, "the connection is closed", subject: subject.text) }
                c.nextToken += 1
                let token = c.nextToken
                var schedule: Bool
                let reply: WireSubject
                var sid: UInt64?
                switch kind {
                case .single:
                    // One answer: it comes to the inbox wildcard, addressed by the last token.
                    schedule = c.ensureInbox()
                    reply = .inbox(prefix: c.inboxPrefix, token: token)
                case .batch:
                    // Many answers: JetStream delivers them with their own subjects, so they are told apart by a
                    // subscription of their own (two tokens after the prefix, out of the wildcard's reach).
                    let batchSid = c.nextSid
                    c.nextSid += 1
                    let inbox = c.inboxPrefix + "b." + String(token)
                    c.subscriptions[batchSid] = Subscriber(subject: inbox, queue: nil, kind: .batch(token: token))
                    schedule = c.enqueueIfConnected(.sub(subject: inbox, queue: nil, sid: batchSid))
                    reply = .string(inbox)
                    sid = batchSid
                }
                let op: ClientOp = headers.map { .hpub(subject: subject, reply: reply, headers: $0, payload: payload) }
                    ?? .pub(subject: subject, reply: reply, payload: payload)
                do {
                    if try c.enqueue(op, bufferSize: options.reconnectBufferSize) { schedule = true }
                } catch {
                    if let sid { c.subscriptions[sid] = nil }
                    throw error
                }
                c.requests[token] = PendingRequest(subject: subject, deadline: .now() + TimeAmount(timeout),
                                                   attempt: c.liveAttempt, sid: sid, kind: kind)
                return schedule
            }
            if scheduleFlush { eventLoop.execute { self.flushOutbound() } }
        } catch {
            onError(error)
        }
    }
}
