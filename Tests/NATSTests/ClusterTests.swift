import Foundation
import JetStream
import NATS
import NATSServerHarness
import NIOCore
import Testing

/// A three-server JetStream cluster on loopback (routes between them, `sync_interval: always`), a stream with
/// three replicas, and its leader killed with SIGKILL in the middle of a write load.
@Suite(.enabled(if: natsServerAvailable, "nats-server not found: run scripts/setup.sh"), .serialized, .timeLimit(.minutes(5)))
struct ClusterTests {
    @Test func killingTheStreamLeaderLosesNoAcknowledgedWriteAndStallsWritesOnlyForTheElection() async throws {
        let cluster = try NATSCluster(size: 3, syncAlways: true)
        defer {
            cluster.kill()
            cluster.removeFiles()
        }
        try cluster.start()
        var options = try testOptions(cluster.urls)
        options.pingInterval = .seconds(1)
        let nats = try await NATSConnection.connect(options)
        let js = JetStream(nats, timeout: .seconds(2))

        // The cluster elects its meta leader first; until then stream creation fails.
        let config = StreamConfig(name: "EVENTS", subjects: ["events.>"], storage: .file, replicas: 3, duplicateWindow: .seconds(120))
        var created: StreamInfo?
        try await eventually("the stream is created", timeout: .seconds(90)) {
            created = try? await js.createStream(config)
            return created?.cluster?.leader != nil
        }
        let leaderName = try #require(created?.cluster?.leader)
        let leader = try #require(cluster.server(named: leaderName))

        // Publish through a connection given only the leader's address: it learns the other servers from
        // INFO's connect_urls, and must move to one of them when the leader dies.
        let publisher = try await NATSConnection.connect(options.withServers([leader.url]))
        try await eventually("the cluster's servers are known") { publisher.knownServers.count == 3 }
        let writer = JetStream(publisher, timeout: .seconds(2))

        // Publish 300 messages one after the other, each retried with its id until acknowledged; kill the
        // leader after the 100th ack.
        let total = 300
        var ackTimes: [ContinuousClock.Instant] = []
        var acked: [UInt64: Int] = [:]  // stream sequence -> message number
        var killedAt: ContinuousClock.Instant?
        var retries: [[String]] = []  // per message, its failed attempts
        for index in 0..<total {
            var failed: [String] = []
            let started = ContinuousClock.now
            let ack = try await writer.publish(ByteBuffer(string: "event \(index)"), to: "events.e", messageID: "e-\(index)",
                                               retryUntil: .now + .seconds(90), attemptTimeout: .seconds(1)) { _, error in
                failed.append("\((ContinuousClock.now - started).formatted(.units(allowed: [.seconds, .milliseconds]))): \(error)")
            }
            retries.append(failed)
            #expect(acked[ack.sequence] == nil, "sequence \(ack.sequence) acknowledged twice")
            acked[ack.sequence] = index
            ackTimes.append(.now)
            if index == 99 {
                leader.kill()
                killedAt = .now
            }
        }
        let gaps = zip(ackTimes.dropFirst(), ackTimes).map { $0 - $1 }
        let stall = gaps.max() ?? .zero
        // The slowest publish's failed attempts, to tell an election from a write the stream held "in process".
        let slowest = (gaps.indices.max { gaps[$0] < gaps[$1] } ?? 0) + 1

        // Every acknowledged message is in the stream, once, in publish order.
        let info = try await js.streamInfo("EVENTS")
        #expect(info.state.messages == UInt64(total))
        #expect(info.cluster?.leader != leaderName)
        #expect(acked.keys.sorted() == Array(1...UInt64(total)))
        #expect(acked.sorted { $0.key < $1.key }.map(\.value) == Array(0..<total))
        // With one server down the consumer's creation goes through the meta leader's quorum: it may take a while.
        try await eventually("the consumer is created", timeout: .seconds(60)) {
            (try? await JetStream(nats, timeout: .seconds(5)).createConsumer(stream: "EVENTS", ConsumerConfig(durableName: "check", ackPolicy: .all))) != nil
        }
        let consumer = js.pullConsumer(stream: "EVENTS", consumer: "check")
        var read: [String] = []
        let readDeadline = ContinuousClock.now + .seconds(30)
        while read.count < total, ContinuousClock.now < readDeadline {
            let batch: [JetStreamMessage]
            do {
                batch = try await consumer.fetch(batch: 100, expires: .seconds(2))
            } catch let error as NATSError where error.code == .noResponders {
                try await Task.sleep(for: .milliseconds(200))  // the new consumer's own leader is not elected yet
                continue
            }
            guard !batch.isEmpty else { break }
            read += batch.map { String(buffer: $0.payload) }
            try await batch.last?.ackSync()
        }
        #expect(read == (0..<total).map { "event \($0)" })

        // The killed server comes back and catches up.
        try leader.start()
        try await eventually("the restarted replica is current", timeout: .seconds(60)) {
            guard let replicas = try? await js.streamInfo("EVENTS").cluster?.replicas, replicas.count == 2 else { return false }
            return replicas.allSatisfy { $0.current == true && $0.offline != true }
        }

        print("""
            cluster: stream leader \(leaderName) killed (SIGKILL) after 100 of \(total) acknowledged publishes; \
            longest wait between two acks \(stall.formatted(.units(allowed: [.seconds, .milliseconds]))); \
            \(killedAt.map { "first ack after the kill \((ackTimes[100] - $0).formatted(.units(allowed: [.seconds, .milliseconds])))" } ?? ""); \
            \(info.state.messages) stored, new leader \(info.cluster?.leader ?? "?"), publisher reconnects \(publisher.reconnectCount); \
            the slowest, message \(slowest), failed \(retries[slowest].count) times: \(retries[slowest].suffix(12).joined(separator: "; "))
            """)
        // Writes come back after the election. The stall itself (target ≤ 10 s, 4-6 s on a quiet machine) is a
        // figure, printed above and recorded in BENCHMARKS.md: under the whole suite's load elections take longer,
        // so the bound here is liveness (90 s: a run at load average 10 saw 57 s), not the target. The figure
        // is the first ack after the kill: under the whole suite the longest gap between two acks can be far
        // from the kill, a publish with no failed attempt (in a clean-clone CI run, message 5 waited 26 s
        // without one: this process's 2 cooperative threads were held by other suites' blocking calls, so
        // not even its 1 s timeout ran), which the printed attempts of the slowest publish tell apart.
        // Liveness across the kill; the longest gap anywhere is printed, not bounded (under the whole suite it
        // has reached 60 s far from the kill: this process starved, not the cluster).
        let afterKill = killedAt.map { ackTimes[100] - $0 } ?? stall
        #expect(afterKill < .seconds(90), "writes stalled for \(afterKill) after the kill")
        #expect(publisher.reconnectCount >= 1)
        await publisher.close()
        await nats.close()
    }
}
