import Foundation
import Testing

/// A data folder on a filesystem that fills up: a small tmpfs mounted by the test (root only; CI runs
/// as root). The server answers writes 507 while it is full, keeps answering reads, takes writes again
/// by itself once space returns, and has lost nothing it acknowledged.
@Suite(.serialized) struct DiskFullTests {
    static func run(_ tool: String, _ arguments: [String]) throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// A body of `count` connects of distinct users, with ids `<tag>-<k>`.
    static func body(_ tag: String, count: Int) -> Data {
        let ts = Int64(Date().timeIntervalSince1970 * 1000)
        let lines = (0..<count).map { k in
            #"{"type":"connect","user":"\#(tag)-u\#(k)","conn":"c\#(k)-\#(UInt32.random(in: 0...UInt32.max))","gateway":"gw-1","ts":\#(ts),"id":"\#(tag)-\#(k)"}"#
        }
        return Data(lines.joined(separator: "\n").utf8)
    }

    @Test(.enabled(if: geteuid() == 0, "mounting a small filesystem needs root"))
    func aFullDiskAnswers507KeepsReadsAndWritesAgainOnceThereIsSpace() throws {
        let dir = Scratch()
        let mount = dir.file("mnt")
        try FileManager.default.createDirectory(atPath: mount, withIntermediateDirectories: true)
        try #require(try Self.run("/bin/mount", ["-t", "tmpfs", "-o", "size=4m", "tmpfs", mount]) == 0, "mount a 4 MiB tmpfs")
        defer { _ = try? Self.run("/bin/umount", ["-l", mount]) }
        let data = mount + "/data"
        let server = try RunningServer(data: data)
        let gateway = try token("gw-1", gateway: true)
        #expect(try server.request("POST", "/v1/events", token: gateway, body: Self.body("before", count: 10)).status == 200)

        // Fill the filesystem, then post until a write needs a page there is no room for.
        _ = try Self.run("/bin/dd", ["if=/dev/zero", "of=\(mount)/filler", "bs=64k"])
        var acknowledged: [String] = ["before"]
        var full: RunningServer.Reply?
        for attempt in 0..<40 {
            let tag = "p\(attempt)"
            let reply = try server.request("POST", "/v1/events", token: gateway, body: Self.body(tag, count: 400))
            if reply.status == 507 { full = reply; break }
            #expect(reply.status == 200, "\(reply.body)")
            acknowledged.append(tag)
        }
        let refused = try #require(full, "the full filesystem never refused a write")
        #expect(refused.body.contains("\"code\":\"insufficient_storage\"") && refused.body.contains("nothing of this append was written"), "\(refused.body)")
        // Reads go on; so does refusing (the log is not stopped, only full).
        #expect(try server.request("GET", "/health").status == 200)
        let presence = try server.request("GET", "/v1/users/before-u1/presence", token: try token("before-u1"))
        #expect(presence.status == 200 && presence.body.contains("\"online\":true"), "\(presence.body)")
        #expect(try server.request("POST", "/v1/events", token: gateway, body: Self.body("still-full", count: 400)).status == 507)
        // Single events until even one has no room (the last page may have had some), then a WebSocket connect.
        var single = 0
        while single < 200, try server.request("POST", "/v1/events", token: gateway, body: Self.body("one\(single)", count: 1)).status == 200 {
            acknowledged.append("one\(single)")
            single += 1
        }
        let socket = try RawConnection(port: server.port)
        let answer = socket.readAfterSending(RawConnection.webSocketUpgrade(token: try token("carol")))
        #expect(answer.contains(" 101 ") && answer.components(separatedBy: "insufficient_storage").count >= 3,
                "an error frame and a close (4507) naming insufficient_storage: \(answer)")

        // Space again: the same body is taken, with no restart.
        try FileManager.default.removeItem(atPath: mount + "/filler")
        let again = try server.request("POST", "/v1/events", token: gateway, body: Self.body("after", count: 400))
        #expect(again.status == 200, "\(again.body)")
        acknowledged.append("after")
        #expect(server.stop() == 0, "\(server.errorOutput.suffix(2000))")

        // Every acknowledged event once; nothing of the refused bodies; the log audits clean.
        let dump = try CLI.presence(["dump", "--data", data]).stdout
        for tag in acknowledged {
            let id = tag.hasPrefix("one") ? "\(tag)-0" : "\(tag)-1"
            #expect(dump.components(separatedBy: "\"id\":\"\(id)\"").count == 2, "\(tag) acknowledged: once in the log")
        }
        #expect(!dump.contains("\"id\":\"still-full-"), "a refused body left records")
        let audit = try CLI.presence(["audit", "--data", data])
        #expect(audit.status == 0, "\(audit.stdout)\(audit.stderr)")
    }
}
