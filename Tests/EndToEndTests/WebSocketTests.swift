import Foundation
import Testing

/// `GET /v1/ws` against a real server, with a real WebSocket client (Python `websockets`, driven by
/// tools/checks/ws_scenarios.py, which asserts each frame), and the node's own liveness: the
/// connections a killed run left open, SIGTERM, heartbeats and leases.
@Suite(.serialized) struct WebSocketTests {
    static let scenarios = CLI.repository.appendingPathComponent("tools/checks/ws_scenarios.py").path

    /// A server with a conversation of Alice and Bob.
    struct Chat {
        let server: RunningServer
        let conversation: String

        init(data: String, extra: [String] = []) throws {
            server = try RunningServer(data: data, extra: extra)
            let created = try server.request("POST", "/v1/conversations", token: try token("alice"),
                                             body: Data(#"{"members":["alice","bob"]}"#.utf8))
            #expect(created.status == 201, "\(created.body)")
            conversation = (try JSONSerialization.jsonObject(with: Data(created.body.utf8)) as? [String: Any])?["id"] as? String ?? ""
        }

        func arguments(_ scenario: String) throws -> [String] {
            [WebSocketTests.scenarios, scenario, "--port", "\(server.port)", "--conversation", conversation,
             "--alice", try token("alice"), "--bob", try token("bob"), "--carol", try token("carol"),
             "--gateway", try token("gw-9", gateway: true), "--expired", try token("alice", ttl: "1ms")]
        }

        /// Connects Bob's socket in a separate client process that holds it open; returns once the server
        /// has sent its ready frame (the connect is durable).
        func holdBobsSocket() throws -> Process {
            let holder = Process()
            holder.executableURL = URL(fileURLWithPath: CLI.python)
            holder.arguments = try arguments("hold")
            let out = Pipe()
            holder.standardOutput = out
            try holder.run()
            let ready = String(decoding: out.fileHandleForReading.availableData, as: UTF8.self)
            #expect(ready.contains("\"type\": \"ready\""), "\(ready)")
            return holder
        }

        /// Runs a scenario of ws_scenarios.py; it exits 0 when every assertion held.
        func run(_ scenario: String) throws {
            let result = try CLI.run(CLI.python, try arguments(scenario))
            #expect(result.status == 0, "\(scenario):\n\(result.stdout)\(result.stderr)")
            #expect(result.stdout.contains("passed: \(scenario)"))
        }
    }

    @Test func bobsFirstDeviceAndLastDeviceArePushedAndTheMiddleOneIsNot() throws {
        let dir = Scratch()
        let chat = try Chat(data: dir.file("data"))
        try chat.run("push")
        // Pushes and sockets are counted: Alice had a message and two presence pushes; every socket has closed.
        let metrics = try chat.server.request("GET", "/metrics", token: try token("ops")).body
        #expect(metrics.contains("presence_pushes_sent_total 3"), "\(metrics)")
        #expect(metrics.contains("presence_websockets_open 0"), "\(metrics)")
        #expect(chat.server.stop() == 0)
    }

    @Test func pushesContinueFromTheCursorInLogOrderWithoutGapsOrDuplicates() throws {
        let dir = Scratch()
        let chat = try Chat(data: dir.file("data"))
        try chat.run("cursor")
        #expect(chat.server.stop() == 0)
    }

    @Test func badTokensAndBadFramesAreRefusedClearly() throws {
        let dir = Scratch()
        let chat = try Chat(data: dir.file("data"))
        try chat.run("refused")
        // Without an upgrade, /v1/ws answers in JSON.
        #expect(try chat.server.request("GET", "/v1/ws").status == 401)
        #expect(try chat.server.request("GET", "/v1/ws", token: try token("alice")).status == 426)
        #expect(chat.server.stop() == 0)
    }

    /// The snapshot answered on the event loop (`SnapshotFastPath`) is the route's answer, pipelined
    /// requests stay in order, and errors keep the route's form.
    @Test func theSnapshotFastPathAnswersAsTheRouteDoes() throws {
        let dir = Scratch()
        let chat = try Chat(data: dir.file("data"))
        for n in 1...3 {
            #expect(try chat.server.request("POST", "/v1/conversations/\(chat.conversation)/messages", token: try token("alice"),
                                            body: Data(#"{"content":"message \#(n)"}"#.utf8)).status == 201)
        }
        try chat.run("snapshot")
        let metrics = try chat.server.request("GET", "/metrics", token: try token("ops")).body
        #expect(metrics.contains("presence_snapshot_fast_path_total"), "\(metrics)")
        #expect(chat.server.stop() == 0)
    }

    /// The same on a server with one event loop (`--event-loops 1`, as the snapshot benchmark runs it).
    @Test func theSnapshotFastPathAnswersAsTheRouteDoesOnOneEventLoop() throws {
        let dir = Scratch()
        let chat = try Chat(data: dir.file("data"), extra: ["--event-loops", "1"])
        for n in 1...3 {
            #expect(try chat.server.request("POST", "/v1/conversations/\(chat.conversation)/messages", token: try token("alice"),
                                            body: Data(#"{"content":"message \#(n)"}"#.utf8)).status == 201)
        }
        try chat.run("snapshot")
        #expect(chat.server.stop() == 0)
    }

    /// A client that stops reading while pushes pile up is cut off (close 4008) instead of being left
    /// with a gap; its disconnect is still appended once, and the server goes on.
    @Test func aClientThatStopsReadingIsCutOffNotLeftWithAGap() throws {
        let dir = Scratch()
        let data = dir.file("data")
        let chat = try Chat(data: data, extra: ["--push-queue-limit", "8"])
        try chat.run("slow")
        #expect(chat.server.stop() == 0)
        let dump = try CLI.presence(["dump", "--data", data]).stdout.lines
        let alice = dump.filter { $0.contains("\"user\":\"alice\"") }
        #expect(alice.filter { $0.contains("\"type\":\"connect\"") }.count == 2, "\(alice)")
        #expect(alice.filter { $0.contains("\"type\":\"disconnect\"") }.count == 2, "\(alice)")
    }

    /// Bob's socket is open when the node is killed with SIGKILL; on restart the node ends it with a
    /// gateway_down at its last logged time, so Bob does not stay online.
    @Test func aKilledNodeEndsTheSocketsItLeftOpenWhenItStartsAgain() throws {
        let dir = Scratch()
        let data = dir.file("data")
        let chat = try Chat(data: data)
        let holder = try chat.holdBobsSocket()
        defer { holder.terminate() }
        let online = try chat.server.request("GET", "/v1/users/bob/presence", token: try token("alice"))
        #expect(online.body.contains("\"online\":true"), "\(online.body)")
        kill(chat.server.process.processIdentifier, SIGKILL)
        chat.server.process.waitUntilExit()

        let again = try RunningServer(data: data)
        let after = try again.request("GET", "/v1/users/bob/presence", token: try token("alice"))
        #expect(after.body.contains("\"online\":false"), "\(after.body)")
        let dump = try CLI.presence(["dump", "--data", data]).stdout.lines
        let connect = dump.first { $0.contains("\"type\":\"connect\"") && $0.contains("\"user\":\"bob\"") } ?? ""
        let down = dump.first { $0.contains("\"type\":\"gateway_down\"") } ?? ""
        #expect(down.contains("\"gateway\":\"presence-node\""), "\(dump)")
        // Bob's connect is the node's last logged event: the gateway_down is at its time, and so is last_seen.
        let connectTime = connect.components(separatedBy: "\"ts\":").last ?? "?"
        #expect(down.hasSuffix("\"ts\":" + connectTime), "\(down) vs \(connect)")
        #expect(after.body.contains("\"last_seen\":" + connectTime.dropLast()), "\(after.body) vs \(connect)")
        // A second restart has nothing left to end.
        #expect(again.stop() == 0)
        let third = try RunningServer(data: data)
        #expect(third.stop() == 0)
        #expect(try CLI.presence(["dump", "--data", data]).stdout.lines.filter { $0.contains("gateway_down") }.count == 1)
    }

    @Test func sigtermEndsOpenSocketsWithDisconnects() throws {
        let dir = Scratch()
        let data = dir.file("data")
        let chat = try Chat(data: data)
        let holder = try chat.holdBobsSocket()
        defer { holder.terminate() }
        #expect(chat.server.stop() == 0)
        let dump = try CLI.presence(["dump", "--data", data]).stdout.lines
        #expect(dump.filter { $0.contains("\"type\":\"disconnect\"") && $0.contains("\"user\":\"bob\"") }.count == 1, "\(dump)")
        let state = try CLI.presence(["state", "--data", data, "--user", "bob", "--format", "json"]).stdout
        #expect(state.contains("\"online\":false"), "\(state)")
    }

    /// The node heartbeats for itself; a gateway silent for longer than its lease gets a gateway_down at
    /// its last heartbeat, which ends its connections. A gateway still beating keeps its users online.
    @Test func aSilentGatewayLosesItsLeaseAndItsUsersGoOffline() throws {
        let dir = Scratch()
        let data = dir.file("data")
        let server = try RunningServer(data: data, extra: ["--heartbeat-interval", "100ms", "--lease", "3s"])
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        // Each gateway posts its own events (a gateway's token speaks only for its gateway).
        let gw7 = """
            {"type":"connect","user":"carol","conn":"c1","gateway":"gw-7","ts":\(now - 11_000)}
            {"type":"heartbeat","gateway":"gw-7","ts":\(now - 10_000)}
            """
        let gw8 = """
            {"type":"connect","user":"dave","conn":"d1","gateway":"gw-8","ts":\(now - 11_000)}
            {"type":"heartbeat","gateway":"gw-8","ts":\(now + 60_000)}
            """
        #expect(try server.request("POST", "/v1/events", token: try token("gw-7", gateway: true), body: Data(gw7.utf8)).status == 200)
        #expect(try server.request("POST", "/v1/events", token: try token("gw-8", gateway: true), body: Data(gw8.utf8)).status == 200)
        var dump: [String] = []
        for _ in 0..<100 {
            dump = try CLI.presence(["dump", "--data", data]).stdout.lines
            if dump.contains(where: { $0.contains("gateway_down") }) { break }
            usleep(100_000)
        }
        #expect(dump.filter { $0.contains("gateway_down") } == ["{\"type\":\"gateway_down\",\"gateway\":\"gw-7\",\"ts\":\"\(Self.iso(now - 10_000))\"}"], "\(dump)")
        #expect(dump.contains { $0.contains("\"type\":\"heartbeat\",\"gateway\":\"presence-node\"") })
        #expect(server.stop() == 0)
        let state = try CLI.presence(["state", "--data", data, "--format", "json"]).stdout.lines
        #expect(state.contains(#"{"user":"carol","online":false,"last_seen":"\#(Self.iso(now - 10_000))","connections":0}"#), "\(state)")
        #expect(state.contains(#"{"user":"dave","online":true,"last_seen":null,"connections":1}"#), "\(state)")
        // The decision is in the log: a replay reaches the same state.
        #expect(try CLI.presence(["audit", "--data", data]).status == 0)
    }

    static func iso(_ ms: Int64) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        formatter.timeZone = TimeZone(identifier: "UTC")
        return formatter.string(from: Date(timeIntervalSince1970: Double(ms) / 1000))
    }
}

/// `{"op":"send",..}` over the socket, with a real client (tools/checks/ws_scenarios.py, "send").
@Suite(.serialized) struct WebSocketSendTests {
    @Test func messagesSentOverTheSocketAreAnsweredWithTheirSeqAndNotPostedTwice() throws {
        let dir = Scratch()
        let data = dir.file("data")
        let chat = try WebSocketTests.Chat(data: data)
        try chat.run("send")
        // The client ids are in the log: after a restart a retry is still answered with the first seq.
        #expect(chat.server.stop() == 0)
        let again = try RunningServer(data: data)
        let retried = try again.request("POST", "/v1/conversations/\(chat.conversation)/messages", token: try token("alice"),
                                        body: Data(#"{"content":"over the socket","client_id":"c-1"}"#.utf8))
        #expect(retried.status == 200 && retried.body.hasPrefix("{\"seq\":1,"), "\(retried.status) \(retried.body)")
        let fresh = try again.request("POST", "/v1/conversations/\(chat.conversation)/messages", token: try token("alice"),
                                      body: Data(#"{"content":"third","client_id":"c-3"}"#.utf8))
        #expect(fresh.status == 201 && fresh.body.hasPrefix("{\"seq\":3,"), "\(fresh.status) \(fresh.body)")
        #expect(again.stop() == 0)
    }
}
