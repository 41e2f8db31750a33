import Foundation
import Presence
import Testing

@Suite struct ProjectionCLITests {
    static let events = """
        {"type":"connect","user":"bob","conn":"bob-phone-7f3a","gateway":"gw-1","ts":"2024-01-15T09:00:00.000Z"}
        {"type":"connect","user":"bob","conn":"bob-laptop-19c2","gateway":"gw-2","ts":"2024-01-15T09:10:00.000Z"}
        {"type":"connect","user":"alice","conn":"alice-web-0a1b","gateway":"gw-1","ts":"2024-01-15T09:20:00.000Z"}
        {"type":"disconnect","user":"bob","conn":"bob-laptop-19c2","gateway":"gw-2","ts":"2024-01-15T09:42:00.000Z"}
        {"type":"heartbeat","gateway":"gw-1","ts":"2024-01-15T09:44:00.000Z"}
        {"type":"gateway_down","gateway":"gw-1","ts":"2024-01-15T09:45:00.000Z"}
        {"type":"connect","user":"alice","conn":"alice-web-99ff","gateway":"gw-3","ts":"2024-01-15T09:46:00.000Z"}
        """

    func ingested() throws -> Scratch {
        let dir = Scratch()
        let result = try CLI.presence(["ingest", "--data", dir.file("data")], input: Data(Self.events.utf8))
        #expect(result.status == 0, "\(result.stderr)")
        return dir
    }

    @Test func gatewayEventsRoundTripThroughDump() throws {
        let dir = try ingested()
        let dump = try CLI.presence(["dump", "--data", dir.file("data")])
        #expect(dump.stdout.lines == Self.events.lines)
    }

    @Test func stateNowAndAtATime() throws {
        let dir = try ingested()
        let now = try CLI.presence(["state", "--data", dir.file("data"), "--format", "json"])
        #expect(now.status == 0, "\(now.stderr)")
        #expect(now.stdout.lines == [
            #"{"user":"alice","online":true,"last_seen":"2024-01-15T09:45:00.000Z","connections":1}"#,
            #"{"user":"bob","online":false,"last_seen":"2024-01-15T09:45:00.000Z","connections":0}"#,
        ])
        let before = try CLI.presence(["state", "--data", dir.file("data"), "--format", "json", "--at", "2024-01-15T09:30:00Z",
                                       "--user", "bob", "--user", "carol"])
        #expect(before.stdout.lines == [
            #"{"user":"bob","online":true,"last_seen":null,"connections":2}"#,
            #"{"user":"carol","online":false,"last_seen":null,"connections":0}"#,
        ])
    }

    @Test func historyListsSessionsWithTheirEndReason() throws {
        let dir = try ingested()
        let history = try CLI.presence(["history", "--data", dir.file("data"), "--user", "bob", "--format", "json"])
        #expect(history.stdout.lines == [
            #"{"conn":"bob-phone-7f3a","gateway":"gw-1","start":"2024-01-15T09:00:00.000Z","end":"2024-01-15T09:45:00.000Z","end_reason":"gateway_down","duration_ms":2700000}"#,
            #"{"conn":"bob-laptop-19c2","gateway":"gw-2","start":"2024-01-15T09:10:00.000Z","end":"2024-01-15T09:42:00.000Z","end_reason":"disconnect","duration_ms":1920000}"#,
        ])
        // "Was Bob online at 09:43?" Only his phone session overlaps.
        let at = try CLI.presence(["history", "--data", dir.file("data"), "--user", "bob", "--from", "2024-01-15T09:43:00Z",
                                   "--to", "2024-01-15T09:43:00Z", "--format", "json"])
        #expect(at.stdout.lines.count == 1)
        #expect(at.stdout.contains("bob-phone-7f3a"))
        // A user id the log cannot hold is a usage error, not an empty history.
        for command in ["history", "state"] {
            let empty = try CLI.presence([command, "--data", dir.file("data"), "--user", ""])
            #expect(empty.status == 64 && empty.stderr.contains("--user must not be empty"), "\(command): \(empty.stderr)")
        }
    }

    @Test func replaySummarizesTheFold() throws {
        let dir = try ingested()
        let replay = try CLI.presence(["replay", "--data", dir.file("data")])
        #expect(replay.status == 0)
        #expect(replay.stdout.contains("replayed 7 events (offsets 0-6)"))
        #expect(replay.stdout.contains("2 users, 1 online now, 1 connection open"))
        let partial = try CLI.presence(["replay", "--data", dir.file("data"), "--until-offset", "3"])
        #expect(partial.stdout.contains("replayed 3 events (offsets 0-2)"))
        #expect(partial.stdout.contains("2 users, 2 online now, 3 connections open"))
    }

    /// By default a second thread reads and decodes ahead of the fold; `--single-thread` does both on
    /// one. Over several segments and many batches, cut by an offset inside a batch or by a time, both
    /// must fold the same state.
    @Test func readingAheadFoldsWhatOneThreadFolds() throws {
        let dir = Scratch()
        let data = dir.file("data")
        let generated = try CLI.run(CLI.generator, ["--events", "60000", "--users", "2000", "--seed", "5"]).stdout
        let ingest = try CLI.presence(["ingest", "--data", data, "--segment-bytes", "64KiB", "--batch-records", "500"], input: Data(generated.utf8))
        #expect(ingest.status == 0, "\(ingest.stderr)")
        for cut in [[], ["--until-offset", "33333"], ["--until", "2024-01-15T01:00:00Z"]] {
            let ahead = try CLI.presence(["replay", "--data", data] + cut)
            let single = try CLI.presence(["replay", "--data", data, "--single-thread"] + cut)
            #expect(ahead.status == 0 && single.status == 0, "\(cut): \(ahead.stderr) \(single.stderr)")
            // Everything but the line with the elapsed time.
            let summary = { (text: String) in text.lines.filter { !$0.hasPrefix("replayed") } }
            #expect(summary(ahead.stdout) == summary(single.stdout), "\(cut)")
            #expect(summary(ahead.stdout).contains { $0.contains("users,") }, "\(ahead.stdout)")
        }
        let replayed = try CLI.presence(["replay", "--data", data, "--until-offset", "33333"])
        #expect(replayed.stdout.contains("replayed 33,333 events (offsets 0-33332)"), "\(replayed.stdout)")
        let segments = try FileManager.default.contentsOfDirectory(atPath: data + "/presence").filter { $0.hasSuffix(".log") }
        #expect(segments.count > 3, "the log should span several segments: \(segments)")
    }

    @Test func checkpointsMakeRestartsReplayOnlyTheTail() throws {
        let dir = Scratch()
        let data = dir.file("data")
        let generated = try CLI.run(CLI.generator, ["--events", "20000", "--users", "500", "--seed", "11"]).stdout.lines
        let first = generated.prefix(12_000).joined(separator: "\n"), rest = generated.dropFirst(12_000).joined(separator: "\n")
        #expect(try CLI.presence(["ingest", "--data", data], input: Data(first.utf8)).status == 0)
        let full = try CLI.presence(["replay", "--data", data, "--checkpoint"])
        #expect(full.status == 0, "\(full.stderr)")
        #expect(full.stdout.contains("checkpoint \(data)/checkpoints/presence-00000000000000012000.ckpt"))
        #expect(try CLI.presence(["ingest", "--data", data], input: Data(rest.utf8)).status == 0)
        let resumed = try CLI.presence(["replay", "--data", data, "--resume"])
        #expect(resumed.stdout.contains("resumed from \(data)/checkpoints/presence-00000000000000012000.ckpt (offset 12000)"))
        #expect(resumed.stdout.contains("replayed 8,000 events (offsets 12000-19999)"))
        // The state from checkpoint + tail is the state of a full fold.
        let fromCheckpoint = try CLI.presence(["state", "--data", data, "--format", "json"])
        let scratch = try CLI.presence(["state", "--data", data, "--format", "json", "--no-checkpoint"])
        #expect(fromCheckpoint.stdout == scratch.stdout)
        #expect(fromCheckpoint.stdout.lines.count > 100)
        // A damaged checkpoint is reported and skipped; the answer stays right.
        let path = data + "/checkpoints/presence-00000000000000012000.ckpt"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes[bytes.count / 2] ^= 0x01
        try bytes.write(to: URL(fileURLWithPath: path))
        let damaged = try CLI.presence(["state", "--data", data, "--format", "json"])
        #expect(damaged.stderr.contains("checkpoint skipped: \(path): checkpoint CRC does not match"))
        #expect(damaged.stdout == scratch.stdout)
    }

    @Test func gatewayEventsWithUserFieldsAreRejected() throws {
        let dir = Scratch()
        let line = #"{"type":"gateway_down","user":"bob","gateway":"gw-1","ts":1}"#
        let result = try CLI.presence(["ingest", "--data", dir.file("data")], input: Data(line.utf8))
        #expect(result.status == 2)
        #expect(result.stderr.contains("field \"user\" does not belong in a gateway_down event"))
    }
}
