import Foundation
import JetStream
import NATS
import NATSServerHarness
import NIOCore

// nats-bench: what one JetStream stream takes on this machine, measured with the project's NATS client.
//
// Starts three nats-servers on loopback (a JetStream cluster), creates a file stream with three replicas,
// publishes `--count` messages of `--size` bytes with up to `--window` publishes awaiting their PubAck
// at once (each with a Nats-Msg-Id), stopping after `--seconds` whatever the count, then reads the stream
// back through a durable pull consumer (batches of `--fetch`, one ack-all per batch). Kills the servers
// and removes their files at the end.
//
//   .build/release/nats-bench --sync always --size 16384 --count 20000 --window 64
//   .build/release/nats-bench --sync default --size 100 --count 5000 --window 1

struct Settings {
    var syncAlways = true
    var size = 16384
    var count = 20000
    var window = 64
    var seconds = 20.0
    var fetch = 500
    var replicas = 3

    init(_ arguments: [String]) throws {
        var rest = arguments.makeIterator()
        while let flag = rest.next() {
            guard let value = rest.next() else { throw HarnessError("\(flag) needs a value") }
            switch flag {
            case "--sync":
                guard value == "always" || value == "default" else { throw HarnessError("--sync is always or default") }
                syncAlways = value == "always"
            case "--size": size = try number(flag, value)
            case "--count": count = try number(flag, value)
            case "--window": window = try number(flag, value)
            case "--fetch": fetch = try number(flag, value)
            case "--replicas": replicas = try number(flag, value)
            case "--seconds":
                guard let parsed = Double(value), parsed > 0 else { throw HarnessError("--seconds takes a positive number") }
                seconds = parsed
            default: throw HarnessError("unknown option \(flag) (--sync always|default, --size, --count, --window, --seconds, --fetch, --replicas)")
            }
        }
    }

    private func number(_ flag: String, _ value: String) throws -> Int {
        guard let parsed = Int(value), parsed > 0 else { throw HarnessError("\(flag) takes a positive whole number") }
        return parsed
    }
}

/// A counter shared by the publishing tasks.
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    func next() -> Int { lock.withLock { defer { value += 1 }; return value } }
}

func formatRate(_ count: Double, _ seconds: Double) -> String {
    String(format: "%.0f", count / seconds)
}

func run(_ settings: Settings) async throws {
    print("nats-bench: \(NATSServerProcess.version ?? "nats-server ?"), \(settings.replicas) servers, sync_interval \(settings.syncAlways ? "always" : "default (2 min)"), "
        + "messages of \(settings.size) bytes, \(settings.window) publishes in flight, at most \(settings.count) or \(settings.seconds) s")
    let cluster = try NATSCluster(size: settings.replicas, syncAlways: settings.syncAlways)
    defer {
        cluster.kill()
        cluster.removeFiles()
    }
    try cluster.start()
    var options = try NATSOptions(servers: cluster.urls)
    options.connectTimeout = .seconds(2)
    let nats = try await NATSConnection.connect(options)
    let js = JetStream(nats, timeout: .seconds(5))
    let config = StreamConfig(name: "BENCH", subjects: ["bench.>"], storage: .file, replicas: settings.replicas, duplicateWindow: .seconds(120))
    let deadline = ContinuousClock.now + .seconds(30)
    var created = false
    while !created {
        created = ((try? await js.createStream(config))?.cluster?.leader ?? (settings.replicas == 1 ? "single" : nil)) != nil
        if !created {
            guard ContinuousClock.now < deadline else { throw HarnessError("no stream after 30 s (no JetStream meta leader?)") }
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    // Publish.
    let payload = ByteBuffer(repeating: UInt8(ascii: "x"), count: settings.size)
    let counter = Counter()
    let stopAt = ContinuousClock.now + .seconds(settings.seconds)
    let started = ContinuousClock.now
    let latencies = try await withThrowingTaskGroup(of: [Duration].self) { group in
        for _ in 0..<settings.window {
            group.addTask {
                var latencies: [Duration] = []
                while ContinuousClock.now < stopAt {
                    let index = counter.next()
                    guard index < settings.count else { break }
                    let sent = ContinuousClock.now
                    _ = try await js.publish(payload, to: "bench.e", messageID: "m-\(index)", retryUntil: .now + .seconds(30))
                    latencies.append(.now - sent)
                }
                return latencies
            }
        }
        return try await group.reduce(into: [Duration]()) { $0 += $1 }
    }
    let publishSeconds = (ContinuousClock.now - started).seconds
    let published = latencies.count
    let sorted = latencies.sorted()
    func percentile(_ p: Double) -> String {
        guard !sorted.isEmpty else { return "-" }
        return String(format: "%.1f ms", sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))].seconds * 1000)
    }
    // A message of 1 KiB or more stands for a batch of events at 15 bytes each (the log's figure); a smaller
    // one for a single event.
    let eventsPerMessage = settings.size < 1024 ? 1 : settings.size / 15
    print("publish: \(published) messages acked in \(String(format: "%.2f", publishSeconds)) s: \(formatRate(Double(published), publishSeconds)) msg/s, "
        + "\(String(format: "%.1f", Double(published * settings.size) / publishSeconds / 1_048_576)) MiB/s; ack latency p50 \(percentile(0.5)), p99 \(percentile(0.99)); "
        + "at \(eventsPerMessage) events a message (15 bytes an event, as in the log): \(formatRate(Double(published * eventsPerMessage), publishSeconds)) events/s")

    // Catch up: read the whole stream back.
    _ = try await js.createConsumer(stream: "BENCH", ConsumerConfig(durableName: "catchup", ackPolicy: .all))
    let consumer = js.pullConsumer(stream: "BENCH", consumer: "catchup")
    let readStarted = ContinuousClock.now
    var read = 0
    var bytes = 0
    while read < published {
        let batch = try await consumer.fetch(batch: settings.fetch, expires: .seconds(2))
        guard let last = batch.last else { break }
        read += batch.count
        for message in batch { bytes += message.payload.readableBytes }
        try last.ack()
    }
    let readSeconds = (ContinuousClock.now - readStarted).seconds
    print("catch-up: \(read) messages read by a pull consumer (batches of \(settings.fetch)) in \(String(format: "%.2f", readSeconds)) s: "
        + "\(formatRate(Double(read), readSeconds)) msg/s, \(String(format: "%.1f", Double(bytes) / readSeconds / 1_048_576)) MiB/s, "
        + "\(formatRate(Double(read * eventsPerMessage), readSeconds)) events/s at \(eventsPerMessage) events a message")
    await nats.close()
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

do {
    try await run(Settings(Array(CommandLine.arguments.dropFirst())))
} catch {
    FileHandle.standardError.write(Data("nats-bench: \(error)\n".utf8))
    exit(1)
}
