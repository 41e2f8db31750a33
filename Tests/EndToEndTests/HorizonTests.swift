import Foundation
import Testing

@Suite struct HorizonTests {
    @Test func eventsOlderThanTheHorizonAreRefusedAtIngestAndNeverApplied() throws {
        let dir = Scratch()
        let data = dir.file("data")
        let first = """
            {"type":"connect","user":"bob","conn":"b1","gateway":"gw-1","ts":"2024-01-15T09:00:00Z"}
            {"type":"connect","user":"amy","conn":"a1","gateway":"gw-1","ts":"2024-01-14T08:59:59Z"}
            {"type":"connect","user":"cid","conn":"c1","gateway":"gw-1","ts":"2024-01-14T09:00:00Z"}
            """
        let result = try CLI.presence(["ingest", "--data", data], input: Data(first.utf8))
        #expect(result.status == 2)
        #expect(result.stderr.contains("line 2: event time 2024-01-14T08:59:59.000Z is older than the late-arrival horizon: the newest event is 2024-01-15T09:00:00.000Z and the horizon is 24h; refused"), "\(result.stderr)")
        #expect(result.stderr.contains("ingested 2 events, rejected 1 line in"))
        // A later run knows the log's newest event time from disk.
        let later = #"{"type":"disconnect","user":"bob","conn":"b1","gateway":"gw-1","ts":"2024-01-13T00:00:00Z"}"#
        let second = try CLI.presence(["ingest", "--data", data], input: Data(later.utf8))
        #expect(second.status == 2)
        #expect(second.stderr.contains("older than the late-arrival horizon"))
        // The log keeps the horizon it was written with: another one is refused, and nothing is written.
        #expect(try String(contentsOfFile: data + "/horizon", encoding: .utf8) == "86400000\n")
        let other = try CLI.presence(["ingest", "--data", data, "--horizon", "3d"], input: Data(later.utf8))
        #expect(other.status == 64)  // bad arguments: the --horizon disagrees with the log's
        #expect(other.stderr.contains("was written with a late-arrival horizon of 24h; --horizon 72h would change which of its events count as late"), "\(other.stderr)")
        #expect(try CLI.presence(["dump", "--data", data]).stdout.lines.count == 2)
    }

    @Test func everyCommandFoldsWithTheHorizonTheLogWasWrittenWith() throws {
        let dir = Scratch()
        let data = dir.file("data")
        let events = """
            {"type":"connect","user":"bob","conn":"b1","gateway":"gw-1","ts":"2024-01-15T09:00:00Z"}
            {"type":"connect","user":"amy","conn":"a1","gateway":"gw-1","ts":"2024-01-14T08:59:59Z"}
            {"type":"disconnect","user":"bob","conn":"b1","gateway":"gw-1","ts":"2024-01-13T00:00:00Z"}
            """
        #expect(try CLI.presence(["ingest", "--data", data, "--horizon", "3d"], input: Data(events.utf8)).status == 0)
        // A later writer need not repeat it; replay, state and audit use it without being told.
        #expect(try CLI.presence(["ingest", "--data", data], input: Data(#"{"type":"connect","user":"cid","conn":"c1","gateway":"gw-1","ts":"2024-01-12T10:00:00Z"}"#.utf8)).status == 0)
        let replay = try CLI.presence(["replay", "--data", data])
        #expect(replay.status == 0 && !replay.stdout.contains("refused"), "\(replay.stdout)")
        let state = try CLI.presence(["state", "--data", data, "--user", "amy", "--format", "json"])
        #expect(state.stdout.contains(#""user":"amy","online":true"#), "\(state.stdout)")
        #expect(try CLI.presence(["audit", "--data", data]).stdout.contains("events refused (older than the late-arrival horizon): 0"))
        // Asking for another horizon is a "what if": 24 h would have refused three of them.
        let whatIf = try CLI.presence(["replay", "--data", data, "--horizon", "24h"])
        #expect(whatIf.stdout.contains("refused 3 events older than the late-arrival horizon (24h)"), "\(whatIf.stdout)")
    }
}
