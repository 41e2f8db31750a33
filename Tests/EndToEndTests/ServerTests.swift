import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing

/// A `presence serve` process on a free loopback port, talked to over real HTTP.
final class RunningServer {
    let process = Process()
    let data: String
    private(set) var port = 0
    private let output = DataBox()
    private let errors = DataBox()

    /// What the server has written to standard error so far (its log lines).
    var errorOutput: String { String(decoding: errors.get(), as: UTF8.self) }

    /// `startTimeout`: how long the server may take to listen (a cluster node catches up with its streams first).
    /// `environment`: variables set for the server beside this process's own.
    init(data: String, extra: [String] = [], environment: [String: String] = [:], startTimeout: TimeInterval = 30) throws {
        self.data = data
        process.executableURL = URL(fileURLWithPath: CLI.presence)
        if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        // The node's own heartbeats would interleave with the offsets tests check; tests of heartbeats and
        // leases pass their own interval (the last option wins).
        process.arguments = ["serve", "--data", data, "--dev", "--port", "0", "--heartbeat-interval", "1h", "--lease", "2h"] + extra
        let stdout = Pipe(), stderr = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
        // Both outputs are drained as they come, so the server never blocks on a full pipe.
        output.drain(stdout.fileHandleForReading)
        errors.drain(stderr.fileHandleForReading)
        let deadline = Date().addingTimeInterval(startTimeout)
        while Date() < deadline {
            let text = String(decoding: output.get(), as: UTF8.self)
            if let range = text.range(of: "listening on 127.0.0.1:") {
                port = Int(text[range.upperBound...].prefix(while: \.isNumber)) ?? 0
                break
            }
            if !process.isRunning { break }
            usleep(20_000)
        }
        #expect(port > 0, "the server did not start: \(String(decoding: output.get(), as: UTF8.self))")
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    struct Reply {
        let status: Int
        let body: String
        var headers: [String: String] = [:]
    }

    /// Sends a request and waits for the reply.
    func request(_ method: String, _ path: String, token: String? = nil, body: Data? = nil) throws -> Reply {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(path)")!)
        request.httpMethod = method
        request.httpBody = body
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        let done = DispatchSemaphore(value: 0)
        let box = DataBox()
        let status = Locked(-1)
        let headers = Locked<[String: String]>([:])
        URLSession.shared.dataTask(with: request) { data, response, _ in
            box.set(data ?? Data())
            status.set((response as? HTTPURLResponse)?.statusCode ?? -1)
            var fields: [String: String] = [:]
            for (name, value) in (response as? HTTPURLResponse)?.allHeaderFields ?? [:] {
                fields["\(name)".lowercased()] = "\(value)"
            }
            headers.set(fields)
            done.signal()
        }.resume()
        done.wait()
        return Reply(status: status.get(), body: String(decoding: box.get(), as: UTF8.self), headers: headers.get())
    }

    /// Sends SIGTERM and waits for a clean exit.
    func stop() -> Int32 {
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
        return process.terminationStatus
    }
}

func token(_ user: String, gateway: Bool = false, ttl: String = "1h") throws -> String {
    let result = try CLI.presence(["token", "--dev", "--user", user, "--ttl", ttl] + (gateway ? ["--gateway"] : []))
    #expect(result.status == 0, "\(result.stderr)")
    return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
}

@Suite(.serialized) struct ServerTests {
    /// Events of one gateway, gw-1: a gateway's token posts only its own gateway's events.
    static let events = """
        {"type":"connect","user":"bob","conn":"bob-phone-7f3a","gateway":"gw-1","ts":"2024-01-15T09:00:00.000Z"}
        {"type":"connect","user":"bob","conn":"bob-laptop-19c2","gateway":"gw-1","ts":"2024-01-15T09:10:00.000Z"}
        {"type":"disconnect","user":"bob","conn":"bob-laptop-19c2","gateway":"gw-1","ts":"2024-01-15T09:42:00.000Z"}
        """

    @Test func healthNeedsNoTokenAndEverythingElseDoes() throws {
        let dir = Scratch()
        let server = try RunningServer(data: dir.file("data"))
        let health = try server.request("GET", "/health")
        #expect(health.status == 200)
        #expect(health.body.contains("\"status\":\"ok\""))
        let anonymous = try server.request("POST", "/v1/events", body: Data(Self.events.utf8))
        #expect(anonymous.status == 401)
        #expect(anonymous.body.hasPrefix("{\"error\":{\"code\":\"unauthorized\""))
        let forged = try server.request("POST", "/v1/events", token: "not.a.token", body: Data(Self.events.utf8))
        #expect(forged.status == 401)
        let malformed = try server.request("GET", "/v1/users/bob/presence", token: "abc")
        #expect(malformed.status == 401 && malformed.body.contains("the token is malformed"), "\(malformed.body)")
        let good = try token("bob")
        let resigned = good.dropLast(4) + (good.hasSuffix("AAAA") ? "BBBB" : "AAAA")
        let wrongSignature = try server.request("GET", "/v1/users/bob/presence", token: String(resigned))
        #expect(wrongSignature.status == 401 && wrongSignature.body.contains("signature does not match"), "\(wrongSignature.body)")
        let expired = try server.request("GET", "/v1/users/bob/presence", token: try token("bob", ttl: "1ms"))
        #expect(expired.status == 401 && expired.body.contains("the token has expired"), "\(expired.body)")
        let userPosting = try server.request("POST", "/v1/events", token: try token("bob"), body: Data(Self.events.utf8))
        #expect(userPosting.status == 403)
        #expect(server.stop() == 0)
    }

    @Test func gatewayIngestIsDurableAndVisibleInPresence() throws {
        let dir = Scratch()
        let server = try RunningServer(data: dir.file("data"))
        let gateway = try token("gw-1", gateway: true)
        let posted = try server.request("POST", "/v1/events", token: gateway, body: Data(Self.events.utf8))
        #expect(posted.status == 200, "\(posted.body)")
        #expect(posted.body == "{\"first_offset\":0,\"last_offset\":2}")
        let bob = try server.request("GET", "/v1/users/bob/presence", token: try token("bob"))
        #expect(bob.body == #"{"user":"bob","online":true,"last_seen":"2024-01-15T09:42:00.000Z","connections":1,"presence_cursor":3}"#)
        // Alice shares no conversation with bob: his default settings (contacts) show her nothing, which
        // reads exactly as a user never seen.
        let other = try server.request("GET", "/v1/users/bob/presence", token: try token("alice"))
        #expect(other.body == #"{"user":"bob","online":false,"last_seen":null,"connections":0,"presence_cursor":3}"#)
        // kill -9 right after the acknowledgement: the events survive.
        kill(server.process.processIdentifier, SIGKILL)
        server.process.waitUntilExit()
        let dump = try CLI.presence(["dump", "--data", dir.file("data")])
        #expect(dump.stdout.lines.count == 3)
        // A restart recovers and serves the same state.
        let again = try RunningServer(data: dir.file("data"))
        let after = try again.request("GET", "/v1/users/bob/presence", token: try token("bob"))
        #expect(after.body == bob.body)
        #expect(again.stop() == 0)
    }

    @Test func badInputIsRejectedWholeAndChangesNothing() throws {
        let dir = Scratch()
        let server = try RunningServer(data: dir.file("data"), extra: ["--max-body", "64KiB"])
        let gateway = try token("gw-1", gateway: true)
        let mixed = Self.events + "\n{\"type\":\"teleport\",\"user\":\"bob\",\"conn\":\"c\",\"gateway\":\"g\",\"ts\":1}\nnot json\n"
        let rejected = try server.request("POST", "/v1/events", token: gateway, body: Data(mixed.utf8))
        #expect(rejected.status == 400)
        #expect(rejected.body.contains("\"code\":\"invalid_events\""))
        #expect(rejected.body.contains("{\"line\":4,\"reason\":\"unknown event type \\\"teleport\\\""))
        #expect(rejected.body.contains("{\"line\":5,\"reason\":\"malformed JSON"))
        #expect(try server.request("GET", "/health").body.contains("\"log_end_offset\":0"))
        let huge = try server.request("POST", "/v1/events", token: gateway, body: Data(repeating: 65, count: 100_000))
        #expect(huge.status == 413, "\(huge.body)")
        let empty = try server.request("POST", "/v1/events", token: gateway, body: Data())
        #expect(empty.status == 400)
        let nowhere = try server.request("GET", "/v1/nowhere", token: gateway)
        #expect(nowhere.status == 404 && nowhere.body.contains("\"code\":\"not_found\""), "\(nowhere.body)")
        // A path the API has, with a method it does not take: 405 naming the methods it does take.
        let deleted = try server.request("DELETE", "/v1/conversations/conv_x", token: gateway)
        #expect(deleted.status == 405 && deleted.body.contains("\"code\":\"method_not_allowed\""), "\(deleted.body)")
        #expect(deleted.headers["allow"] == "GET, HEAD", "\(deleted.headers)")
        let listed = try server.request("GET", "/v1/conversations", token: gateway)
        #expect(listed.status == 405 && listed.headers["allow"] == "POST", "\(listed.status) \(listed.headers)")
        let posted = try server.request("POST", "/v1/conversations/conv_x", token: gateway, body: Data("{}".utf8))
        #expect(posted.status == 405 && posted.body.contains("takes GET, HEAD, not POST"), "\(posted.body)")
        // HEAD answers wherever GET does, without a body.
        let head = try server.request("HEAD", "/health")
        #expect(head.status == 200 && head.body.isEmpty, "\(head.status) \(head.body)")
        #expect(try server.request("GET", "/health").body.contains("\"log_end_offset\":0"))
        #expect(server.stop() == 0)
    }

    @Test func sigtermClosesTheLogCleanlyAndWritesACheckpoint() throws {
        let dir = Scratch()
        let data = dir.file("data")
        let server = try RunningServer(data: data)
        #expect(try server.request("POST", "/v1/events", token: try token("gw-1", gateway: true), body: Data(Self.events.utf8)).status == 200)
        #expect(server.stop() == 0)
        #expect(FileManager.default.fileExists(atPath: data + "/presence/.clean-shutdown"))
        #expect(FileManager.default.fileExists(atPath: data + "/checkpoints/presence-00000000000000000003.ckpt"))
        #expect(try CLI.presence(["audit", "--data", data]).stdout.contains("equals a fresh fold at its offset"))
    }

    @Test func metricsAreExportedInPrometheusTextToTokenHolders() throws {
        let dir = Scratch()
        let server = try RunningServer(data: dir.file("data"))
        #expect(try server.request("POST", "/v1/events", token: try token("gw-1", gateway: true), body: Data(Self.events.utf8)).status == 200)
        #expect(try server.request("GET", "/metrics").status == 401)
        let metrics = try server.request("GET", "/metrics", token: try token("ops"))
        #expect(metrics.status == 200)
        #expect(metrics.body.contains("presence_events_appended_total 3"), "\(metrics.body)")
        #expect(metrics.body.contains("presence_commit_seconds_count 1"))
        #expect(metrics.body.contains("http_server_request_duration"))
        #expect(metrics.body.contains("/v1/events"))
        #expect(server.stop() == 0)
    }

    @Test func eventLoopsOutsideTheirRangeAreRefusedByName() throws {
        let dir = Scratch()
        for bad in ["0", "257"] {
            let result = try CLI.presence(["serve", "--data", dir.file("data"), "--dev", "--port", "0", "--event-loops", bad])
            #expect(result.status != 0)
            #expect(result.stderr.contains("--event-loops must be between 1 and 256"), "\(result.stderr)")
        }
    }

    @Test func aServerWithoutASecretRefusesToStart() throws {
        let dir = Scratch()
        let result = try CLI.presence(["serve", "--data", dir.file("data"), "--port", "0"])
        #expect(result.status == 64)  // bad arguments: no secret given
        #expect(result.stderr.contains("no token secret"))
    }
}
