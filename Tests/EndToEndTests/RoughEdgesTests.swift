import Foundation
import Testing

/// The server's answers at the edges, through the real binary: a port in use, malformed and HTTP/1.0
/// requests, bad JSON bodies, late events, and what /metrics says about all of them.
@Suite(.serialized) struct RoughEdgesTests {
    func body(_ json: String) -> Data { Data(json.utf8) }

    @Test func aPortInUseIsNamedAndNothingIsCreated() throws {
        let dir = Scratch()
        let first = try RunningServer(data: dir.file("first"))
        let fresh = dir.file("fresh")
        let taken = try CLI.presence(["serve", "--data", fresh, "--dev", "--port", "\(first.port)"])
        #expect(taken.status == 1, "\(taken.stderr)")
        #expect(taken.stderr.contains("error: cannot listen on 127.0.0.1:\(first.port): the address is already in use"), "\(taken.stderr)")
        #expect(!FileManager.default.fileExists(atPath: fresh), "the data directory was created")
        // An existing, empty data directory stays empty.
        try FileManager.default.createDirectory(atPath: fresh, withIntermediateDirectories: true)
        #expect(try CLI.presence(["serve", "--data", fresh, "--dev", "--port", "\(first.port)"]).status == 1)
        #expect(try FileManager.default.contentsOfDirectory(atPath: fresh).isEmpty)
        #expect(first.stop() == 0)
    }

    @Test func malformedRequestsAreNotLoggedAsServerErrors() throws {
        let dir = Scratch()
        let server = try RunningServer(data: dir.file("data"))
        for request in ["GARBAGE\r\n\r\n", "GET /health HTTP/1.1\nHost: x\n\n", "GET /health HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"] {
            let reply = try RawConnection(port: server.port).readAfterSending(request)
            #expect(reply.hasPrefix("HTTP/1.1 400"), "\(reply)")
        }
        usleep(300_000)
        #expect(try server.request("GET", "/health").status == 200)
        #expect(!server.errorOutput.contains("Error handling upgrade result"), "\(server.errorOutput)")
        #expect(!server.errorOutput.contains(" error "), "\(server.errorOutput)")
        #expect(server.stop() == 0)
    }

    @Test func anHTTP10RequestWithoutKeepAliveGetsItsAnswerAndTheConnectionCloses() throws {
        let dir = Scratch()
        let server = try RunningServer(data: dir.file("data"))
        let connection = try RawConnection(port: server.port)
        connection.send("GET /health HTTP/1.0\r\n\r\n")
        let (text, closed) = connection.readUntilClosed(seconds: 5)
        #expect(text.contains(" 200 ") && text.contains("\"status\":\"ok\""), "\(text)")
        #expect(text.lowercased().contains("connection: close"), "\(text)")
        #expect(closed, "the connection stayed open: \(text)")
        // With keep-alive it stays open for the next request.
        let kept = try RawConnection(port: server.port)
        kept.send("GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        let (keptText, keptClosed) = kept.readUntilClosed(seconds: 1)
        #expect(keptText.contains("\"status\":\"ok\"") && !keptClosed, "\(keptText)")
        #expect(server.stop() == 0)
    }

    @Test func messageBodiesFollowTheEventsJSONRules() throws {
        let dir = Scratch()
        let server = try RunningServer(data: dir.file("data"))
        let alice = try token("alice")
        let duplicateMembers = try server.request("POST", "/v1/conversations", token: alice,
                                                  body: body(#"{"members":["alice","bob"],"members":["alice","carol"]}"#))
        #expect(duplicateMembers.status == 400 && duplicateMembers.body.contains(#"field \"members\" appears twice"#), "\(duplicateMembers.body)")
        let created = try server.request("POST", "/v1/conversations", token: alice, body: body(#"{"members":["alice","bob"]}"#))
        let id = String(created.body.split(separator: "\"")[3])
        let cases: [(String, String)] = [
            (#"{"content":"\ud800"}"#, #"the body is not valid JSON: malformed JSON at byte 19: unpaired surrogate in \\u escape"#),
            (#"{"content":"a","content":"b"}"#, #"the body is not valid JSON: field \"content\" appears twice"#),
            (#"["hey"]"#, #"the body must be a JSON object, such as {\"content\":\"hey\"}"#),
            (#"{}"#, #"the body has no \"content\""#),
            (#"{"content":5}"#, #"\"content\" in the body has the wrong type"#),
        ]
        for (json, reason) in cases {
            let posted = try server.request("POST", "/v1/conversations/\(id)/messages", token: alice, body: body(json))
            #expect(posted.status == 400 && posted.body.contains(reason), "\(json): \(posted.body)")
        }
        // A byte that is not UTF-8.
        let notUTF8 = try server.request("POST", "/v1/conversations/\(id)/messages", token: alice,
                                         body: Data([123, 34, 99, 111, 110, 116, 101, 110, 116, 34, 58, 34, 0xFF, 34, 125]))
        #expect(notUTF8.status == 400 && notUTF8.body.contains("the body is not valid JSON: not valid UTF-8"), "\(notUTF8.body)")
        // An event line with a field twice is refused by the same rule and words.
        let event = #"{"type":"heartbeat","gateway":"gw-1","gateway":"gw-1","ts":1}"#
        let refused = try server.request("POST", "/v1/events", token: try token("gw-1", gateway: true), body: body(event))
        #expect(refused.status == 400 && refused.body.contains(#"field \"gateway\" appears twice"#), "\(refused.body)")
        let snapshot = try server.request("GET", "/v1/conversations/\(id)", token: alice)
        #expect(snapshot.body.contains("\"messages\":[]"), "\(snapshot.body)")
        #expect(server.stop() == 0)
    }

    @Test func anEventTooOldForARunningServerSaysWhoseClockAndWhatToDo() throws {
        let dir = Scratch()
        let server = try RunningServer(data: dir.file("data"), extra: ["--heartbeat-interval", "100ms", "--lease", "10s"])
        for _ in 0..<50 where try server.request("GET", "/health").body.contains("\"log_end_offset\":0") { usleep(100_000) }
        let old = #"{"type":"connect","user":"x","conn":"c","gateway":"gw-1","ts":"2024-01-15T09:00:00Z"}"#
        let refused = try server.request("POST", "/v1/events", token: try token("gw-1", gateway: true), body: body(old))
        #expect(refused.status == 400, "\(refused.body)")
        #expect(refused.body.contains("the newest event time in this server's log is"), "\(refused.body)")
        #expect(refused.body.contains("the node's own heartbeats keep it at the server's clock"), "\(refused.body)")
        #expect(refused.body.contains("`presence ingest` it into the data directory before `presence serve`"), "\(refused.body)")
        #expect(server.stop() == 0)
    }

    @Test func metricsHaveHelpAndCountEveryRequestOnce() throws {
        let dir = Scratch()
        let server = try RunningServer(data: dir.file("data"))
        let events = #"{"type":"connect","user":"bob","conn":"c1","gateway":"gw-1","ts":"2024-01-15T09:00:00Z"}"#
        #expect(try server.request("POST", "/v1/events", token: try token("gw-1", gateway: true), body: body(events)).status == 200)
        #expect(try server.request("GET", "/v1/users/bob/presence").status == 401)
        let metrics = try server.request("GET", "/metrics", token: try token("ops")).body
        for name in ["hb_requests", "http_server_request_duration", "hb_request_errors", "presence_events_appended_total",
                     "presence_commit_seconds", "presence_websockets_open", "presence_snapshot_fast_path_total"] {
            #expect(metrics.contains("# HELP \(name) "), "no HELP for \(name):\n\(metrics)")
        }
        let lines = metrics.components(separatedBy: "\n")
        // Errors only for error statuses.
        #expect(!lines.contains { $0.hasPrefix("hb_request_errors{") && $0.contains("error_type=\"2") }, "\(metrics)")
        #expect(lines.contains { $0.hasPrefix("hb_request_errors{") && $0.contains("error_type=\"401\"") && $0.hasSuffix(" 1") }, "\(metrics)")
        // The 401 is counted and timed, once each.
        #expect(lines.contains { $0.hasPrefix("hb_requests{") && $0.contains("status_code=\"401\"") && $0.hasSuffix(" 1") }, "\(metrics)")
        #expect(lines.contains { $0.hasPrefix("http_server_request_duration_count{") && $0.contains("status_code=\"401\"") && $0.hasSuffix(" 1") }, "\(metrics)")
        #expect(lines.contains { $0.hasPrefix("http_server_request_duration_count{") && $0.contains("status_code=\"200\"") && $0.contains("/v1/events") && $0.hasSuffix(" 1") }, "\(metrics)")
        #expect(server.stop() == 0)
    }
}
