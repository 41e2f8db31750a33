import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import JetStream
import NATS
import NATSServerHarness
import Testing

/// Cluster mode with real processes on loopback: three `nats-server`s in a JetStream cluster
/// (`sync_interval: always`) and three `presence serve --cluster` nodes.
@Suite(.serialized) struct ClusterTests {
    /// Three nodes on a three-server cluster; stops everything when the test ends.
    final class Cluster {
        let nats: NATSCluster
        let scratch = Scratch()
        private(set) var nodes: [RunningServer?] = []

        init() throws {
            nats = try NATSCluster(size: 3, syncAlways: true)
            try nats.start()
            for index in 0..<3 { nodes.append(try startNode(index)) }
        }

        func startNode(_ index: Int) throws -> RunningServer {
            try RunningServer(data: scratch.file("node-\(index)"), extra: ["--cluster", nats.urls.joined(separator: ","), "--node", "node-\(index)"])
        }

        func node(_ index: Int) throws -> RunningServer { try #require(nodes[index]) }

        /// Stops every node cleanly (SIGTERM); their data folders stay.
        func stopNodes() {
            for index in nodes.indices {
                if let node = nodes[index] { _ = node.stop() }
                nodes[index] = nil
            }
        }

        /// Waits until every running node has applied the same stream sequence, and returns it.
        func settle(timeout: TimeInterval = 30) throws -> Int {
            let deadline = Date().addingTimeInterval(timeout)
            var last: [Int] = []
            while Date() < deadline {
                last = try nodes.compactMap { $0 }.map { node in
                    let health = try node.request("GET", "/health").body
                    guard let range = health.range(of: "\"stream_sequence\":") else { return -1 }
                    return Int(health[range.upperBound...].prefix(while: \.isNumber)) ?? -1
                }
                if Set(last).count == 1, let sequence = last.first, sequence >= 0 { return sequence }
                usleep(100_000)
            }
            throw HarnessError("the nodes did not settle: stream sequences \(last)")
        }

        deinit {
            stopNodes()
            nats.kill()
            nats.removeFiles()
        }
    }

    static func line(_ user: String, _ conn: String, _ kind: String, _ ts: Int64, id: String) -> String {
        #"{"type":"\#(kind)","user":"\#(user)","conn":"\#(conn)","gateway":"gw-1","ts":\#(ts),"id":"\#(id)"}"#
    }

    @Test(.enabled(if: NATSServerProcess.binary != nil || ProcessInfo.processInfo.environment["CI"] != nil))
    func everyNodeEndsWithTheSameLogAndTheSameState() throws {
        let cluster = try Cluster()
        let gateway = try token("gw-1", gateway: true)
        let start: Int64 = 1_705_309_200_000
        // Thirty requests of ten events, to the three nodes in turn; one retried on another node.
        for request in 0..<30 {
            var lines: [String] = []
            for k in 0..<10 {
                let user = "u\((request * 10 + k) % 17)"
                let ts = start + Int64(request * 1_000 + k)
                lines.append(Self.line(user, "\(user)-phone", (request + k) % 3 == 0 ? "disconnect" : "connect", ts, id: "e\(request)-\(k)"))
            }
            let reply = try cluster.node(request % 3).request("POST", "/v1/events", token: gateway, body: Data(lines.joined(separator: "\n").utf8))
            #expect(reply.status == 200, "\(reply.body)")
            if request == 7 {
                // The same request again through another node: every line is a repeat, at its first offsets.
                let again = try cluster.node(2).request("POST", "/v1/events", token: gateway, body: Data(lines.joined(separator: "\n").utf8))
                #expect(again.status == 200 && again.body.contains("\"repeats\":[{\"line\":1,"), "\(again.body)")
            }
        }
        _ = try cluster.settle()
        // Every node answers reads from its own state: Bob's presence the same everywhere.
        let states = try (0..<3).map { try cluster.node($0).request("GET", "/health").body }
        #expect(states.allSatisfy { $0.contains("\"caught_up\":true") }, "\(states)")
        cluster.stopNodes()
        let dumps = try (0..<3).map { try CLI.presence(["dump", "--data", cluster.scratch.file("node-\($0)"), "--offsets"]).stdout }
        let presence = try (0..<3).map { try CLI.presence(["state", "--data", cluster.scratch.file("node-\($0)"), "--format", "json"]).stdout }
        #expect(dumps[0].lines.filter { $0.contains("\"id\":\"e") }.count == 300, "every event once: \(dumps[0].lines.count) lines")
        #expect(dumps[0] == dumps[1] && dumps[1] == dumps[2], "the same records at the same offsets on every node")
        #expect(presence[0] == presence[1] && presence[1] == presence[2] && !presence[0].isEmpty)
    }

    @Test(.enabled(if: NATSServerProcess.binary != nil || ProcessInfo.processInfo.environment["CI"] != nil))
    func killingTheStreamLeaderLosesNoAcknowledgedWrite() async throws {
        let cluster = try Cluster()
        let gateway = try token("gw-1", gateway: true)
        // Find the stream's leader, through a client of our own.
        let client = try await NATSConnection.connect(try NATSOptions(servers: cluster.nats.urls))
        let info = try await JetStream(client).streamInfo("PRESENCE")
        let leader = try #require(info.cluster?.leader.flatMap { cluster.nats.server(named: $0) })
        await client.close()
        let port = try cluster.node(0).port
        let start: Int64 = 1_705_309_200_000
        var acknowledged: [String] = []
        var failed = 0
        let began = Date()
        var request = 0
        var lastAck = Date(), killedAt = Date(), longestStall = 0.0
        while Date().timeIntervalSince(began) < 14 && request < 400 {
            if request == 40 {
                leader.kill()
                killedAt = Date()
            }
            let id = "k\(request)"
            let body = Self.line("u\(request % 11)", "c\(request)", "connect", start + Int64(request), id: id)
            let reply = postEvents(port: port, token: gateway, body: Data(body.utf8))
            if reply.status == 200 {
                acknowledged.append(id)
                if request > 40 { longestStall = max(longestStall, Date().timeIntervalSince(max(lastAck, killedAt))) }
                lastAck = Date()
            } else {
                failed += 1
            }
            request += 1
        }
        #expect(acknowledged.count > 40, "\(acknowledged.count) acknowledged, \(failed) failed")
        // Writes stall only for the election (4-5 s here).
        #expect(longestStall < 10, "writes stalled \(longestStall) s after the leader was killed")
        try leader.start()
        _ = try cluster.settle(timeout: 40)
        cluster.stopNodes()
        for index in 0..<3 {
            let dump = try CLI.presence(["dump", "--data", cluster.scratch.file("node-\(index)")]).stdout
            let missing = acknowledged.filter { !dump.contains("\"id\":\"\($0)\"") }
            #expect(missing.isEmpty, "node \(index) lacks acknowledged writes \(missing.prefix(5))")
        }
    }
}
