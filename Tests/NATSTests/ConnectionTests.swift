import Foundation
import NATS
import NATSServerHarness
import NIOCore
import Testing

/// The core protocol against a real nats-server on a loopback port.
@Suite(.enabled(if: natsServerAvailable, "nats-server not found: run scripts/setup.sh"), .serialized, .timeLimit(.minutes(3)))
struct ConnectionTests {
    @Test func publishedMessagesReachASubscriberInOrderWithTheirReplySubject() async throws {
        try await withServer { server in
            let nats = try await NATSConnection.connect(testOptions([server.url]))
            let subscription = try nats.subscribe(to: "greet.*")
            try await nats.flush()
            for index in 0..<3 {
                try nats.publish(ByteBuffer(string: "hello \(index)"), to: "greet.joe", replyTo: index == 1 ? "answers.1" : nil)
            }
            let messages = try await collect(subscription, count: 3)
            #expect(messages.map { String(buffer: $0.payload) } == ["hello 0", "hello 1", "hello 2"])
            #expect(messages.map(\.subject) == ["greet.joe", "greet.joe", "greet.joe"])
            #expect(messages.map(\.replyTo) == [nil, "answers.1", nil])
            #expect(nats.serverInfo?.version.hasPrefix("2.") == true)
            await nats.close()
        }
    }

    @Test func tenThousandPublishesInARowAllArriveAndFlushWaitsForThem() async throws {
        try await withServer { server in
            let nats = try await NATSConnection.connect(testOptions([server.url]))
            let subscription = try nats.subscribe(to: "bulk")
            try await nats.flush()
            for index in 0..<10_000 { try nats.publish(ByteBuffer(integer: UInt32(index)), to: "bulk") }
            try await nats.flush()
            let messages = try await collect(subscription, count: 10_000)
            #expect(messages.enumerated().allSatisfy { $0.element.payload.getInteger(at: $0.element.payload.readerIndex, as: UInt32.self) == UInt32($0.offset) })
            await nats.close()
        }
    }

    @Test func headersTravelWithTheMessage() async throws {
        try await withServer { server in
            let nats = try await NATSConnection.connect(testOptions([server.url]))
            let subscription = try nats.subscribe(to: "with.headers")
            try await nats.flush()
            var headers = NATSHeaders()
            headers.append("Trace-Id", "t-1")
            headers.append("Tag", "a")
            headers.append("Tag", "b")
            try nats.publish(ByteBuffer(string: "body"), to: "with.headers", headers: headers)
            let message = try await next(subscription)
            #expect(String(buffer: message.payload) == "body")
            #expect(message.headers?["trace-id"] == "t-1")
            #expect(message.headers?.values(for: "Tag") == ["a", "b"])
            #expect(message.status == nil)
            await nats.close()
        }
    }

    @Test func requestsGetTheirOwnAnswersThroughOneInbox() async throws {
        try await withServer { server in
            let nats = try await NATSConnection.connect(testOptions([server.url]))
            let service = try nats.subscribe(to: "svc.upper")
            try await nats.flush()
            let responder = Task {
                for try await request in service {
                    guard let reply = request.replyBytes else { continue }
                    try nats.publish(ByteBuffer(string: String(buffer: request.payload).uppercased()), toSubjectBytes: reply)
                }
            }
            let answers = try await withThrowingTaskGroup(of: (Int, String).self) { group in
                for index in 0..<200 {
                    group.addTask {
                        let answer = try await nats.request(ByteBuffer(string: "word \(index)"), to: "svc.upper", timeout: .seconds(5))
                        return (index, String(buffer: answer.payload))
                    }
                }
                return try await group.reduce(into: [Int: String]()) { $0[$1.0] = $1.1 }
            }
            #expect(answers.count == 200)
            #expect(answers.allSatisfy { $0.value == "WORD \($0.key)" })
            responder.cancel()
            await nats.close()
        }
    }

    @Test func aRequestNobodyListensToFailsAtOnceWithNoResponders() async throws {
        try await withServer { server in
            let nats = try await NATSConnection.connect(testOptions([server.url]))
            let started = ContinuousClock.now
            let error = await natsError { _ = try await nats.request(ByteBuffer(string: "?"), to: "nobody.home", timeout: .seconds(5)) }
            #expect(error?.code == .noResponders)
            #expect(error?.subject == "nobody.home")
            #expect(ContinuousClock.now - started < .seconds(2))
            await nats.close()
        }
    }

    @Test func aRequestNobodyAnswersTimesOut() async throws {
        try await withServer { server in
            let nats = try await NATSConnection.connect(testOptions([server.url]))
            let silent = try nats.subscribe(to: "svc.silent")
            try await nats.flush()
            let started = ContinuousClock.now
            let error = await natsError { _ = try await nats.request(ByteBuffer(), to: "svc.silent", timeout: .milliseconds(300)) }
            #expect(error?.code == .timeout)
            #expect(ContinuousClock.now - started >= .milliseconds(300))
            silent.unsubscribe()
            await nats.close()
        }
    }

    @Test func userAndPasswordAreSentAndAWrongOneFailsWithTheServersWords() async throws {
        try await withServer(extraConfig: "authorization { user: joe, password: s3cret }") { server in
            let good = try await NATSConnection.connect(testOptions(["nats://joe:s3cret@127.0.0.1:\(server.port)"]))
            try await good.flush()
            await good.close()
            var options = try testOptions([server.url])
            options.user = "joe"
            options.password = "wrong"
            let error = await natsError { _ = try await NATSConnection.connect(options) }
            #expect(error?.code == .connectFailed)
            #expect(error?.message.contains("Authorization Violation") == true, "\(String(describing: error))")
        }
    }

    @Test func aTokenIsSentAsAuthToken() async throws {
        try await withServer(extraConfig: "authorization { token: t0ken }") { server in
            var options = try testOptions([server.url])
            options.token = "t0ken"
            let nats = try await NATSConnection.connect(options)
            try await nats.flush()
            await nats.close()
        }
    }

    @Test func aClosedConnectionRefusesPublishesAndEndsSubscriptions() async throws {
        try await withServer { server in
            let nats = try await NATSConnection.connect(testOptions([server.url]))
            let subscription = try nats.subscribe(to: "x")
            await nats.close()
            #expect(nats.status == .closed)
            #expect(throws: NATSError.self) { try nats.publish(ByteBuffer(), to: "x") }
            var iterator = subscription.makeAsyncIterator()
            #expect(try await iterator.next() == nil)
        }
    }

    @Test func connectingToNothingFailsNamingEachServer() async throws {
        let ports = try [NATSServerProcess.freePort(), NATSServerProcess.freePort()]
        let error = await natsError { _ = try await NATSConnection.connect(testOptions(ports.map { "nats://127.0.0.1:\($0)" })) }
        #expect(error?.code == .connectFailed)
        #expect(error?.message.contains("127.0.0.1:\(ports[0])") == true)
        #expect(error?.message.contains("127.0.0.1:\(ports[1])") == true)
    }

    @Test func aKilledServerRestartedOnItsPortGetsTheSubscriptionsAndTheBufferedPublishesAgain() async throws {
        try await withServer { server in
            let nats = try await NATSConnection.connect(testOptions([server.url]))
            let subscription = try nats.subscribe(to: "survive.>")
            try await nats.flush()
            try nats.publish(ByteBuffer(string: "before"), to: "survive.a")
            #expect(String(buffer: try await next(subscription).payload) == "before")

            server.kill()
            try await eventually("the connection sees the server gone") { nats.status == .reconnecting }
            // Made while disconnected: kept in the reconnect buffer, written after the subscriptions.
            try nats.publish(ByteBuffer(string: "during"), to: "survive.b")
            try server.start()
            try await eventually("reconnected") { nats.status == .connected }
            try nats.publish(ByteBuffer(string: "after"), to: "survive.c")
            let messages = try await collect(subscription, count: 2)
            #expect(messages.map { String(buffer: $0.payload) } == ["during", "after"])
            #expect(nats.reconnectCount == 1)
            try await nats.flush()
            await nats.close()
        }
    }

    @Test func withoutAReconnectBufferAPublishWhileDisconnectedFailsToItsCaller() async throws {
        try await withServer { server in
            var options = try testOptions([server.url])
            options.reconnectBufferSize = 0
            let nats = try await NATSConnection.connect(options)
            server.kill()
            try await eventually("disconnected") { nats.status == .reconnecting }
            let error = await natsError { try nats.publish(ByteBuffer(string: "lost?"), to: "x") }
            #expect(error?.code == .reconnectBufferFull)
            await nats.close()
        }
    }

    @Test func aRequestWrittenToAServerThatDiesFailsAtOnceWithConnectionLost() async throws {
        try await withServer { server in
            let nats = try await NATSConnection.connect(testOptions([server.url]))
            let silent = try nats.subscribe(to: "svc.silent")
            try await nats.flush()
            let request = Task { await natsError { _ = try await nats.request(ByteBuffer(), to: "svc.silent", timeout: .seconds(30)) } }
            try await Task.sleep(for: .milliseconds(200))
            let killed = ContinuousClock.now
            server.kill()
            let error = await request.value
            #expect(error?.code == .connectionLost)
            #expect(ContinuousClock.now - killed < .seconds(10))  // far from the 30 s timeout
            silent.unsubscribe()
            await nats.close()
        }
    }

    @Test func aServerThatStopsAnsweringPingsIsLeftForTheNextOne() async throws {
        let directory = temporaryDirectory("stale")
        let frozen = try NATSServerProcess(name: "frozen", directory: directory.appendingPathComponent("a"))
        let spare = try NATSServerProcess(name: "spare", directory: directory.appendingPathComponent("b"))
        defer {
            frozen.kill()
            spare.kill()
            try? FileManager.default.removeItem(at: directory)
        }
        try frozen.start()
        try spare.start()
        var options = try testOptions([frozen.url, spare.url])
        options.pingInterval = .milliseconds(200)
        options.maxPingsOutstanding = 2
        let nats = try await NATSConnection.connect(options)
        #expect(nats.connectedServer?.port == frozen.port)
        frozen.pause()
        try await eventually("moved to the spare server", timeout: .seconds(5)) { nats.connectedServer?.port == spare.port }
        try await nats.flush()
        frozen.resume()
        await nats.close()
    }
}
