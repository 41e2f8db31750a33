import Foundation
import NATS
import NATSServerHarness
import NIOCore
import Testing

@testable import JetStream

/// JetStream on one real nats-server (file storage in a temporary folder).
@Suite(.enabled(if: natsServerAvailable, "nats-server not found: run scripts/setup.sh"), .serialized, .timeLimit(.minutes(3)))
struct JetStreamTests {
    /// Runs `body` with a connection to a fresh server and a file stream `S` on `s.>`.
    func withStream(_ name: String = #function, configure: (inout StreamConfig) -> Void = { _ in },
                    _ body: (JetStream, NATSConnection) async throws -> Void) async throws {
        try await withServer(name) { server in
            let nats = try await NATSConnection.connect(testOptions([server.url]))
            let js = JetStream(nats)
            var config = StreamConfig(name: "S", subjects: ["s.>"], storage: .file, duplicateWindow: .seconds(60))
            configure(&config)
            _ = try await js.createStream(config)
            try await body(js, nats)
            await nats.close()
        }
    }

    @Test func aStreamIsCreatedReadUpdatedAndDeleted() async throws {
        try await withStream { js, _ in
            let info = try await js.streamInfo("S")
            #expect(info.config.subjects == ["s.>"])
            #expect(info.config.storage == .file)
            #expect(info.config.duplicateWindow == .seconds(60))
            #expect(info.state.messages == 0)
            var config = info.config
            config.subjects = ["s.>", "t.>"]
            config.maxMessages = 1000
            let updated = try await js.updateStream(config)
            #expect(updated.config.subjects == ["s.>", "t.>"])
            #expect(updated.config.maxMessages == 1000)
            try await js.deleteStream("S")
            do {
                _ = try await js.streamInfo("S")
                Issue.record("the stream is still there")
            } catch let error as JetStreamError {
                #expect(error.code == 404)
                #expect(error.errorCode == JetStreamError.ErrorCode.streamNotFound)
                #expect(error.subject == "$JS.API.STREAM.INFO.S")
            }
        }
    }

    @Test func aPublishIsAcknowledgedWithItsSequenceAndARepeatedMessageIDIsADuplicate() async throws {
        try await withStream { js, _ in
            let first = try await js.publish(ByteBuffer(string: "one"), to: "s.a", messageID: "m-1")
            #expect(first == PubAck(stream: "S", sequence: 1))
            let again = try await js.publish(ByteBuffer(string: "one"), to: "s.a", messageID: "m-1")
            #expect(again == PubAck(stream: "S", sequence: 1, duplicate: true))
            let second = try await js.publish(ByteBuffer(string: "two"), to: "s.b", messageID: "m-2")
            #expect(second.sequence == 2 && !second.duplicate)
            let plain = try await js.publish(ByteBuffer(string: "three"), to: "s.c")
            #expect(plain.sequence == 3)
            #expect(try await js.streamInfo("S").state.messages == 3)
        }
    }

    @Test func expectedLastSequenceRefusesAStaleWriterAndARetryFindsItsEarlierAttemptByID() async throws {
        try await withStream { js, _ in
            _ = try await js.publish(ByteBuffer(string: "a"), to: "s.x", messageID: "a", expectedLastSequence: 0)
            let b = try await js.publish(ByteBuffer(string: "b"), to: "s.x", messageID: "b", expectedLastSequence: 1)
            #expect(b.sequence == 2)
            do {
                _ = try await js.publish(ByteBuffer(string: "c"), to: "s.x", messageID: "c", expectedLastSequence: 1)
                Issue.record("a stale expected sequence was accepted")
            } catch let error as JetStreamError {
                #expect(error.errorCode == JetStreamError.ErrorCode.wrongLastSequence)
                #expect(error.description.contains("wrong last sequence"))
            }
            // The retry of a publish that was stored (its ack lost) carries the same id and expected sequence,
            // and the stream checks the sequence first: it refuses the retry as a wrong sequence...
            do {
                _ = try await js.publish(ByteBuffer(string: "b"), to: "s.x", messageID: "b", expectedLastSequence: 1)
                Issue.record("the retry was accepted")
            } catch let error as JetStreamError {
                #expect(error.errorCode == JetStreamError.ErrorCode.wrongLastSequence)
                #expect(error.stream == "S")
                // ...so the retrying publish reads the message after the expected one: ours, by its id.
                #expect(await js.storedEarlier(error, after: 1, messageID: "b") == PubAck(stream: "S", sequence: 2, duplicate: true))
                #expect(await js.storedEarlier(error, after: 1, messageID: "someone-else") == nil)
            }
            let stored = try await js.message(stream: "S", sequence: 2)
            #expect(stored.subject == "s.x" && stored.data == Array("b".utf8) && stored.headers?["Nats-Msg-Id"] == "b")
        }
    }

    @Test func aPublishToASubjectNoStreamTakesFindsNoResponders() async throws {
        try await withStream { js, _ in
            let error = await natsError { _ = try await js.publish(ByteBuffer(string: "x"), to: "nostream.x") }
            #expect(error?.code == .noResponders)
        }
    }

    @Test func aPublishRetriedUntilTheStreamExistsIsStoredOnce() async throws {
        try await withServer { server in
            let nats = try await NATSConnection.connect(testOptions([server.url]))
            let js = JetStream(nats)
            // No stream yet: every attempt finds no responders, as during a leader election.
            let publish = Task {
                try await js.publish(ByteBuffer(string: "late"), to: "late.x", messageID: "late-1", retryUntil: .now + .seconds(10), attemptTimeout: .milliseconds(500))
            }
            try await Task.sleep(for: .milliseconds(400))
            _ = try await js.createStream(StreamConfig(name: "LATE", subjects: ["late.>"]))
            let ack = try await publish.value
            #expect(ack == PubAck(stream: "LATE", sequence: 1))
            #expect(try await js.streamInfo("LATE").state.messages == 1)

            // With no stream at all, the deadline ends it with what happened; each retried attempt was reported.
            var retried: [Int] = []
            do {
                _ = try await js.publish(ByteBuffer(string: "x"), to: "never.x", messageID: "n-1", retryUntil: .now + .seconds(3)) { attempt, error in  // room for several attempts on a busy machine
                    #expect((error as? NATSError)?.code == .noResponders)
                    retried.append(attempt)
                }
                Issue.record("published to no stream")
            } catch let error as JetStreamError {
                #expect((error.attempts ?? 0) > 1)
                #expect(retried == Array(1..<(error.attempts ?? 0)))
                #expect((error.underlying as? NATSError)?.code == .noResponders)
                #expect(error.description.contains("not acknowledged before the deadline"))
            }
            await nats.close()
        }
    }

    @Test func aPullConsumerDeliversBatchesInStreamOrderWithTheirSequencesAndAcks() async throws {
        try await withStream { js, _ in
            for index in 1...25 { _ = try await js.publish(ByteBuffer(string: "m\(index)"), to: "s.\(index % 3)", messageID: "id-\(index)") }
            var config = ConsumerConfig(durableName: "worker", ackPolicy: .explicit)
            config.ackWait = .seconds(30)
            let info = try await js.createConsumer(stream: "S", config)
            #expect(info.name == "worker")
            #expect(info.numPending == 25)
            let consumer = js.pullConsumer(stream: "S", consumer: "worker")

            var seen: [UInt64] = []
            for expected in [10, 10, 5] {
                let batch = try await consumer.fetch(batch: 10, expires: .milliseconds(500))
                #expect(batch.count == expected)
                for message in batch {
                    let metadata = try #require(message.metadata)
                    #expect(metadata.stream == "S" && metadata.consumer == "worker" && metadata.delivered == 1)
                    #expect(message.streamSequence == metadata.streamSequence)
                    #expect(String(buffer: message.payload) == "m\(metadata.streamSequence)")
                    #expect(message.headers?["Nats-Msg-Id"] == "id-\(metadata.streamSequence)")
                    seen.append(metadata.streamSequence)
                    if message === batch.last { try await message.ackSync() } else { try message.ack() }
                }
            }
            #expect(seen == Array(1...25))
            let after = try await consumer.info()
            #expect(after.ackFloor.streamSequence == 25)
            #expect(after.numAckPending == 0)
            #expect(after.numPending == 0)
        }
    }

    @Test func withAckAllOneAckCoversEveryMessageBeforeIt() async throws {
        try await withStream { js, _ in
            for index in 1...10 { _ = try await js.publish(ByteBuffer(string: "\(index)"), to: "s.all") }
            _ = try await js.createConsumer(stream: "S", ConsumerConfig(durableName: "all", ackPolicy: .all))
            let consumer = js.pullConsumer(stream: "S", consumer: "all")
            let batch = try await consumer.fetch(batch: 10, expires: .seconds(1))
            #expect(batch.count == 10)
            try await batch[6].ackSync()
            let info = try await consumer.info()
            #expect(info.ackFloor.streamSequence == 7)
            #expect(info.numAckPending == 3)
        }
    }

    @Test func fetchingFromAnEmptyStreamEndsWithNoMessagesOnNoWaitAndOnExpiry() async throws {
        try await withStream { js, _ in
            _ = try await js.createConsumer(stream: "S", ConsumerConfig(durableName: "idle"))
            let consumer = js.pullConsumer(stream: "S", consumer: "idle")
            var started = ContinuousClock.now
            #expect(try await consumer.fetch(batch: 5, expires: .seconds(10), noWait: true).isEmpty)  // 404 at once
            #expect(ContinuousClock.now - started < .seconds(5))
            started = ContinuousClock.now
            #expect(try await consumer.fetch(batch: 5, expires: .milliseconds(400)).isEmpty)  // 408 when it expires
            let waited = ContinuousClock.now - started
            #expect(waited >= .milliseconds(350) && waited < .seconds(4))
            // Heartbeats keep a long pull alive while nothing comes; what arrives later is delivered.
            let pull = Task { try await consumer.fetch(batch: 1, expires: .seconds(3), idleHeartbeat: .milliseconds(300)) }
            try await Task.sleep(for: .milliseconds(1000))
            _ = try await js.publish(ByteBuffer(string: "late"), to: "s.late")
            let late = try await pull.value
            #expect(late.map { String(buffer: $0.payload) } == ["late"])
        }
    }

    @Test func aPullOnAConsumerThatDoesNotExistFails() async throws {
        try await withStream { js, _ in
            let consumer = js.pullConsumer(stream: "S", consumer: "ghost")
            await #expect(throws: (any Error).self) { _ = try await consumer.fetch(batch: 1, expires: .milliseconds(500)) }
        }
    }
}

extension JetStreamMessage {
    static func === (lhs: JetStreamMessage, rhs: JetStreamMessage?) -> Bool {
        lhs.message.replyBytes == rhs?.message.replyBytes
    }
}
