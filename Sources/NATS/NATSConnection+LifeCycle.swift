import NIOCore
import NIOPosix

// The connection's life on its event loop: opening a socket to the next server, the INFO/CONNECT
// handshake, the state machine's actions as sockets come and go, reconnecting, and shutting down.
// `NATSConnection.swift` holds the public API (connect, publish, subscribe, flush, close).

extension NATSConnection {
    func start() async throws {
        startTimers()
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let action = core.withLock { c in
                c.startWaiter = continuation
                return c.machine.start()
            }
            perform(action)
        }
    }

    func perform(_ action: ConnectionStateMachine.Action) {
        switch action {
        case .connect(let server, let attempt):
            openChannel(to: server, attempt: attempt)
        case .wait(let delay):
            logger.debug("nats: next reconnect attempt in \(delay)")
            eventLoop.scheduleTask(in: TimeAmount(delay)) {
                self.perform(self.core.withLock { $0.machine.timerFired() })
            }
        case .failInitialConnect(let reasons):
            _ = shutdown(NATSError(.connectFailed, "could not connect to any server (\(reasons))"), graceful: false)
        case .close(let reason):
            _ = shutdown(NATSError(.connectionClosed, reason ?? "the connection was closed"), graceful: false)
        case .connected, .none:
            break
        }
    }

    func openChannel(to server: NATSServerAddress, attempt: UInt64) {
        logger.debug("nats: connecting to \(server) (attempt \(attempt))")
        let connectTimeout = TimeAmount(options.connectTimeout)
        ClientBootstrap(group: eventLoop)
            .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .channelOption(ChannelOptions.writeBufferWaterMark, value: .init(low: 1 << 20, high: 4 << 20))
            .connectTimeout(connectTimeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NATSChannelHandler(connection: self, attempt: attempt))
                }
            }
            .connect(host: server.host, port: server.port)
            .whenComplete { result in
                switch result {
                case .success(let channel):
                    // The handshake must end within the connect timeout too.
                    self.eventLoop.scheduleTask(in: connectTimeout) {
                        let stuck = self.core.withLock { c -> Bool in
                            guard c.machine.currentAttempt == attempt else { return false }
                            c.lastError = c.lastError ?? "no INFO / PONG within \(self.options.connectTimeout)"
                            return true
                        }
                        if stuck { channel.close(promise: nil) }
                    }
                case .failure(let error):
                    self.perform(self.core.withLock { $0.machine.attemptFailed(attempt: attempt, reason: "\(error)") })
                }
            }
    }

    func channelActive(_ channel: any Channel, attempt: UInt64) {
        let stale = core.withLock { c -> Bool in
            guard c.machine.currentAttempt == attempt else { return true }
            c.channel = channel
            c.lastError = nil
            return false
        }
        if stale { channel.close(promise: nil) }
    }

    func receive(_ op: ServerOp, attempt: UInt64, channel: any Channel) {
        switch op {
        case .msg(let message):
            deliver(message)
        case .ping:
            var buffer = channel.allocator.buffer(capacity: 6)
            ClientOp.pong.encode(into: &buffer)
            channel.writeAndFlush(buffer, promise: nil)
        case .pong:
            pongReceived(attempt: attempt, channel: channel)
        case .info(let info):
            infoReceived(info, attempt: attempt, channel: channel)
        case .ok:
            break
        case .err(let text):
            let server = core.withLock { c -> String? in
                c.lastError = text
                return c.serverName
            }
            logger.warning("nats: -ERR '\(text)' from \(server ?? "the server")")
        }
    }

    func infoReceived(_ info: ServerInfo, attempt: UInt64, channel: any Channel) {
        let connect = core.withLock { c -> ConnectInfo? in
            c.info = info
            if let urls = info.connectURLs { c.machine.learn(connectURLs: urls) }
            guard case .connecting(let server, let current) = c.machine.state, current == attempt, c.connectSent != attempt else { return nil }
            c.connectSent = attempt
            var connect = ConnectInfo()
            connect.name = options.name
            connect.echo = options.echo
            if let user = server.user ?? options.user {
                connect.user = user
                connect.password = server.password ?? options.password
            } else if let token = server.token ?? options.token {
                connect.authToken = token
            }
            return connect
        }
        guard let connect else { return }
        var buffer = channel.allocator.buffer(capacity: 512)
        ClientOp.connect(connect).encode(into: &buffer)
        ClientOp.ping.encode(into: &buffer)
        channel.writeAndFlush(buffer, promise: nil)
    }

    func pongReceived(attempt: UInt64, channel: any Channel) {
        enum Outcome { case handshake(NATSServerAddress, Bool, CheckedContinuation<Void, any Error>?), pong(PongWaiter?) }
        let outcome = core.withLock { c -> Outcome in
            guard c.machine.currentAttempt == attempt else {
                c.pingsOutstanding = 0
                return .pong(c.pongWaiters.popFirst() ?? nil)
            }
            guard case .connected(let server, let isReconnect) = c.machine.handshakeCompleted(attempt: attempt) else { return .pong(nil) }
            c.channel = channel
            c.liveAttempt = attempt
            c.pingsOutstanding = 0
            // Subscriptions first, then what was published while disconnected, in order.
            for sid in c.subscriptions.keys.sorted() {
                if let subscriber = c.subscriptions[sid] {
                    ClientOp.sub(subject: subscriber.subject, queue: subscriber.queue, sid: sid).encode(into: &c.outbound)
                }
            }
            c.outbound.writeBuffer(&c.reconnectBuffer)
            c.reconnectBuffer.clear()
            c.pongWaiters = CircularBuffer(c.reconnectPongWaiters)
            c.reconnectPongWaiters = []
            for (token, request) in c.requests where request.attempt == nil {
                c.requests[token]?.attempt = attempt
            }
            let waiter = c.startWaiter
            c.startWaiter = nil
            return .handshake(server, isReconnect, waiter)
        }
        switch outcome {
        case .handshake(let server, let isReconnect, let waiter):
            logger.info("nats: \(isReconnect ? "reconnected" : "connected") to \(server)")
            flushOutbound()
            waiter?.resume()
        case .pong(let waiter):
            waiter?.continuation?.resume()
        }
    }

    func recordFailure(_ reason: String, attempt: UInt64) {
        core.withLock { c in
            if c.machine.currentAttempt == attempt || c.liveAttempt == attempt { c.lastError = c.lastError ?? reason }
        }
    }

    func channelClosed(attempt: UInt64) {
        let (action, lost) = core.withLock { c -> (ConnectionStateMachine.Action, [PendingRequest]) in
            let reason = c.lastError ?? "the server closed the connection"
            if c.machine.currentAttempt == attempt {
                c.channel = nil
                c.lastError = nil
                return (c.machine.attemptFailed(attempt: attempt, reason: reason), [])
            }
            guard c.liveAttempt == attempt, case .connected(let server) = c.machine.state else { return (.none, []) }
            logger.warning("nats: lost the connection to \(server): \(reason)")
            c.channel = nil
            c.liveAttempt = nil
            c.lastError = nil
            // Bytes not yet written go out again after the reconnect, ahead of anything published later.
            c.reconnectBuffer.writeBuffer(&c.outbound)
            c.outbound.clear()
            c.flushScheduled = false
            let error = NATSError(.connectionLost, "lost the connection (\(reason))", server: server.description)
            while let waiter = c.pongWaiters.popFirst() { waiter?.continuation?.resume(throwing: error) }
            var lost: [PendingRequest] = []
            for (token, request) in c.requests where request.attempt == attempt {
                c.requests[token] = nil
                if let sid = request.sid { c.subscriptions[sid] = nil }  // nothing to UNSUB on a dead socket
                lost.append(request)
            }
            return (c.machine.connectionLost(), lost)
        }
        for request in lost {
            request.fail(NATSError(.connectionLost, "lost the connection before an answer came", subject: request.subject.text))
        }
        perform(action)
    }

    /// Closes the socket and fails every waiter with `error`; returns when the socket is closed.
    func shutdown(_ error: NATSError, graceful: Bool) -> EventLoopFuture<Void> {
        let taken = core.withLock { c in
            let taken = c.takeAll()
            c.channel = nil
            c.liveAttempt = nil
            return taken
        }
        taken.timers.forEach { $0.cancel() }
        taken.startWaiter?.resume(throwing: error)
        for waiter in taken.pongWaiters { waiter.continuation?.resume(throwing: error) }
        for request in taken.requests { request.fail(error) }
        for subscriber in taken.subscribers {
            if case .stream(let continuation) = subscriber.kind {
                if graceful { continuation.finish() } else { continuation.finish(throwing: error) }
            }
        }
        if taken.discardedBytes > 0 {
            logger.error("nats: \(taken.discardedBytes) bytes published while disconnected were never sent: \(error)")
        }
        guard let channel = taken.channel else { return eventLoop.makeSucceededVoidFuture() }
        if graceful, taken.outbound.readableBytes > 0 {
            return channel.writeAndFlush(taken.outbound).flatMap { channel.close() }.recover { _ in }
        }
        return channel.close().recover { _ in }
    }
}
