import Foundation
import Presence
import SegmentLog
import Testing

@Suite(.serialized) struct DurabilityTests {
    /// The event line with sequence number `n`: unique conn and timestamp, so that any mix-up shows.
    static func line(_ n: Int) -> String {
        #"{"type":"\#(n % 3 == 0 ? "disconnect" : "connect")","user":"u\#(n % 50)","conn":"u\#(n % 50)-phone-\#(String(n, radix: 16))","gateway":"gw-\#(n % 4)","ts":\#(1_705_276_800_000 + n)}"#
    }

    static func dumpLines(_ data: String, from: Int) throws -> [String] {
        let dump = try CLI.presence(["dump", "--data", data, "--from-offset", "\(from)"])
        #expect(dump.status == 0, "dump failed: \(dump.stderr)")
        #expect(!dump.stderr.contains("ignored"), "a torn batch is visible after recovery: \(dump.stderr)")
        return dump.stdout.lines
    }

    /// Expected dump line for the event with sequence number n.
    static func dumped(_ n: Int) throws -> String {
        EventJSON.line(try NDJSONEventParser().parse(line(n)))
    }

    @Test func killNineNeverLosesAnAcknowledgedEvent() throws {
        signal(SIGPIPE, SIG_IGN)
        let dir = Scratch()
        let data = dir.file("data")
        var nextSequence = 0
        var logEnd = 0
        var random = SystemRandomNumberGenerator()
        for round in 0..<12 {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: CLI.presence)
            process.arguments = ["ingest", "--data", data, "--report-acks", "--quiet", "-"]
            let stdin = Pipe(), stdout = Pipe()
            process.standardInput = stdin
            process.standardOutput = stdout
            process.standardError = FileHandle.nullDevice
            try process.run()

            // Offsets of this run start at the log's end; the n-th line sent lands at logEnd + n.
            let firstSequence = nextSequence
            let roundStart = logEnd
            let stop = DataBox()
            let sentCount = Locked(0)
            let writer = Thread {
                var n = firstSequence
                while stop.get().isEmpty {
                    var chunk = ""
                    for _ in 0..<Int.random(in: 1...200) {
                        chunk += Self.line(n) + "\n"
                        n += 1
                    }
                    guard CLI.writeAll(stdin.fileHandleForWriting.fileDescriptor, Data(chunk.utf8)) else { break }
                    sentCount.set(n - firstSequence)
                }
            }
            writer.start()

            // Read acknowledgements until at least one arrived, then let it run a random while and kill it.
            let acks = DataBox()
            let reader = acks.drain(stdout.fileHandleForReading)
            let deadline = Date().addingTimeInterval(20)
            while acks.get().isEmpty && Date() < deadline { usleep(1000) }
            usleep(UInt32.random(in: 0...150_000, using: &random))
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            stop.set(Data([1]))
            try? stdin.fileHandleForWriting.close()
            while !reader.isFinished || !writer.isFinished { usleep(1000) }

            // The largest durable end offset acknowledged before the kill (complete lines only).
            var acknowledged = roundStart
            for ackLine in String(decoding: acks.get(), as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).dropLast() {
                guard let range = ackLine.range(of: "\"durable_end_offset\":") else { continue }
                let digits = ackLine[range.upperBound...].prefix(while: \.isNumber)
                acknowledged = max(acknowledged, Int(digits) ?? 0)
            }
            #expect(acknowledged > roundStart, "round \(round): no acknowledgement before the kill")

            // Restart: opening the log recovers it (an empty ingest), then everything acknowledged must be there.
            let reopen = try CLI.presence(["ingest", "--data", data, "-"], input: Data())
            #expect(reopen.status == 0, "round \(round): reopening failed: \(reopen.stderr)")
            let lines = try Self.dumpLines(data, from: roundStart)
            #expect(roundStart + lines.count >= acknowledged,
                    "round \(round): \(acknowledged - roundStart) events acknowledged, \(lines.count) survived")
            #expect(lines.count <= sentCount.get() + 200)
            for (i, line) in lines.enumerated() where line != (try Self.dumped(firstSequence + i)) {
                Issue.record("round \(round): offset \(roundStart + i) holds \(line), expected event \(firstSequence + i)")
                break
            }
            logEnd = roundStart + lines.count
            nextSequence = firstSequence + lines.count
        }
        // And the whole log is intact from the first offset.
        let all = try Self.dumpLines(data, from: 0)
        #expect(all.count == logEnd)
    }

    @Test func aSecondWriterIsRefusedWithTheHoldersPid() throws {
        let dir = Scratch()
        let data = dir.file("data")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: CLI.presence)
        process.arguments = ["ingest", "--data", data, "-"]
        let stdin = Pipe()
        process.standardInput = stdin
        process.standardError = FileHandle.nullDevice
        try process.run()
        let lockFile = data + "/.lock"
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline && ((try? String(contentsOfFile: lockFile, encoding: .utf8)) ?? "").isEmpty { usleep(2000) }
        let second = try CLI.presence(["ingest", "--data", data, "-"], input: Data(Self.line(1).utf8))
        #expect(second.status == 1)
        #expect(second.stderr.contains("in use by another process (pid \(process.processIdentifier))"), "\(second.stderr)")
        try stdin.fileHandleForWriting.close()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        // Once the first is gone, the directory is free again.
        let third = try CLI.presence(["ingest", "--data", data, "-"], input: Data(Self.line(1).utf8))
        #expect(third.status == 0, "\(third.stderr)")
    }

    @Test func aFlippedByteInASealedSegmentStopsTheDumpWithItsPosition() throws {
        let dir = Scratch()
        let data = dir.file("data")
        let input = (0..<3000).map(Self.line).joined(separator: "\n")
        let ingest = try CLI.presence(["ingest", "--data", data, "--segment-bytes", "8KiB", "--batch-records", "100"], input: Data(input.utf8))
        #expect(ingest.status == 0)
        let segments = try FileManager.default.contentsOfDirectory(atPath: data + "/presence").filter { $0.hasSuffix(".log") }.sorted()
        #expect(segments.count > 2)
        // A byte inside the first batch of a sealed segment, and one inside the last batch of the closed log.
        for (name, position) in [(segments[0], 200), (segments[segments.count - 1], -10)] {
            let segment = data + "/presence/" + name
            var bytes = try Data(contentsOf: URL(fileURLWithPath: segment))
            let at = position >= 0 ? position : bytes.count + position
            bytes[at] ^= 0x40
            try bytes.write(to: URL(fileURLWithPath: segment))
            let dump = try CLI.presence(["dump", "--data", data])
            #expect(dump.status == 3, "\(dump.stderr)")
            #expect(dump.stderr.contains(segment))
            #expect(dump.stderr.contains("at byte "))
            let verify = try CLI.presence(["log-info", "--verify", "--data", data])
            #expect(verify.status == 3)
            bytes[at] ^= 0x40
            try bytes.write(to: URL(fileURLWithPath: segment))
        }
        #expect(try CLI.presence(["dump", "--data", data]).status == 0)
    }

    @Test func kafkaPythonReadsEverySegmentWeWrite() throws {
        #expect(FileManager.default.isExecutableFile(atPath: CLI.python),
                "no Python virtual environment at \(CLI.python): run scripts/test.sh, which creates it")
        let dir = Scratch()
        let data = dir.file("data")
        let generated = try CLI.run(CLI.generator, ["--events", "30000", "--users", "3000", "--seed", "3"])
        let ingest = try CLI.presence(["ingest", "--data", data, "--segment-bytes", "64KiB"], input: Data(generated.stdout.utf8))
        #expect(ingest.status == 0, "\(ingest.stderr)")
        let checker = CLI.repository.appendingPathComponent("tools/checks/kafka_check.py").path
        let summary = try CLI.run(CLI.python, [checker, data + "/presence"])
        #expect(summary.status == 0, "kafka-python refused the log: \(summary.stderr)")
        #expect(summary.stdout.contains("\"records\": 30000"))
        #expect(summary.stdout.contains("\"first_offset\": 0, \"last_offset\": 29999"))
        #expect(!summary.stdout.contains("\"segments\": 1,"))
        // Keys and timestamps as Kafka's reader sees them are the users and event times we ingested.
        let records = try CLI.run(CLI.python, [checker, data + "/presence", "--dump"]).stdout.lines
        let parser = NDJSONEventParser()
        let events = try generated.stdout.lines.map { try parser.parse($0) }
        #expect(records.count == events.count)
        for (i, record) in records.enumerated() {
            let fields = record.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            guard fields == ["\(i)", "\(events[i].timestamp)", events[i].user] else {
                Issue.record("record \(i) reads as \(fields), expected \(events[i])")
                break
            }
        }
    }
}
