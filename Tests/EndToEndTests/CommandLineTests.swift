import Foundation
import Testing

/// What the `presence` command says and how it exits, as a user meets it: one documented set of exit
/// codes, help that reads, and tables and counts that add up.
@Suite(.serialized) struct CommandLineTests {
    static let fixtures = CLI.repository.appendingPathComponent("fixtures/logs").path

    @Test func exitCodesAreOneDocumentedSet() throws {
        let dir = Scratch()
        let data = dir.file("data")
        // 64: bad arguments, whether ArgumentParser or the command finds them.
        for arguments in [["ingest"], ["dump", "--data", data, "--nosuch"], ["ingest", "--data", data, "--fsync", "sometimes", "-"],
                          ["dump", "--data", dir.file("nothing-here")], ["dump", "--data", data, "--from-offset", "-1"],
                          ["state", "--data", data, "--user", ""], ["help", "nosuch"]] {
            let result = try CLI.presence(arguments, input: Data())
            #expect(result.status == 64, "\(arguments): \(result.status) \(result.stderr)")
            #expect(result.stderr.contains("rror: "), "\(arguments): \(result.stderr)")
        }
        #expect(!FileManager.default.fileExists(atPath: data), "a refused command created the data directory")
        // 0, then 2 for rejected lines.
        let good = #"{"type":"connect","user":"bob","conn":"c1","gateway":"gw-1","ts":"2024-01-15T09:00:00Z"}"#
        #expect(try CLI.presence(["ingest", "--data", data, "--quiet", "-"], input: Data(good.utf8)).status == 0)
        #expect(try CLI.presence(["ingest", "--data", data, "--quiet", "-"], input: Data("nope\n".utf8)).status == 2)
        // 1: the data directory in use (a running server holds it).
        let server = try RunningServer(data: dir.file("served"))
        let locked = try CLI.presence(["ingest", "--data", dir.file("served"), "--quiet", "-"], input: Data(good.utf8))
        #expect(locked.status == 1 && locked.stderr.contains("in use by another process"), "\(locked.stderr)")
        #expect(server.stop() == 0)
        // 3: a corrupt log.
        let corrupt = try CLI.presence(["dump", "--data", Self.fixtures + "/flipped-byte"])
        #expect(corrupt.status == 3, "\(corrupt.stderr)")
        // The set is the one documented in the help and the README.
        let help = try CLI.presence(["--help"]).stdout
        #expect(help.contains("64 bad arguments"), "\(help)")
        let readme = try String(contentsOf: CLI.repository.appendingPathComponent("README.md"), encoding: .utf8)
        #expect(readme.contains("64 bad arguments"))
        #expect(!readme.contains("1 failure (I/O, lock, bad arguments)"))
    }

    @Test func negativeOffsetsAreRefusedByName() throws {
        let dir = Scratch()
        let dump = try CLI.presence(["dump", "--data", dir.path, "--from-offset", "-1"])
        #expect(dump.status == 64 && dump.stderr.contains("error: --from-offset must be a log offset ≥ 0, not -1"), "\(dump.stderr)")
        let replay = try CLI.presence(["replay", "--data", dir.path, "--until-offset", "-5"])
        #expect(replay.status == 64 && replay.stderr.contains("error: --until-offset must be a log offset ≥ 0, not -5"), "\(replay.stderr)")
        let port = try CLI.presence(["serve", "--data", dir.file("data"), "--dev", "--port", "-1"])
        #expect(port.status == 64 && port.stderr.contains("--port must be between 0 and 65535"), "\(port.stderr)")
    }

    @Test func helpTopicsVersionAndTheAPISummary() throws {
        let version = try CLI.presence(["--version"])
        #expect(version.status == 0 && !version.stdout.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "\(version.stderr)")
        let nosuch = try CLI.presence(["help", "nosuch"])
        #expect(nosuch.status == 64 && nosuch.stderr.contains("no help topic 'nosuch'") && nosuch.stdout.isEmpty, "\(nosuch.stderr)")
        #expect(try CLI.presence(["help", "ingest"]).status == 0)
        let api = try CLI.presence(["help", "api"])
        #expect(api.status == 0, "\(api.stderr)")
        for piece in ["POST /v1/events", "POST /v1/conversations", "/v1/conversations/{id}/messages", "GET  /v1/users/{id}/presence",
                      #"{"op":"open","conversation":"<id>"}"#, #"{"type":"presence","user","online","last_seen","#] {
            #expect(api.stdout.contains(piece), "help api lacks \(piece):\n\(api.stdout)")
        }
        let serve = try CLI.presence(["serve", "--help"])
        #expect(serve.stdout.contains("POST /v1/events") && serve.stdout.contains(#"{"op":"close","conversation":"<id>"}"#), "\(serve.stdout)")
        let generator = try CLI.run(CLI.generator, ["--help"])
        #expect(generator.status == 0 && generator.stdout.contains("usage: presence-gen"), "\(generator.status) \(generator.stderr)")
        #expect(try CLI.run(CLI.generator, ["--nosuch"]).status == 64)
    }

    /// ArgumentParser wraps help at 80 columns; a line too long to wrap (a JSON example) used to drag
    /// the first word of the next sentence up with it ("Good\nlines are appended").
    @Test func helpTextDoesNotBreakSentences() throws {
        for command in ["", "ingest", "dump", "log-info", "replay", "state", "history", "audit", "serve", "token", "api"] {
            let help = try CLI.presence(command.isEmpty ? ["--help"] : ["help", command])
            #expect(help.status == 0)
            let lines = help.stdout.components(separatedBy: "\n")
            for (line, next) in zip(lines, lines.dropFirst()) {
                let words = line.split(separator: " ")
                let continues = next.first.map { $0.isLowercase } ?? false
                #expect(!(words.count == 1 && line.count < 20 && continues && !line.hasSuffix(":")), "\(command): '\(line)' / '\(next)'")
                // ArgumentParser's own USAGE line is not wrapped; a long run without spaces cannot be.
                let text = line.trimmingCharacters(in: .whitespaces)
                #expect(line.count <= 80 || !text.contains(" ") || line.hasPrefix("USAGE:"), "\(command): over 80 columns: \(line)")
            }
        }
    }

    @Test func historyRefusesASecondUser() throws {
        let dir = Scratch()
        let result = try CLI.presence(["history", "--data", dir.path, "--user", "bob", "--user", "alice"])
        #expect(result.status == 64, "\(result.stdout)")
        #expect(result.stderr.contains("--user is given 2 times (bob, alice)"), "\(result.stderr)")
        #expect(result.stdout.isEmpty)
    }

    @Test func stateCountsTheUsersShownAlignsWideIdsAndSaysPluralsRight() throws {
        let dir = Scratch()
        let data = dir.file("data")
        let events = """
            {"type":"connect","user":"bob","conn":"c1","gateway":"gw-1","ts":"2024-01-15T09:00:00Z"}
            {"type":"disconnect","user":"bob","conn":"c1","gateway":"gw-1","ts":"2024-01-15T09:10:00Z"}
            {"type":"connect","user":"用户-1","conn":"c2","gateway":"gw-1","ts":"2024-01-15T09:20:00Z"}
            {"type":"connect","user":"🙂","conn":"c3","gateway":"gw-1","ts":"2024-01-15T09:30:00Z"}
            {"type":"disconnect","user":"🙂","conn":"c3","gateway":"gw-1","ts":"2024-01-15T09:40:00Z"}
            """
        let one = try CLI.presence(["ingest", "--data", data, "--quiet", "-"], input: Data(events.lines[0].utf8))
        #expect(one.stderr.hasPrefix("ingested 1 event in "), "\(one.stderr)")
        #expect(one.stderr.contains("log holds 1 event in "), "\(one.stderr)")
        let rest = try CLI.presence(["ingest", "--data", data, "--quiet", "-"], input: Data(events.lines.dropFirst().joined(separator: "\n").utf8))
        #expect(rest.stderr.hasPrefix("ingested 4 events in "), "\(rest.stderr)")
        let table = try CLI.presence(["state", "--data", data])
        // Sorted by the ids' bytes; the id column is 6 terminal columns wide (用 and 户 take two each).
        let expected = [
            "user    online  last seen                 connections",
            "bob     no      2024-01-15T09:10:00.000Z  0",
            "用户-1  yes     -" + String(repeating: " ", count: 25) + "1",
            "🙂      no      2024-01-15T09:40:00.000Z  0",
            "3 users shown; 1 of 3 online; state through offset 4",
        ]
        #expect(table.stdout == expected.joined(separator: "\n") + "\n", "\(table.stdout)")
        let some = try CLI.presence(["state", "--data", data, "--user", "bob", "--user", "zed"])
        #expect(some.stdout.hasSuffix("2 users shown; 0 of 2 online; state through offset 4\n"), "\(some.stdout)")
        let single = try CLI.presence(["state", "--data", data, "--user", "用户-1"])
        #expect(single.stdout.hasSuffix("1 user shown; 1 of 1 online; state through offset 4\n"), "\(single.stdout)")
        // A checkpoint newer than --at is skipped without a word: that is the normal case.
        #expect(try CLI.presence(["replay", "--data", data, "--checkpoint", "--quiet"]).status == 0)
        let past = try CLI.presence(["state", "--data", data, "--at", "2024-01-15T09:05:00Z"])
        #expect(past.status == 0 && past.stderr.isEmpty, "\(past.stderr)")
        #expect(past.stdout.hasSuffix("1 user shown at 2024-01-15T09:05:00.000Z; 1 of 1 online; state through offset 4\n"), "\(past.stdout)")
        // A real problem is still said, with the horizon written as everywhere else.
        let otherHorizon = try CLI.presence(["state", "--data", data, "--horizon", "48h"])
        #expect(otherHorizon.stderr.contains("written with another late-arrival horizon (24h)"), "\(otherHorizon.stderr)")
    }
}

/// `dump --to-offset`, `--limit` and `--follow`, against a log that grows while it is read.
@Suite(.serialized) struct DumpWindowTests {
    static func line(_ n: Int) -> String {
        #"{"type":"connect","user":"u\#(n)","conn":"c\#(n)","gateway":"gw-1","ts":"2024-01-15T09:00:\#(n < 10 ? "0" : "")\#(n)Z"}"#
    }

    @Test func toOffsetAndLimitBoundTheDump() throws {
        let dir = Scratch()
        let data = dir.file("data")
        try CLI.presence(["ingest", "--data", data, "--quiet", "-"], input: Data((0..<10).map(Self.line).joined(separator: "\n").utf8))
        let window = try CLI.presence(["dump", "--data", data, "--from-offset", "3", "--to-offset", "5", "--offsets"])
        #expect(window.stdout.lines.map { $0.prefix(12) } == ["{\"offset\":3,", "{\"offset\":4,", "{\"offset\":5,"], "\(window.stdout)")
        let limited = try CLI.presence(["dump", "--data", data, "--limit", "2"])
        #expect(limited.stdout.lines == [Self.line(0), Self.line(1)].map { $0.replacingOccurrences(of: "Z\"}", with: ".000Z\"}") }, "\(limited.stdout)")
        let filtered = try CLI.presence(["dump", "--data", data, "--user", "u7", "--user", "u8", "--limit", "1"])
        #expect(filtered.stdout.lines.count == 1 && filtered.stdout.contains("\"u7\""), "\(filtered.stdout)")
        #expect(try CLI.presence(["dump", "--data", data, "--limit", "0"]).status == 64)
        #expect(try CLI.presence(["dump", "--data", data, "--to-offset", "-2"]).stderr.contains("--to-offset must be a log offset ≥ 0, not -2"))
    }

    @Test func followPrintsEventsAsTheyAreAppended() throws {
        let dir = Scratch()
        let data = dir.file("data")
        try CLI.presence(["ingest", "--data", data, "--quiet", "-"], input: Data((0..<2).map(Self.line).joined(separator: "\n").utf8))
        // --follow with --limit 4 ends by itself once two more events have come.
        let follower = Process()
        follower.executableURL = URL(fileURLWithPath: CLI.presence)
        follower.arguments = ["dump", "--data", data, "--follow", "--limit", "4", "--offsets"]
        let out = Pipe()
        follower.standardOutput = out
        try follower.run()
        usleep(500_000)
        #expect(follower.isRunning, "--follow stopped at the end of the log")
        for n in 2..<5 {
            try CLI.presence(["ingest", "--data", data, "--quiet", "-"], input: Data(Self.line(n).utf8))
        }
        let deadline = Date().addingTimeInterval(10)
        while follower.isRunning && Date() < deadline { usleep(50_000) }
        if follower.isRunning { follower.terminate() }
        follower.waitUntilExit()
        #expect(follower.terminationStatus == 0)
        let lines = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).lines
        #expect(lines.map { $0.prefix(12) } == ["{\"offset\":0,", "{\"offset\":1,", "{\"offset\":2,", "{\"offset\":3,"], "\(lines)")
    }
}
