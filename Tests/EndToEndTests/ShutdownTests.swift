import Foundation
import Testing

/// A bounded stop (issue 18, RELIABILITY.md): WebSocket clients that never answer the server's close
/// frame (tools/checks/mute_clients.py: real sockets that stop reading after `ready`) no longer keep
/// `presence serve` from exiting after SIGTERM. Past --shutdown-timeout, or at a second signal, the
/// server closes them itself, appends each one's disconnect, writes its checkpoint and exits 0.
@Suite(.serialized) struct ShutdownTests {
    static let script = CLI.repository.appendingPathComponent("tools/checks/mute_clients.py").path

    /// `clients` sockets of user `mute` that got `ready` and read nothing more; their conn ids.
    final class MuteClients {
        let process = Process()
        private let output = DataBox()
        private(set) var conns: [String] = []

        init(port: Int, clients: Int) throws {
            process.executableURL = URL(fileURLWithPath: CLI.python)
            process.arguments = [ShutdownTests.script, "--port", "\(port)", "--token", try token("mute"), "--clients", "\(clients)", "--hold", "180"]
            let stdout = Pipe()
            process.standardOutput = stdout
            process.standardError = stdout
            try process.run()
            output.drain(stdout.fileHandleForReading)
            let deadline = Date().addingTimeInterval(60)
            var text = ""
            while Date() < deadline, process.isRunning {
                text = String(decoding: output.get(), as: UTF8.self)
                if text.contains("ready \(clients)\n") { break }
                usleep(20_000)
            }
            conns = text.lines.filter { $0.hasPrefix("conn ") }.map { String($0.dropFirst(5)) }
            #expect(text.contains("ready \(clients)\n") && conns.count == clients, "mute_clients.py: \(text)")
        }

        deinit {
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
    }

    /// Waits (at most `bound`, a liveness bound, not a timing figure) for the server to exit; nil if it did not.
    func exitStatus(of server: RunningServer, within bound: TimeInterval, whileWaiting: () -> Void = {}) -> Int32? {
        let deadline = Date().addingTimeInterval(bound)
        while server.process.isRunning, Date() < deadline {
            whileWaiting()
            usleep(50_000)
        }
        return server.process.isRunning ? nil : server.process.terminationStatus
    }

    /// What a clean stop leaves: each mute socket's disconnect (once), the acknowledged events, no
    /// gateway_down (nothing was left for a restart to end), and a log `audit` finds clean.
    func expectCleanStop(data: String, conns: [String], acknowledged: [String]) throws {
        let dump = try CLI.presence(["dump", "--data", data])
        #expect(dump.status == 0, "\(dump.stderr)")
        let lines = dump.stdout.lines
        for conn in conns {
            let events = lines.filter { $0.contains("\"conn\":\"\(conn)\"") }
            #expect(events.filter { $0.contains("\"type\":\"connect\"") }.count == 1, "\(conn): \(events)")
            #expect(events.filter { $0.contains("\"type\":\"disconnect\"") }.count == 1, "\(conn): \(events)")
        }
        for conn in acknowledged { #expect(lines.contains { $0.contains("\"conn\":\"\(conn)\"") }, "acknowledged \(conn) is missing") }
        #expect(!lines.contains { $0.contains("gateway_down") }, "\(lines.filter { $0.contains("gateway_down") })")
        let audit = try CLI.presence(["audit", "--data", data])
        #expect(audit.status == 0, "\(audit.stdout)\(audit.stderr)")
    }

    /// Posts one acknowledged event of gateway gw-1 (conn `conn`) while the mute clients hold their sockets.
    func postAcknowledged(_ server: RunningServer, conn: String) throws {
        let format = ISO8601DateFormatter()
        format.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let line = #"{"type":"connect","user":"carol","conn":"\#(conn)","gateway":"gw-1","ts":"\#(format.string(from: Date()))"}"#
        let reply = try server.request("POST", "/v1/events", token: try token("gw-1", gateway: true), body: Data((line + "\n").utf8))
        #expect(reply.status == 200, "\(reply.body)")
    }

    @Test func sigtermWithClientsThatNeverAnswerTheCloseFrameStopsAfterTheDeadlineWithEveryDisconnect() throws {
        let dir = Scratch()
        let data = dir.file("data")
        let server = try RunningServer(data: data, extra: ["--shutdown-timeout", "2s"])
        let mute = try MuteClients(port: server.port, clients: 20)
        try postAcknowledged(server, conn: "carol-before-stop")
        kill(server.process.processIdentifier, SIGTERM)
        let status = exitStatus(of: server, within: 60)
        #expect(status == 0, "not stopped 60 s after SIGTERM (--shutdown-timeout 2s): \(server.errorOutput)")
        guard status != nil else { return }
        let log = server.errorOutput
        #expect(log.contains("the 2s shutdown deadline passed"), "\(log)")
        #expect(log.contains("closed the 20 connections still open, 20 WebSocket sessions among them"), "\(log)")
        #expect(log.contains("checkpoint"), "\(log)")
        try expectCleanStop(data: data, conns: mute.conns, acknowledged: ["carol-before-stop"])
    }

    /// An HTTP request whose head never finishes arriving held the stop as long as its client kept the
    /// connection (Hummingbird's graceful shutdown waits for the request); it is closed at the deadline.
    @Test func aRequestThatNeverFinishesArrivingDoesNotHoldTheStop() throws {
        let dir = Scratch()
        let server = try RunningServer(data: dir.file("data"), extra: ["--shutdown-timeout", "1s"])
        let connection = try RawConnection(port: server.port)
        defer { connection.disconnect() }
        connection.send("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        // The server has the partial head before the stop begins (it answers another connection after it).
        #expect(try server.request("GET", "/health").status == 200)
        kill(server.process.processIdentifier, SIGTERM)
        let status = exitStatus(of: server, within: 60)
        #expect(status == 0, "not stopped 60 s after SIGTERM (--shutdown-timeout 1s): \(server.errorOutput)")
        guard status != nil else { return }
        #expect(server.errorOutput.contains("closed the 1 connection still open, 0 WebSocket sessions among them"), "\(server.errorOutput)")
    }

    /// An operator's second SIGTERM ends the wait at once, however long the deadline: same clean stop.
    @Test func aSecondSigtermClosesTheRemainingSocketsAtOnce() throws {
        let dir = Scratch()
        let data = dir.file("data")
        let server = try RunningServer(data: data, extra: ["--shutdown-timeout", "1h"])
        let mute = try MuteClients(port: server.port, clients: 5)
        try postAcknowledged(server, conn: "carol-before-stop")
        kill(server.process.processIdentifier, SIGTERM)
        // Another SIGTERM every second until it exits: the first of them may come before the server
        // has begun its stop (a signal then is the same request, and ignored).
        var lastSignal = Date()
        let status = exitStatus(of: server, within: 60) {
            if Date().timeIntervalSince(lastSignal) >= 1 {
                kill(server.process.processIdentifier, SIGTERM)
                lastSignal = Date()
            }
        }
        #expect(status == 0, "not stopped 60 s after repeated SIGTERMs (--shutdown-timeout 1h): \(server.errorOutput)")
        guard status != nil else { return }
        let log = server.errorOutput
        #expect(log.contains("a second SIGTERM came"), "\(log)")
        #expect(log.contains("closed the 5 connections still open, 5 WebSocket sessions among them"), "\(log)")
        try expectCleanStop(data: data, conns: mute.conns, acknowledged: ["carol-before-stop"])
    }
}
