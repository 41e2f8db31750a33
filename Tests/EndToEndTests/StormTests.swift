import Foundation
import Testing

/// Clients that misbehave (issue 18), at a small size: tools/storm.py starts its own `presence serve`
/// (this build's) and drives real WebSocket clients. The reconnect storm: clients holding their cursors
/// reconnect within a second after a restart (SIGTERM, then SIGKILL) and every one is pushed to after.
/// Slow consumers: clients that stop reading are cut off with 4008, the server's memory (and the
/// kernel's buffers for them) stays bounded, and each, reconnecting with its cursor, has every change
/// once, in order. Figures at the full sizes are in RELIABILITY.md; this asserts the checks only.
@Suite(.serialized) struct StormTests {
    static let script = CLI.repository.appendingPathComponent("tools/storm.py").path

    func storm(_ arguments: [String]) throws -> String {
        let result = try CLI.run(CLI.python, [Self.script, "--bin", CLI.presence, "--timeout", "60"] + arguments)
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.contains("storm.py: every check passed"), "\(result.stdout)")
        return result.stdout
    }

    @Test func aReconnectStormAfterARestartBringsEveryClientBackAndPushesReachThemAll() throws {
        let out = try storm(["--phase", "storm", "--clients", "300"])
        #expect(out.contains("passed: the server exits 0 on SIGTERM with 300 sockets open"))
        #expect(out.contains("passed: every one of 300 clients reconnected and opened its conversation with its cursor"))
        #expect(out.contains("passed: every client got the push after the storm"))
    }

    @Test func aReconnectStormAfterAKill9() throws {
        let out = try storm(["--phase", "storm", "--clients", "200", "--kill9"])
        #expect(out.contains("passed: every one of 200 clients reconnected and opened its conversation with its cursor"))
        #expect(out.contains("passed: every client got the push after the storm"))
    }

    /// Found by this tool: a resume that queued more frames than the queue's limit cut the client off
    /// again (4008) on every try; and a client that stopped reading let the kernel hold megabytes for it.
    @Test func slowConsumersAreCutOffWith4008AndGetEveryChangeOnceWhenTheyReconnect() throws {
        let out = try storm(["--phase", "slow", "--slow", "50", "--push-queue-limit", "256"])
        #expect(out.contains("passed: every slow client was cut off with close code 4008"))
        #expect(out.contains("passed: the kernel holds at most 512 KiB a slow client"))
        #expect(out.contains("passed: every slow client reconnected with its cursor"))
        #expect(out.contains("passed: every slow client, after reconnecting, had every change"))
    }
}
