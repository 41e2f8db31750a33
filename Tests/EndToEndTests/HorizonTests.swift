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
        #expect(result.stderr.contains("ingested 2 events, rejected 1 lines"))
        // A later run knows the log's newest event time from disk.
        let later = #"{"type":"disconnect","user":"bob","conn":"b1","gateway":"gw-1","ts":"2024-01-13T00:00:00Z"}"#
        let second = try CLI.presence(["ingest", "--data", data], input: Data(later.utf8))
        #expect(second.status == 2)
        #expect(second.stderr.contains("older than the late-arrival horizon"))
        let longer = try CLI.presence(["ingest", "--data", data, "--horizon", "3d"], input: Data(later.utf8))
        #expect(longer.status == 0)
        // The projector refuses what a 24 h horizon would have; with the horizon the log was written with, nothing.
        let replay24 = try CLI.presence(["replay", "--data", data])
        #expect(replay24.stdout.contains("refused 1 events older than the late-arrival horizon (24h)"), "\(replay24.stdout)")
        let replay3d = try CLI.presence(["replay", "--data", data, "--horizon", "3d"])
        #expect(!replay3d.stdout.contains("refused"))
    }
}
