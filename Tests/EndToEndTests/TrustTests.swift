import Foundation
import Testing

/// What each kind of token may do, through the real server: a gateway token posts events for its own
/// gateway and nothing else; the node's own gateway name is reserved; the secret has one length rule;
/// and a checkpoint is never written under a running server.
@Suite(.serialized) struct TrustTests {
    func body(_ json: String) -> Data { Data(json.utf8) }

    @Test func aGatewayTokenMayPostEventsAndNothingElse() throws {
        let dir = Scratch()
        let server = try RunningServer(data: dir.file("data"))
        let gateway = try token("gw-1", gateway: true), alice = try token("alice")
        let created = try server.request("POST", "/v1/conversations", token: gateway, body: body(#"{"members":["gw-1","bob"]}"#))
        #expect(created.status == 403 && created.body.contains("\"code\":\"forbidden\"") && created.body.contains("may only post events"), "\(created.body)")
        // A user may name anyone as a member, a user called gw-1 too: that gives the gateway's token nothing.
        let shared = try server.request("POST", "/v1/conversations", token: alice, body: body(#"{"members":["alice","gw-1"]}"#))
        #expect(shared.status == 201, "\(shared.body)")
        let id = String(shared.body.split(separator: "\"")[3])
        // Posting events puts the gateway's token in the verified-token cache, which the snapshot's fast
        // path reads: it must hand a gateway's request to the route, which refuses it.
        let events = #"{"type":"connect","user":"bob","conn":"bob-phone","gateway":"gw-1","ts":"2024-01-15T09:00:00Z"}"#
        #expect(try server.request("POST", "/v1/events", token: gateway, body: body(events)).status == 200)
        for _ in 0..<2 {
            let snapshot = try server.request("GET", "/v1/conversations/\(id)", token: gateway)
            #expect(snapshot.status == 403 && snapshot.body.contains("may only post events"), "\(snapshot.status) \(snapshot.body)")
            let raw = try RawConnection(port: server.port).exchange("GET /v1/conversations/\(id) HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(gateway)\r\n\r\n")
            #expect(raw.status == 403, "\(raw.head) \(raw.body)")
        }
        let posted = try server.request("POST", "/v1/conversations/\(id)/messages", token: gateway, body: body(#"{"content":"hi"}"#))
        #expect(posted.status == 403, "\(posted.body)")
        for user in ["bob", "gw-1", "alice"] {
            let presence = try server.request("GET", "/v1/users/\(user)/presence", token: gateway)
            #expect(presence.status == 403 && presence.body.contains("\"code\":\"forbidden\""), "\(user): \(presence.body)")
        }
        // User tokens may not post events.
        let userPosting = try server.request("POST", "/v1/events", token: alice, body: body(events))
        #expect(userPosting.status == 403 && userPosting.body.contains("only a gateway token may post events"), "\(userPosting.body)")
        // Nothing the gateway tried reached the conversation; the member's own snapshot still works.
        let snapshot = try server.request("GET", "/v1/conversations/\(id)", token: alice)
        #expect(snapshot.status == 200 && snapshot.body.contains("\"messages\":[]"), "\(snapshot.body)")
        #expect(server.stop() == 0)
    }

    @Test func aGatewayTokenSpeaksOnlyForItsOwnGateway() throws {
        let dir = Scratch()
        let server = try RunningServer(data: dir.file("data"))
        let gateway = try token("gw-1", gateway: true)
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let mixed = """
            {"type":"connect","user":"bob","conn":"bob-phone","gateway":"gw-1","ts":\(now)}
            {"type":"gateway_down","gateway":"presence-node","ts":\(now)}
            {"type":"disconnect","user":"carol","conn":"c1","gateway":"gw-2","ts":\(now)}
            {"type":"heartbeat","gateway":"gw-1","ts":\(now)}
            """
        let refused = try server.request("POST", "/v1/events", token: gateway, body: body(mixed))
        #expect(refused.status == 403, "\(refused.body)")
        #expect(refused.body.contains("\"message\":\"2 lines name another gateway than the token's; nothing was written\""), "\(refused.body)")
        #expect(refused.body.contains(#"{"line":2,"reason":"names gateway \"presence-node\"; this token is for gateway \"gw-1\""}"#), "\(refused.body)")
        #expect(refused.body.contains(#"{"line":3,"reason":"names gateway \"gw-2\"; this token is for gateway \"gw-1\""}"#), "\(refused.body)")
        #expect(try server.request("GET", "/health").body.contains("\"log_end_offset\":0"))
        // A token named like the node may not post at all, not even events of its own name.
        let node = try token("presence-node", gateway: true)
        let own = try server.request("POST", "/v1/events", token: node, body: body(#"{"type":"heartbeat","gateway":"presence-node","ts":\#(now)}"#))
        #expect(own.status == 403 && own.body.contains("'presence-node' is this node's own gateway name (--node)"), "\(own.body)")
        #expect(try server.request("GET", "/health").body.contains("\"log_end_offset\":0"))
        // Its own lines go in.
        let good = mixed.lines.filter { $0.contains("\"gw-1\"") }.joined(separator: "\n")
        #expect(try server.request("POST", "/v1/events", token: gateway, body: body(good)).body == "{\"first_offset\":0,\"last_offset\":1}")
        #expect(server.stop() == 0)
        // The reserved name is the node's --node, whatever it is.
        let renamed = try RunningServer(data: dir.file("other"), extra: ["--node", "edge-a"])
        let edge = try renamed.request("POST", "/v1/events", token: try token("edge-a", gateway: true),
                                       body: body(#"{"type":"heartbeat","gateway":"edge-a","ts":\#(now)}"#))
        #expect(edge.status == 403 && edge.body.contains("'edge-a' is this node's own gateway name"), "\(edge.body)")
        #expect(try renamed.request("POST", "/v1/events", token: try token("presence-node", gateway: true),
                                    body: body(#"{"type":"heartbeat","gateway":"presence-node","ts":\#(now)}"#)).status == 200)
        #expect(renamed.stop() == 0)
    }

    @Test func aShortSecretIsRefusedFromTheEnvironmentAsFromAFile() throws {
        let dir = Scratch()
        let short = ["PRESENCE_TOKEN_SECRET": "abc"]
        let minted = try CLI.presence(["token", "--user", "bob"], environment: short)
        #expect(minted.status != 0 && minted.stdout.isEmpty, "\(minted.stdout)")
        #expect(minted.stderr.contains("error: the token secret in PRESENCE_TOKEN_SECRET is shorter than 32 bytes"), "\(minted.stderr)")
        let served = try CLI.presence(["serve", "--data", dir.file("data"), "--port", "0"], environment: short)
        #expect(served.status != 0)
        #expect(served.stderr.contains("error: the token secret in PRESENCE_TOKEN_SECRET is shorter than 32 bytes"), "\(served.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.file("data")))
        try "abc\n".write(toFile: dir.file("secret"), atomically: true, encoding: .utf8)
        let fromFile = try CLI.presence(["token", "--user", "bob", "--secret-file", dir.file("secret")])
        #expect(fromFile.stderr.contains("error: the token secret in '\(dir.file("secret"))' is shorter than 32 bytes"), "\(fromFile.stderr)")
        #expect(fromFile.status == minted.status)
        // Thirty-one bytes are not enough (HS256's key is at least its hash's 32), thirty-two are.
        let short31 = try CLI.presence(["token", "--user", "bob"], environment: ["PRESENCE_TOKEN_SECRET": String(repeating: "k", count: 31)])
        #expect(short31.status == minted.status && short31.stderr.contains("shorter than 32 bytes"), "\(short31.stderr)")
        let enough = try CLI.presence(["token", "--user", "bob"], environment: ["PRESENCE_TOKEN_SECRET": String(repeating: "k", count: 32)])
        #expect(enough.status == 0 && enough.stdout.split(separator: ".").count == 3, "\(enough.stderr)")
    }

    @Test func replayRefusesToWriteACheckpointUnderARunningServer() throws {
        let dir = Scratch()
        let data = dir.file("data")
        let server = try RunningServer(data: data)
        let events = #"{"type":"connect","user":"bob","conn":"bob-phone","gateway":"gw-1","ts":"2024-01-15T09:00:00Z"}"#
        #expect(try server.request("POST", "/v1/events", token: try token("gw-1", gateway: true), body: body(events)).status == 200)
        let refused = try CLI.presence(["replay", "--data", data, "--checkpoint", "--quiet"])
        #expect(refused.status == 1, "\(refused.stdout)\(refused.stderr)")
        #expect(refused.stderr.contains("in use by another process (pid \(server.process.processIdentifier))"), "\(refused.stderr)")
        #expect(refused.stderr.contains("replay without --checkpoint"), "\(refused.stderr)")
        #expect(refused.stdout.isEmpty, "\(refused.stdout)")
        let checkpoints = (try? FileManager.default.contentsOfDirectory(atPath: data + "/checkpoints")) ?? []
        #expect(checkpoints.isEmpty, "\(checkpoints)")
        // Reading beside the server is still fine, and once it has stopped the checkpoint can be written.
        #expect(try CLI.presence(["replay", "--data", data, "--quiet"]).status == 0)
        #expect(server.stop() == 0)
        let written = try CLI.presence(["replay", "--data", data, "--checkpoint", "--quiet"])
        #expect(written.status == 0 && written.stdout.contains("checkpoint "), "\(written.stderr)")
    }
}
