import Foundation
import Testing

/// `POST /v1/admin/forget`: an erasure while the server serves, with real clients
/// (tools/checks/online_erasure.py: Bob's socket, Alice watching him, a gateway writing all along),
/// then the files checked as `presence forget`'s are: nothing of the user in the presence and privacy
/// logs or the checkpoints, every acknowledged event of the others kept, audit clean, and the state
/// the server saved at its stop equal to a fresh fold.
@Suite struct OnlineErasureTests {
    static let script = CLI.repository.appendingPathComponent("tools/checks/online_erasure.py").path
    /// Long enough that its bytes do not turn up by chance in compressed data.
    static let user = "bob-to-forget-7Q"

    static func roleToken(_ user: String, _ role: String) throws -> String {
        let result = try CLI.presence(["token", "--dev", "--user", user, "--\(role)"])
        #expect(result.status == 0, "\(result.stderr)")
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test func anAdminErasesAUserWhileTheServerServesAndWritesGoOn() throws {
        let dir = Scratch()
        let data = dir.file("data")
        let user = Self.user
        let server = try RunningServer(data: data)
        let created = try server.request("POST", "/v1/conversations", token: try token("alice"),
                                         body: Data(#"{"members":["alice","\#(user)"]}"#.utf8))
        #expect(created.status == 201, "\(created.body)")
        let conversation = (try JSONSerialization.jsonObject(with: Data(created.body.utf8)) as? [String: Any])?["id"] as? String ?? ""
        // A message of his stays: it is the conversation's history (out of the erasure's scope).
        let message = try server.request("POST", "/v1/conversations/\(conversation)/messages", token: try token(user),
                                         body: Data(#"{"content":"see you"}"#.utf8))
        #expect(message.status == 201, "\(message.body)")

        let result = try CLI.run(CLI.python, [Self.script, "--port", "\(server.port)", "--conversation", conversation, "--user", user,
                                              "--alice", try token("alice"), "--bob", try token(user),
                                              "--gateway", try token("gw-erase", gateway: true),
                                              "--admin", try Self.roleToken("admin-1", "admin"), "--operator", try Self.roleToken("ops", "operator")])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)\n\(server.errorOutput)")
        #expect(result.stdout.contains("passed: online erasure"), "\(result.stdout)")
        let acknowledged = Int(result.stdout.components(separatedBy: "acknowledged: ").last?.prefix(while: \.isNumber) ?? "") ?? -1
        #expect(acknowledged > 0, "\(result.stdout)")
        #expect(server.errorOutput.contains("erasure of a user complete"), "\(server.errorOutput)")
        #expect(server.stop() == 0)

        // Nothing of him in the presence and privacy logs or the snapshots; his message stays.
        let holding = try ErasureTests.filesHolding(user, in: data)
        #expect(!holding.contains { $0.hasPrefix("presence/") || $0.hasPrefix("privacy/") || $0.hasPrefix("checkpoints/") }, "\(holding)")
        #expect(holding.contains { $0.hasPrefix("messages/") }, "\(holding)")
        // Every acknowledged event of the writer is in the log.
        let dump = ErasureTests.lines(try CLI.presence(["dump", "--data", data]).stdout)
        #expect(dump.filter { $0.contains("\"user\":\"writer-") }.count == acknowledged)
        // The erasure is complete and accounts for every gap; the checkpoint the server wrote at its
        // stop (from the state it took after the erasure) equals a fresh fold.
        let audit = try CLI.presence(["audit", "--data", data])
        #expect(audit.status == 0, "\(audit.stdout)")
        #expect(audit.stdout.contains("erasures: 1 user erased") && audit.stdout.contains("every one named by an erasure record"), "\(audit.stdout)")
        #expect(audit.stdout.contains("equals a fresh fold at its offset"), "\(audit.stdout)")
        #expect(try CLI.presence(["state", "--data", data, "--format", "json"]).stdout
                == (try CLI.presence(["state", "--data", data, "--no-checkpoint", "--format", "json"]).stdout))
        #expect(try CLI.presence(["audit", "--data", data, "--privacy"]).status == 0)

        // The server starts again over the gaps; he is unknown, and a new connect of his is recorded anew.
        let again = try RunningServer(data: data)
        let gone = try again.request("GET", "/v1/users/\(user)/presence", token: try token("alice")).body
        #expect(gone.contains("\"online\":false") && gone.contains("\"last_seen\":null"), "\(gone)")
        let back = try again.request("POST", "/v1/events", token: try token("gw-erase", gateway: true),
                                     body: Data(#"{"type":"connect","user":"\#(user)","conn":"new-phone","gateway":"gw-erase","ts":\#(Int64(Date().timeIntervalSince1970 * 1000))}"#.utf8))
        #expect(back.status == 200, "\(back.body)")
        #expect(try again.request("GET", "/v1/users/\(user)/presence", token: try token("alice")).body.contains("\"online\":true"))
        #expect(again.stop() == 0)
    }
}
