import Foundation
import Testing

/// Privacy settings through the real server: the matrix of rules with real WebSocket and HTTP clients
/// (tools/checks/privacy_matrix.py, which restates the rule on its own and checks every answer against
/// it), `PUT /v1/me/privacy`'s validation, and settings kept across a restart.
@Suite(.serialized) struct PrivacyTests {
    static let matrix = CLI.repository.appendingPathComponent("tools/checks/privacy_matrix.py").path

    static func privacyLogBytes(_ data: String) -> [String: Data] {
        let directory = data + "/privacy"
        var files: [String: Data] = [:]
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] {
            files[name] = FileManager.default.contents(atPath: directory + "/" + name)
        }
        return files
    }

    @Test func everyCombinationOfRulesExceptionsReciprocityAndContactsShowsWhatTheRuleAllows() throws {
        let dir = Scratch()
        let data = dir.file("data")
        let server = try RunningServer(data: data)
        let users = try CLI.run(CLI.python, [Self.matrix, "users"]).stdout.split(separator: "\n").map(String.init)
        #expect(users.count == 27)
        var tokens: [String: String] = [:]
        for user in users { tokens[user] = try token(user) }
        let tokenFile = dir.file("tokens.json")
        try JSONSerialization.data(withJSONObject: tokens).write(to: URL(fileURLWithPath: tokenFile))
        let result = try CLI.run(CLI.python, [Self.matrix, "run", "--port", "\(server.port)", "--tokens", tokenFile,
                                              "--gateway", try token("gw-9", gateway: true)])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.contains("passed: run"))

        // The settings are events in their own log: a restart serves the same ones.
        var before: [String: String] = [:]
        for user in users { before[user] = try server.request("GET", "/v1/me/privacy", token: tokens[user]).body }
        #expect(server.stop() == 0)
        let again = try RunningServer(data: data)
        for user in users {
            #expect(try again.request("GET", "/v1/me/privacy", token: tokens[user]).body == before[user], "\(user)")
        }
        #expect(again.stop() == 0)
    }

    @Test func aBadSettingsBodyIsRefusedAndNothingIsStored() throws {
        let dir = Scratch()
        let data = dir.file("data")
        let server = try RunningServer(data: data)
        let alice = try token("alice")
        let fresh = try server.request("GET", "/v1/me/privacy", token: alice)
        #expect(fresh.body == #"{"last_seen":{"who":"contacts","except":[]},"online":{"who":"contacts","except":[]}}"#)
        let set = try server.request("PUT", "/v1/me/privacy", token: alice, body: Data(#"{"online":{"who":"everyone","except":["carol"]}}"#.utf8))
        #expect(set.status == 200 && set.body == #"{"last_seen":{"who":"contacts","except":[]},"online":{"who":"everyone","except":["carol"]}}"#,
                "\(set.body)")
        let stored = Self.privacyLogBytes(data)
        let tooMany = (0...1024).map { "\"u\($0)\"" }.joined(separator: ",")
        let refusals: [(String, String)] = [
            (#"{"online":{"who":"friends"}}"#, #"\"online\".\"who\" must be \"everyone\", \"contacts\" or \"nobody\""#),
            (#"{"last_seen":{"who":"nobody"},"typo":{}}"#, #"unknown key \"typo\""#),
            (#"{"online":{"who":"everyone","except":[\#(tooMany)]}}"#, "holds 1025 ids; at most 1024"),
            (#"{"online":{"who":"everyone","except":["\#(String(repeating: "x", count: 257))"]}}"#, "1 to 256 bytes"),
            (#"{"online":{"who":"everyone"}"#, "not valid JSON"),
            (#"["everyone"]"#, "must be a JSON object"),
            (#"{"online":{"who":"everyone","who":"nobody"}}"#, "not valid JSON"),
        ]
        for (body, reason) in refusals {
            let reply = try server.request("PUT", "/v1/me/privacy", token: alice, body: Data(body.utf8))
            #expect(reply.status == 400 && reply.body.contains(reason), "\(body.prefix(80)): \(reply.status) \(reply.body.prefix(300))")
        }
        #expect(try server.request("GET", "/v1/me/privacy", token: alice).body == set.body)
        #expect(Self.privacyLogBytes(data) == stored)
        // A gateway's token has no settings.
        #expect(try server.request("GET", "/v1/me/privacy", token: try token("gw-1", gateway: true)).status == 403)
        #expect(server.stop() == 0)
    }

    /// `presence state --viewer V --at T` answers what V could see at T from the logs alone (presence,
    /// settings in force, conversations by then), and `presence audit --privacy` checks the privacy log.
    @Test func stateForAViewerAtATimeAndThePrivacyAudit() throws {
        let dir = Scratch()
        let data = dir.file("data")
        let server = try RunningServer(data: data)
        let alice = try token("alice"), bob = try token("bob")
        func now() -> Int64 {
            usleep(20_000)
            defer { usleep(20_000) }
            return Int64(Date().timeIntervalSince1970 * 1000)
        }
        let seen = now() - 60_000
        let events = """
            {"type":"connect","user":"bob","conn":"p","gateway":"gw-1","ts":\(seen - 1000)}
            {"type":"disconnect","user":"bob","conn":"p","gateway":"gw-1","ts":\(seen)}
            """
        #expect(try server.request("POST", "/v1/events", token: try token("gw-1", gateway: true), body: Data(events.utf8)).status == 200)
        let beforeConversation = now()
        #expect(try server.request("POST", "/v1/conversations", token: alice, body: Data(#"{"members":["alice","bob"]}"#.utf8)).status == 201)
        let contacts = now()
        #expect(try server.request("PUT", "/v1/me/privacy", token: bob, body: Data(#"{"last_seen":{"who":"nobody"}}"#.utf8)).status == 200)
        let hidden = now()
        #expect(try server.request("PUT", "/v1/me/privacy", token: bob,
                                    body: Data(#"{"last_seen":{"who":"everyone","except":["carol"]}}"#.utf8)).status == 200)
        let shown = now()
        #expect(try server.request("PUT", "/v1/me/privacy", token: alice, body: Data(#"{"online":{"who":"nobody"}}"#.utf8)).status == 200)
        #expect(server.stop() == 0)

        func lastSeen(_ viewer: String, at time: Int64?) throws -> String {
            let result = try CLI.presence(["state", "--data", data, "--user", "bob", "--viewer", viewer, "--format", "json"]
                                          + (time.map { ["--at", "\($0)"] } ?? []))
            #expect(result.status == 0, "\(result.stderr)")
            return result.stdout
        }
        let iso = WebSocketTests.iso(seen)
        let unknown = #"{"user":"bob","online":false,"last_seen":null,"connections":0}"# + "\n"
        let known = #"{"user":"bob","online":false,"last_seen":"\#(iso)","connections":0}"# + "\n"
        #expect(try lastSeen("alice", at: beforeConversation) == unknown)  // not yet contacts
        #expect(try lastSeen("alice", at: contacts) == known)  // contacts, the default shows
        #expect(try lastSeen("alice", at: hidden) == unknown)  // bob chose nobody
        #expect(try lastSeen("alice", at: shown) == known)  // everyone, but carol
        #expect(try lastSeen("carol", at: shown) == unknown)  // excepted (and her own default hides bob from her)
        #expect(try lastSeen("alice", at: nil) == known)
        #expect(try lastSeen("bob", at: hidden) == known)  // one sees all of oneself
        let table = try CLI.presence(["state", "--data", data, "--viewer", "alice", "--at", "\(hidden)"]).stdout
        #expect(table.contains("as shown to alice at \(WebSocketTests.iso(hidden)) by the privacy settings then in force"), "\(table)")

        let audit = try CLI.presence(["audit", "--data", data, "--privacy"])
        #expect(audit.status == 0, "\(audit.stdout)\(audit.stderr)")
        #expect(audit.stdout.contains("privacy: 3 settings changes by 2 users: every record valid and in time order"), "\(audit.stdout)")
        // Alice's online is hidden from bob and, by reciprocity, bob's from her; both see each other's last seen.
        #expect(audit.stdout.contains("of 2 (viewer, contact) pairs, last seen hidden from 0, online from 2"), "\(audit.stdout)")
        let json = try CLI.presence(["audit", "--data", data, "--privacy", "--json"]).stdout
        #expect(json.contains(#""privacy":{"records":3,"users":2,"invalid":[],"out_of_order":[],"contact_pairs":2,"last_seen_hidden":0,"online_hidden":2}"#), "\(json)")
    }
}
