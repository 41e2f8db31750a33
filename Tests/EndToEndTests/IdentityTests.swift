import Foundation
import Testing

/// Ids as users have them (non-ASCII, spaces, slashes, the longest allowed) through the real server: in
/// paths, in tokens, in the log, and back out through `dump` and in again through `ingest`.
@Suite(.serialized) struct IdentityTests {
    /// Every byte outside the URL's unreserved characters as %XX.
    static func encoded(_ text: String) -> String {
        text.utf8.map { byte in
            switch byte {
            case 48...57, 65...90, 97...122, 45, 46, 95, 126: String(UnicodeScalar(byte))
            default: "%" + String(byte, radix: 16, uppercase: true).leftPadded(2)
            }
        }.joined()
    }

    /// A GET on one fresh connection, spoken byte for byte (so the path is exactly what is given).
    func get(_ server: RunningServer, _ path: String, token: String) throws -> (status: Int, body: String) {
        let reply = try RawConnection(port: server.port).exchange("GET \(path) HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(token)\r\n\r\n")
        return (reply.status, reply.body)
    }

    @Test func pathParametersArePercentDecodedEverywhere() throws {
        let dir = Scratch()
        let server = try RunningServer(data: dir.file("data"))
        let users = ["🙂", "用户-1", "a b", "a/b"]
        var tokens: [String: String] = [:]
        for user in users { tokens[user] = try token(user) }
        let smile = tokens["🙂"] ?? ""
        let created = try server.request("POST", "/v1/conversations", token: smile,
                                         body: Data(#"{"members":["🙂","用户-1","a b","a/b"]}"#.utf8))
        #expect(created.status == 201, "\(created.body)")
        let id = String(created.body.split(separator: "\"")[3])
        let connect = #"{"type":"connect","user":"用户-1","conn":"手机","gateway":"gw-1","ts":"2024-01-15T09:00:00Z"}"#
        #expect(try server.request("POST", "/v1/events", token: try token("gw-1", gateway: true), body: Data(connect.utf8)).status == 200)
        // A user asking about themselves, and about each other member.
        for asker in users {
            for user in users {
                let reply = try get(server, "/v1/users/\(Self.encoded(user))/presence", token: tokens[asker] ?? "")
                #expect(reply.status == 200, "\(asker) about \(user): \(reply.body)")
                let object = try JSONSerialization.jsonObject(with: Data(reply.body.utf8)) as? [String: Any]
                #expect(object?["user"] as? String == user, "\(reply.body)")
                #expect(object?["online"] as? Bool == (user == "用户-1"), "\(reply.body)")
            }
        }
        // Someone outside the conversation (default settings: contacts) reads as never seen, by their decoded id.
        let stranger = try get(server, "/v1/users/\(Self.encoded("🙃"))/presence", token: smile)
        #expect(stranger.status == 200 && stranger.body.hasPrefix(#"{"user":"🙃","online":false,"last_seen":null,"connections":0,"#),
                "\(stranger.body)")
        let invalid = try get(server, "/v1/users/%FF/presence", token: smile)
        #expect(invalid.status == 400 && invalid.body.contains("not valid percent-encoded UTF-8"), "\(invalid.body)")
        // Conversation ids: every conversation route decodes them (the snapshot's fast path hands an
        // encoded id to the route).
        let encodedID = "%63%6F" + id.dropFirst(2)  // "co", encoded
        #expect(id.hasPrefix("co"))
        for _ in 0..<2 {
            let snapshot = try get(server, "/v1/conversations/\(encodedID)", token: smile)
            #expect(snapshot.status == 200 && snapshot.body.hasPrefix("{\"conversation_id\":\"\(id)\""), "\(snapshot.body)")
        }
        let posted = try server.request("POST", "/v1/conversations/\(encodedID)/messages", token: tokens["a/b"],
                                        body: Data(#"{"content":"hi from a/b"}"#.utf8))
        #expect(posted.status == 201, "\(posted.body)")
        let afterPost = try get(server, "/v1/conversations/\(encodedID)?after_seq=0", token: tokens["a b"] ?? "")
        #expect(afterPost.status == 200 && afterPost.body.contains("\"sender\":\"a/b\""), "\(afterPost.body)")
        let unknown = try get(server, "/v1/conversations/\(Self.encoded("🙂 x"))", token: smile)
        #expect(unknown.status == 404 && unknown.body.contains("no conversation '🙂 x'"), "\(unknown.body)")
        #expect(server.stop() == 0)
    }

    @Test func tokensForIdsTheLogCannotHoldAreNeitherMintedNorAccepted() throws {
        let long = String(repeating: "x", count: 300)
        let minted = try CLI.presence(["token", "--dev", "--user", long])
        #expect(minted.status != 0 && minted.stdout.isEmpty)
        #expect(minted.stderr.contains("its subject (sub) is 300 bytes; user ids and gateway names are 1 to 256 bytes"), "\(minted.stderr)")
        #expect(try CLI.presence(["token", "--dev", "--user", ""]).status != 0)
        #expect(try CLI.presence(["token", "--dev", "--user", String(repeating: "x", count: 256)]).status == 0)
        // A token minted elsewhere with the same secret still cannot bring such an id in.
        let forged = try Self.hs256(subject: long)
        let dir = Scratch()
        let server = try RunningServer(data: dir.file("data"))
        let http = try server.request("GET", "/v1/users/x/presence", token: forged)
        #expect(http.status == 401 && http.body.contains("its subject (sub) is 300 bytes"), "\(http.body)")
        let socket = try RawConnection(port: server.port)
        socket.send(RawConnection.webSocketUpgrade(token: forged))
        let frames = socket.read(until: "(sub) is 300 bytes")
        #expect(frames.contains("its subject (sub) is 300 bytes"), "\(frames)")
        #expect(!frames.contains("\"type\":\"ready\""), "\(frames)")
        socket.disconnect()
        #expect(try server.request("GET", "/health").body.contains("\"log_end_offset\":0"))
        #expect(server.stop() == 0)
    }

    @Test func whatTheServerLogsDumpsAndIngestsAgainTheSame() throws {
        let dir = Scratch()
        let data = dir.file("data")
        let server = try RunningServer(data: data, extra: ["--heartbeat-interval", "200ms", "--lease", "10s"])
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let longest = String(repeating: "é", count: 128)  // 256 bytes
        var lines: [String] = []
        for (index, user) in ["🙂", "用户-1", "a b", "a/b", "q\\\"uote", longest].enumerated() {
            lines.append(#"{"type":"connect","user":"\#(user)","conn":"c\#(index)-📱","gateway":"gw-é","ts":\#(now + Int64(index)),"id":"e-\#(index)"}"#)
        }
        lines.append(#"{"type":"disconnect","user":"a b","conn":"c2-📱","gateway":"gw-é","ts":\#(now + 10)}"#)
        lines.append(#"{"type":"heartbeat","gateway":"gw-é","ts":\#(now + 11)}"#)
        let posted = try server.request("POST", "/v1/events", token: try token("gw-é", gateway: true), body: Data(lines.joined(separator: "\n").utf8))
        #expect(posted.status == 200, "\(posted.body)")
        // A user id that came in through a token: the socket's connect and disconnect carry it.
        let socket = try RawConnection(port: server.port)
        socket.send(RawConnection.webSocketUpgrade(token: try token(longest)))
        #expect(socket.read(until: "\"type\":\"ready\"").contains("\"type\":\"ready\""))
        usleep(500_000)  // a few of the node's heartbeats
        socket.disconnect()  // its disconnect is logged too
        usleep(200_000)
        #expect(server.stop() == 0)

        let dump = try CLI.presence(["dump", "--data", data])
        #expect(dump.status == 0, "\(dump.stderr)")
        #expect(dump.stdout.contains("\"user\":\"\(longest)\",\"conn\":\"ws-"), "\(dump.stdout)")
        #expect(dump.stdout.contains("\"type\":\"heartbeat\",\"gateway\":\"presence-node\""))
        let again = try CLI.presence(["ingest", "--data", dir.file("copy"), "--quiet", "-"], input: Data(dump.stdout.utf8))
        #expect(again.status == 0, "\(again.stderr)")
        let copy = try CLI.presence(["dump", "--data", dir.file("copy")])
        #expect(copy.stdout == dump.stdout)
        #expect(dump.stdout.lines.count >= lines.count + 3)
    }

    /// An HS256 token signed with the development secret, made without `presence token` (which refuses
    /// to mint one for an id out of limits), by Python's standard library.
    static func hs256(subject: String) throws -> String {
        let script = """
            import base64, hashlib, hmac, json, sys, time
            def part(raw): return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
            head = part(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
            body = part(json.dumps({"sub": sys.argv[1], "exp": int(time.time()) + 3600, "role": "user"}).encode())
            signature = hmac.new(b"presencelog-development-secret-do-not-use-in-production", (head + "." + body).encode(), hashlib.sha256).digest()
            print(head + "." + body + "." + part(signature))
            """
        let result = try CLI.run("/usr/bin/python3", ["-c", script, subject])
        #expect(result.status == 0, "\(result.stderr)")
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

extension String {
    func leftPadded(_ width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}
