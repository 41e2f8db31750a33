import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
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

/// Acknowledged means applied: the late-arrival check and the append are one step on the server's
/// commit thread, so of two concurrent requests straddling the horizon, the one committed second is
/// refused whole if the first moved the newest event time past it, and never written.
@Suite struct ConcurrentHorizonTests {
    @Test func concurrentPostersStraddlingTheHorizonGetOnlyAcknowledgementsTheFoldApplies() throws {
        let dir = Scratch()
        let data = dir.file("data")
        let server = try RunningServer(data: data, extra: ["--horizon", "1m"])
        let gateway = try token("gw-1", gateway: true)
        let start: Int64 = 1_705_309_200_000  // 2024-01-15T09:00:00Z
        func line(_ user: String, _ ts: Int64) -> Data {
            Data(#"{"type":"connect","user":"\#(user)","conn":"c","gateway":"gw-1","ts":\#(ts)}"#.utf8)
        }
        #expect(try server.request("POST", "/v1/events", token: gateway, body: line("first", start)).status == 200)
        var newest = start
        let acknowledged = Locked(0), refused = Locked(0)
        for round in 0..<60 {
            // Both pass a check against `newest`; once the first is written, the second is 30 s behind
            // the newest minus the horizon.
            let bodies = [line("ahead-\(round)", newest + 90_000), line("behind-\(round)", newest - 30_000)]
            let port = server.port
            DispatchQueue.concurrentPerform(iterations: 2) { i in
                let reply = postEvents(port: port, token: gateway, body: bodies[i])
                if reply.status == 200 {
                    acknowledged.update { $0 += 1 }
                } else {
                    #expect(i == 1 && reply.status == 400 && reply.body.contains("older than the late-arrival horizon"), "\(reply.status) \(reply.body)")
                    refused.update { $0 += 1 }
                }
            }
            newest += 90_000
        }
        #expect(server.stop() == 0)
        // Every acknowledged event is in the log, and the fold applies every event of the log.
        let written = try CLI.presence(["dump", "--data", data]).stdout.lines.filter { !$0.contains("\"heartbeat\"") && !$0.contains("\"gateway_down\"") }
        #expect(written.count == 1 + acknowledged.get(), "\(written.count) events written, \(acknowledged.get()) acknowledged")
        let audit = try CLI.presence(["audit", "--data", data])
        #expect(audit.stdout.contains("events refused (older than the late-arrival horizon): 0"), "\(audit.stdout)")
        #expect(acknowledged.get() + refused.get() == 120 && acknowledged.get() >= 60)
    }
}
