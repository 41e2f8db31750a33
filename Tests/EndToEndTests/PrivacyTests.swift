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
}
