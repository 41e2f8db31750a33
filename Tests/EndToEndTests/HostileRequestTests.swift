import Foundation
import Testing

/// Hostile requests against a real server (issue 18), each refused with the right status or close code
/// while a well-behaved client on another connection is still served: tools/checks/hostile.py drives
/// them with a plain socket and Python `websockets`. What other suites already cover is not repeated
/// here: a token on another user's conversation (ConversationTests, ws_scenarios `refused`), bad and
/// expired tokens, a single oversized frame, two Content-Lengths (RoughEdgesTests).
@Suite(.serialized) struct HostileRequestTests {
    static let script = CLI.repository.appendingPathComponent("tools/checks/hostile.py").path

    func run(_ scenario: String, _ chat: WebSocketTests.Chat, extra: [String] = []) throws {
        let arguments = [Self.script] + Array(try chat.arguments(scenario).dropFirst()) + extra
        let result = try CLI.run(CLI.python, arguments)
        #expect(result.status == 0, "\(scenario):\n\(result.stdout)\(result.stderr)")
        #expect(result.stdout.contains("passed: \(scenario)"))
    }

    @Test func forgedTokensOfAnyAlgorithmAreRefusedEverywhere() throws {
        let dir = Scratch()
        let chat = try WebSocketTests.Chat(data: dir.file("data"))
        try run("tokens", chat)
        #expect(chat.server.stop() == 0)
    }

    @Test func oversizedRepeatedAndSmugglingHeadersAreRefusedAndTheConnectionClosed() throws {
        let dir = Scratch()
        let chat = try WebSocketTests.Chat(data: dir.file("data"))
        try run("http", chat)
        // Refusing a request is not a server error.
        #expect(!chat.server.errorOutput.contains(" error "), "\(chat.server.errorOutput)")
        #expect(chat.server.stop() == 0)
    }

    @Test func fragmentedAndHugeWebSocketMessages() throws {
        let dir = Scratch()
        let chat = try WebSocketTests.Chat(data: dir.file("data"))
        try run("frames", chat)
        #expect(chat.server.stop() == 0)
    }

    /// 20,000 opens of conversations that do not exist, on one socket: each answered not_found, and the
    /// server's resident memory grows by less than 32 MiB over them (nothing is kept for a missing id).
    @Test func manyOpensOfMissingConversationsAreRefusedAndKeepNothing() throws {
        let dir = Scratch()
        let chat = try WebSocketTests.Chat(data: dir.file("data"))
        let before = residentMiB(chat.server.process.processIdentifier)
        try run("missing", chat, extra: ["--count", "20000"])
        let after = residentMiB(chat.server.process.processIdentifier)
        #expect(after - before < 32, "resident \(before) MiB before, \(after) MiB after")
        #expect(chat.server.stop() == 0)
    }

    /// VmRSS of process `pid`, in MiB.
    func residentMiB(_ pid: Int32) -> Int {
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return (Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0) / 1024
    }
}
