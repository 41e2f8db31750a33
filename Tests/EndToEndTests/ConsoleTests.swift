import Foundation
import Testing

/// The web console at `/` and the routes it reads: the page's files (embedded in the binary), the
/// development sign-in, the audit routes against the CLI, and the whole console in a real headless
/// Chromium (tools/checks/console_browser.py, Selenium with Debian's chromedriver).
@Suite(.serialized) struct ConsoleTests {
    static let chromium = "/usr/bin/chromium"
    static let chromedriver = "/usr/bin/chromedriver"

    /// Chromium, its driver and Selenium are here (scripts/setup.sh --python installs them), or this is CI,
    /// where their absence must fail the test rather than skip it.
    static let browserAvailable: Bool = {
        let here = FileManager.default.isExecutableFile(atPath: chromium) && FileManager.default.isExecutableFile(atPath: chromedriver)
            && ((try? CLI.run(CLI.python, ["-c", "import selenium"]).status) == 0)
        return here || ProcessInfo.processInfo.environment["CI"] != nil
    }()

    /// Where the browser test leaves its screenshots (README.md shows copies from docs/screenshots).
    static let screenshots = CLI.repository.appendingPathComponent(".build/console-screenshots").path

    @Test(.enabled(if: browserAvailable, "chromium, chromedriver or selenium not found: run scripts/setup.sh --python"),
          .timeLimit(.minutes(5)))
    func theChatAndAuditViewsShowWhatTheAPIAndTheCLIShowInARealBrowser() throws {
        let dir = Scratch()
        let data = dir.file("data")
        let server = try RunningServer(data: data)
        // Bounded: the script's own waits are seconds long; `timeout` ends it (and so the test) if it hangs.
        let result = try CLI.run("/usr/bin/timeout", [
            "--kill-after=10", "240", CLI.python, CLI.repository.appendingPathComponent("tools/checks/console_browser.py").path,
            "--url", "http://127.0.0.1:\(server.port)", "--presence", CLI.presence, "--data", data,
            "--screenshots", Self.screenshots, "--chromium", Self.chromium, "--chromedriver", Self.chromedriver,
        ])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.contains("passed: console"), "\(result.stdout)")
        for shot in ["console-chat-alice.png", "console-chat-bob.png", "console-audit.png"] {
            let size = (try? FileManager.default.attributesOfItem(atPath: Self.screenshots + "/" + shot)[.size] as? Int) ?? 0
            #expect(size > 10_000, "screenshot \(shot): \(size) bytes")
        }
        #expect(server.stop() == 0)
    }

    @Test func thePageAndItsFilesAreServedWithAStrictPolicyAndRevalidated() throws {
        let dir = Scratch()
        let server = try RunningServer(data: dir.file("data"))
        let page = try server.request("GET", "/")
        #expect(page.status == 200)
        #expect(page.headers["content-type"] == "text/html; charset=utf-8")
        #expect(page.body.contains("<script src=\"/console/chat.js\" defer></script>"))
        let policy = page.headers["content-security-policy"] ?? ""
        #expect(policy.contains("default-src 'none'") && policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'"), "\(policy)")
        #expect(page.headers["cache-control"] == "no-cache")
        let etag = try #require(page.headers["etag"])
        // Every file the page names is served, with its type.
        for (path, type) in [("/console/chat.js", "text/javascript"), ("/console/audit.js", "text/javascript"),
                             ("/console/console.css", "text/css"), ("/console/favicon.svg", "image/svg+xml")] {
            #expect(page.body.contains(path), "the page names \(path)")
            let file = try server.request("GET", path)
            #expect(file.status == 200 && file.headers["content-type"]?.hasPrefix(type) == true, "\(path): \(file.status) \(file.headers)")
            #expect(file.headers["content-security-policy"] == policy)
        }
        // A browser that has the page asks again with its ETag and gets 304, no body.
        let connection = try RawConnection(port: server.port)
        let again = connection.exchange("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nIf-None-Match: \(etag)\r\n\r\n")
        #expect(again.status == 304 && again.body.isEmpty, "\(again.head)")
        let changed = connection.exchange("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nIf-None-Match: \"other\"\r\n\r\n")
        #expect(changed.status == 200)
        let missing = try server.request("GET", "/console/secrets.txt")
        #expect(missing.status == 404 && missing.body.contains("\"code\":\"not_found\""), "\(missing.body)")
        #expect(server.stop() == 0)
    }

    @Test func onlyADevServerMintsTokensForTheSignInForm() throws {
        let dir = Scratch()
        let server = try RunningServer(data: dir.file("data"))
        #expect(try server.request("GET", "/v1/console").body == #"{"development_tokens":true}"#)
        let minted = try server.request("POST", "/v1/dev/tokens", body: Data(#"{"user":"alice"}"#.utf8))
        #expect(minted.status == 201, "\(minted.body)")
        let token = try #require((try JSONSerialization.jsonObject(with: Data(minted.body.utf8)) as? [String: Any])?["token"] as? String)
        #expect(try server.request("GET", "/v1/me/conversations", token: token).status == 200)
        // An operator's token reads the audit routes and is nobody's chat account.
        let ops = try server.request("POST", "/v1/dev/tokens", body: Data(#"{"user":"ops","role":"operator"}"#.utf8))
        let opsToken = try #require((try JSONSerialization.jsonObject(with: Data(ops.body.utf8)) as? [String: Any])?["token"] as? String)
        let refused = try server.request("GET", "/v1/me/conversations", token: opsToken)
        #expect(refused.status == 403 && refused.body.contains("an operator token reads the audit routes"), "\(refused.body)")
        #expect(try server.request("GET", "/v1/log", token: opsToken).status == 200)
        for body in [#"{"user":"gw-1","role":"gateway"}"#, #"{"user":""}"#, #"{"name":"alice"}"#, "not json"] {
            #expect(try server.request("POST", "/v1/dev/tokens", body: Data(body.utf8)).status == 400, "\(body)")
        }
        #expect(server.stop() == 0)

        // A server with its own secret mints nothing: the form is not shown, the route says what to do.
        let secret = dir.file("secret")
        try Data(String(repeating: "s", count: 40).utf8).write(to: URL(fileURLWithPath: secret))
        let production = try RunningServer(data: dir.file("data2"), extra: ["--secret-file", secret])
        #expect(try production.request("GET", "/v1/console").body == #"{"development_tokens":false}"#)
        let none = try production.request("POST", "/v1/dev/tokens", body: Data(#"{"user":"alice"}"#.utf8))
        #expect(none.status == 404 && none.body.contains("presence token"), "\(none.body)")
        #expect(production.stop() == 0)
    }

    @Test func theAuditRoutesAnswerAsTheCLIAndOnlyToOperatorsOrTheUserThemself() throws {
        let dir = Scratch()
        let data = dir.file("data")
        let server = try RunningServer(data: data)
        let now = Int64(Date().timeIntervalSince1970 * 1000), minute: Int64 = 60_000
        let events = """
            {"type":"connect","user":"carol","conn":"carol-phone","gateway":"gw-1","ts":\(now - 50 * minute)}
            {"type":"connect","user":"carol","conn":"carol-laptop","gateway":"gw-1","ts":\(now - 45 * minute)}
            {"type":"disconnect","user":"carol","conn":"carol-phone","gateway":"gw-1","ts":\(now - 40 * minute)}
            {"type":"gateway_down","gateway":"gw-1","ts":\(now - 30 * minute)}
            {"type":"connect","user":"carol","conn":"carol-phone","gateway":"gw-1","ts":\(now - 20 * minute)}

            """
        #expect(try server.request("POST", "/v1/events", token: try token("gw-1", gateway: true), body: Data(events.utf8)).status == 200)
        let ops = try CLI.presence(["token", "--dev", "--user", "ops", "--operator"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)

        // The history, as `presence history --format json` prints it, whole and in a window.
        for query in ["", "?from=\(now - 42 * minute)&to=\(now - 35 * minute)"] {
            let reply = try server.request("GET", "/v1/users/carol/history\(query)", token: ops)
            #expect(reply.status == 200, "\(reply.body)")
            var cliArguments = ["history", "--data", data, "--user", "carol", "--format", "json"]
            if !query.isEmpty { cliArguments += ["--from", "\(now - 42 * minute)", "--to", "\(now - 35 * minute)"] }
            let lines = try CLI.presence(cliArguments).stdout.split(separator: "\n").joined(separator: ",")
            #expect(reply.body == #"{"user":"carol","sessions":["# + lines + "]}")
        }
        // The state at a time, as `presence state --at` prints it.
        for at in [now - 47 * minute, now - 42 * minute, now - 25 * minute, now - 10 * minute] {
            let reply = try server.request("GET", "/v1/users/carol/state?at=\(at)", token: ops)
            let cli = try CLI.presence(["state", "--data", data, "--at", "\(at)", "--user", "carol", "--format", "json"]).stdout
                .trimmingCharacters(in: .whitespacesAndNewlines)
            let fields = cli.replacingOccurrences(of: #"{"user":"carol","#, with: "").dropLast()
            #expect(reply.body.hasPrefix(#"{"user":"carol","at":"#) && reply.body.contains(fields), "\(reply.body) vs \(cli)")
        }
        let log = try server.request("GET", "/v1/log", token: ops)
        let total = try CLI.presence(["log-info", "--data", data, "--json"]).stdout.split(separator: "\n").last.map(String.init) ?? ""
        let events5 = total.range(of: #""events":\d+"#, options: .regularExpression).map { String(total[$0]) } ?? "?"
        #expect(log.status == 200 && log.body.contains(#""total":{"segments":1,"#) && log.body.contains(events5), "\(log.body) vs \(total)")

        // Carol reads her own; Bob reads neither hers nor the log; a gateway nothing.
        let carol = try token("carol"), bob = try token("bob"), gateway = try token("gw-1", gateway: true)
        #expect(try server.request("GET", "/v1/users/carol/history", token: carol).status == 200)
        #expect(try server.request("GET", "/v1/users/carol/state?at=\(now)", token: carol).status == 200)
        let foreign = try server.request("GET", "/v1/users/carol/history", token: bob)
        #expect(foreign.status == 403 && foreign.body.contains("operator token"), "\(foreign.body)")
        #expect(try server.request("GET", "/v1/users/carol/state?at=\(now)", token: bob).status == 403)
        #expect(try server.request("GET", "/v1/log", token: bob).status == 403)
        #expect(try server.request("GET", "/v1/users/carol/history", token: gateway).status == 403)
        #expect(try server.request("GET", "/v1/users/carol/history").status == 401)
        // Bad times are named.
        let noAt = try server.request("GET", "/v1/users/carol/state", token: ops)
        #expect(noAt.status == 400 && noAt.body.contains("at is required"), "\(noAt.body)")
        let badFrom = try server.request("GET", "/v1/users/carol/history?from=yesterday", token: ops)
        #expect(badFrom.status == 400 && badFrom.body.contains("from 'yesterday' is not a time"), "\(badFrom.body)")
        let backwards = try server.request("GET", "/v1/users/carol/history?from=\(now)&to=\(now - minute)", token: ops)
        #expect(backwards.status == 400 && backwards.body.contains("is after to"), "\(backwards.body)")
        #expect(server.stop() == 0)
    }

    @Test func operatorTokensAreMintedAndAreNeitherUsersNorGateways() throws {
        let both = try CLI.presence(["token", "--dev", "--user", "ops", "--operator", "--gateway"])
        #expect(both.status != 0 && both.stderr.contains("a token is for one of"), "\(both.stderr)")
        let dir = Scratch()
        let server = try RunningServer(data: dir.file("data"))
        let ops = try CLI.presence(["token", "--dev", "--user", "ops", "--operator"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let event = #"{"type":"heartbeat","gateway":"ops","ts":\#(Int64(Date().timeIntervalSince1970 * 1000))}"#
        #expect(try server.request("POST", "/v1/events", token: ops, body: Data(event.utf8)).status == 403)
        #expect(try server.request("POST", "/v1/conversations", token: ops, body: Data(#"{"members":["ops","bob"]}"#.utf8)).status == 403)
        #expect(try server.request("GET", "/metrics", token: ops).status == 200)
        // An admin token erases users and does nothing else.
        let admin = try CLI.presence(["token", "--dev", "--user", "root", "--admin"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let adminCreates = try server.request("POST", "/v1/conversations", token: admin, body: Data(#"{"members":["root","bob"]}"#.utf8))
        #expect(adminCreates.status == 403 && adminCreates.body.contains("an admin token erases users"), "\(adminCreates.body)")
        let adminReads = try server.request("GET", "/v1/users/bob/history", token: admin)
        #expect(adminReads.status == 403 && adminReads.body.contains("an admin token erases users"), "\(adminReads.body)")
        #expect(try server.request("POST", "/v1/events", token: admin, body: Data(event.utf8)).status == 403)
        #expect(try server.request("GET", "/v1/log", token: admin).status == 403)
        let opsForgets = try server.request("POST", "/v1/admin/forget", token: ops, body: Data(#"{"user":"bob"}"#.utf8))
        #expect(opsForgets.status == 403 && opsForgets.body.contains("takes an admin token"), "\(opsForgets.body)")
        // Its socket is refused on the socket (a browser cannot read a refused handshake's status).
        let connection = try RawConnection(port: server.port)
        connection.send(RawConnection.webSocketUpgrade(token: ops))
        let reply = connection.read(until: "operator token cannot open", seconds: 10)
        #expect(reply.contains("an operator token cannot open a user's socket"), "\(reply)")
        connection.disconnect()
        #expect(server.stop() == 0)
    }
}
