import Foundation
import Testing

/// `presence retain` on a real multi-segment log: the current state and states after the cut stay
/// exact, questions about before the cut are refused in words, and a SIGKILL at any moment of a pass
/// loses nothing that should stay.
@Suite(.serialized) struct RetentionTests {
    /// A log of 50,000 generated events (about 8 minutes of event time) in segments of 2 minutes.
    static func makeLog(_ dir: Scratch) throws -> String {
        let events = dir.file("events.ndjson")
        let generated = try CLI.run(CLI.generator, ["--events", "50000", "--users", "1000"])
        try Data(generated.stdout.utf8).write(to: URL(fileURLWithPath: events))
        let data = dir.file("data")
        #expect(try CLI.presence(["ingest", "--data", data, "--segment-age", "2m", events]).status == 0)
        return data
    }

    static let cut = "2024-01-15T00:04:30Z"
    static let afterCut = "2024-01-15T00:06:00Z"

    /// What must not change: the current state, a state after the cut, and the records from the first
    /// retained offset on.
    struct Answers: Equatable {
        var now: String
        var later: String
        var records: [String]

        init(_ data: String, from offset: Int64) throws {
            now = try CLI.presence(["state", "--data", data, "--format", "json"]).stdout
            later = try CLI.presence(["state", "--data", data, "--at", RetentionTests.afterCut, "--format", "json"]).stdout
            records = try CLI.presence(["dump", "--data", data, "--from-offset", "\(offset)"]).stdout.split(separator: "\n").map(String.init)
        }
    }

    static func copy(_ from: String, to: String) throws {
        try? FileManager.default.removeItem(atPath: to)
        try FileManager.default.copyItem(atPath: from, toPath: to)
    }

    @Test func retainKeepsTheStateExactAndSaysWhatWasNotRetained() throws {
        let dir = Scratch()
        let data = try Self.makeLog(dir)
        let before = try Answers(data, from: 0)
        let segmentsBefore = try FileManager.default.contentsOfDirectory(atPath: data + "/presence").filter { $0.hasSuffix(".log") }.count
        #expect(segmentsBefore >= 4)

        let retained = try CLI.presence(["retain", "--data", data, "--before", Self.cut])
        #expect(retained.status == 0, "\(retained.stderr)")
        #expect(retained.stdout.hasPrefix("removed "), "\(retained.stdout)")
        let setting = try String(contentsOfFile: data + "/retention", encoding: .utf8).split(separator: " ")
        let first = Int64(setting.first ?? "") ?? -1
        #expect(first > 0)
        let after = try Answers(data, from: first)
        #expect(after.now == before.now)
        #expect(after.later == before.later)
        #expect(after.records == Array(before.records.dropFirst(Int(first))))
        #expect(try FileManager.default.contentsOfDirectory(atPath: data + "/presence").filter { $0.hasSuffix(".log") }.count < segmentsBefore)
        // The oldest segment left starts at the first retained offset; audit folds from the base checkpoint.
        #expect(FileManager.default.fileExists(atPath: data + "/presence/" + String(format: "%020lld", first) + ".log"))
        let audit = try CLI.presence(["audit", "--data", data])
        #expect(audit.status == 0 && audit.stdout.contains("result: clean"), "\(audit.stdout)")
        #expect(try CLI.presence(["state", "--data", data, "--no-checkpoint", "--format", "json"]).stdout == before.now)

        // Before the cut: said plainly, never answered from what is left.
        let early = try CLI.presence(["state", "--data", data, "--at", "2024-01-15T00:01:00Z"])
        #expect(early.status == 1 && early.stderr.contains("was not retained"), "\(early.stderr)")
        let history = try CLI.presence(["history", "--data", data, "--user", "u1", "--to", "2024-01-15T00:01:00Z"])
        #expect(history.status == 1 && history.stderr.contains("was not retained"), "\(history.stderr)")
        let dump = try CLI.presence(["dump", "--data", data, "--to-offset", "10"])
        #expect(dump.status == 1 && dump.stderr.contains("offsets below \(first)) was not retained"), "\(dump.stderr)")
        let info = try CLI.presence(["log-info", "--data", data]).stdout
        #expect(info.contains("retained from offset \(first): history before 2024-01-15T00:04:30.000Z was removed"), "\(info)")
        // Kafka's own reader takes the log as it is now: a topic partition whose start moved.
        let kafka = try CLI.run(CLI.python, [CLI.repository.appendingPathComponent("tools/checks/kafka_check.py").path, data + "/presence"])
        #expect(kafka.status == 0, "\(kafka.stdout)\(kafka.stderr)")

        // A server starts from the base checkpoint and serves the same state.
        let server = try RunningServer(data: data)
        let user = "u1"
        let served = try server.request("GET", "/v1/users/\(user)/presence", token: try token(user)).body
        let line = before.now.split(separator: "\n").first { $0.hasPrefix("{\"user\":\"\(user)\",") } ?? ""
        #expect(served.hasPrefix(line.dropLast()), "\(served) vs \(line)")
        #expect(server.stop() == 0)

        // A second pass with the same cut has nothing to remove.
        #expect(try CLI.presence(["retain", "--data", data, "--before", Self.cut]).stdout.hasPrefix("nothing to remove"))
    }

    /// SIGKILL during passes at growing delays, and the two states a crash can leave built by hand
    /// (the base and the setting written but no segment removed; one segment's .log removed, its
    /// indexes not): every time the answers are the same, audit is clean, and a second run finishes.
    @Test func aKilledRetentionPassLosesNothingThatShouldStay() throws {
        let dir = Scratch()
        let original = try Self.makeLog(dir)
        let before = try Answers(original, from: 0)
        // The full pass on a copy, for the first retained offset and the files a pass writes.
        let done = dir.file("done")
        try Self.copy(original, to: done)
        #expect(try CLI.presence(["retain", "--data", done, "--before", Self.cut]).status == 0)
        let first = Int64(try String(contentsOfFile: done + "/retention", encoding: .utf8).split(separator: " ").first ?? "") ?? -1

        func expectIntact(_ data: String, _ what: String) throws {
            let offset = FileManager.default.fileExists(atPath: data + "/retention") ? first : 0
            let answers = try Answers(data, from: offset)
            #expect(answers.now == before.now, "\(what): current state")
            #expect(answers.later == before.later, "\(what): state after the cut")
            #expect(answers.records == Array(before.records.dropFirst(Int(offset))), "\(what): records")
            let audit = try CLI.presence(["audit", "--data", data])
            #expect(audit.status == 0, "\(what): \(audit.stdout)")
            // Run again: it finishes, and the answers still hold.
            #expect(try CLI.presence(["retain", "--data", data, "--before", Self.cut]).status == 0, "\(what)")
            let finished = try Answers(data, from: first)
            #expect(finished.now == before.now && finished.later == before.later, "\(what): after finishing")
            #expect(finished.records == Array(before.records.dropFirst(Int(first))), "\(what): records after finishing")
        }

        for delay in [0, 10, 30, 60, 100, 150] {
            let data = dir.file("killed-\(delay)")
            try Self.copy(original, to: data)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: CLI.presence)
            process.arguments = ["retain", "--data", data, "--before", Self.cut]
            process.standardOutput = FileHandle.nullDevice
            try process.run()
            usleep(useconds_t(delay * 1000))
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            try expectIntact(data, "killed after \(delay) ms")
        }

        // Crashed after the base and the setting, before any removal.
        let noRemoval = dir.file("no-removal")
        try Self.copy(original, to: noRemoval)
        try Self.copy(done + "/retained", to: noRemoval + "/retained")
        try FileManager.default.copyItem(atPath: done + "/retention", toPath: noRemoval + "/retention")
        // Crashed between a segment's .log and its indexes.
        let halfway = dir.file("halfway")
        try Self.copy(noRemoval, to: halfway)
        try expectIntact(noRemoval, "setting written, nothing removed")
        try FileManager.default.removeItem(atPath: halfway + "/presence/" + String(format: "%020lld", 0) + ".log")
        try expectIntact(halfway, "first .log removed, its indexes left")
        #expect(!FileManager.default.fileExists(atPath: halfway + "/presence/" + String(format: "%020lld", 0) + ".index"))
    }

    /// `serve --retention`: the node removes what is older than the retention at start, and serves the
    /// same state, before and after a restart.
    @Test func aServerWithRetentionRemovesOldHistoryAndServesTheSameState() throws {
        let dir = Scratch()
        let data = try Self.makeLog(dir)
        let before = try CLI.presence(["state", "--data", data, "--format", "json"]).stdout.split(separator: "\n")
        // The generated events are from 2024: older than 30 days, so every sealed segment goes.
        let server = try RunningServer(data: data, extra: ["--retention", "30d"])
        // The pass notes the retained range before it removes segments: wait for both.
        var info = "", segments = 0
        for _ in 0..<300 {
            info = try CLI.presence(["log-info", "--data", data]).stdout
            segments = try FileManager.default.contentsOfDirectory(atPath: data + "/presence").filter { $0.hasSuffix(".log") }.count
            if info.contains("retained from offset") && segments == 1 { break }
            usleep(100_000)
        }
        #expect(info.contains("retained from offset"), "\(info)")
        #expect(segments == 1, "\(segments) segments left")
        for user in ["u1", "u500"] {
            let line = before.first { $0.hasPrefix("{\"user\":\"\(user)\",") } ?? ""
            let served = try server.request("GET", "/v1/users/\(user)/presence", token: try token(user)).body
            #expect(served.hasPrefix(line.dropLast()), "\(served) vs \(line)")
        }
        #expect(server.stop() == 0)
        let again = try RunningServer(data: data)
        let line = before.first { $0.hasPrefix("{\"user\":\"u1\",") } ?? ""
        #expect(try again.request("GET", "/v1/users/u1/presence", token: try token("u1")).body.hasPrefix(line.dropLast()))
        #expect(again.stop() == 0)
        #expect(try CLI.presence(["audit", "--data", data]).status == 0)
        let refused = try CLI.run(CLI.presence, ["serve", "--data", dir.file("other"), "--dev", "--port", "0", "--retention", "1d",
                                                 "--cluster", "nats://127.0.0.1:1"])
        #expect(refused.status == 64 && refused.stderr.contains("--retention is not supported with --cluster"), "\(refused.stderr)")
    }
}
