import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing

/// The message store on disk, through the real server and the real binary: kill -9 while clients post,
/// restarts with the store's caches as the kill left them (or deleted, or cut), then every acknowledged
/// message is where its acknowledgement said, through the API, `presence messages` and `presence audit`.
@Suite(.serialized) struct MessageStoreEndToEndTests {
    func body(_ json: String) -> Data { Data(json.utf8) }

    /// The posters' own session: the suite's other tests share `URLSession.shared` (six connections a host,
    /// requests that may hang on a killed server), and a request here gives up after 15 s, not 60.
    static let session: URLSession = {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = 15
        configuration.httpMaximumConnectionsPerHost = 12
        return URLSession(configuration: configuration)
    }()

    /// POSTs a message: its seq once acknowledged (201), or why not (the status and body, or the error).
    static func post(port: Int, _ path: String, token: String, body: Data) -> Result<Int, PostFailure> {
        guard let url = URL(string: "http://127.0.0.1:\(port)\(path)") else { return .failure(PostFailure(reason: "bad URL")) }
        var request = URLRequest(url: url)
        request.httpMethod = "POST"
        request.httpBody = body
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        let done = DispatchSemaphore(value: 0)
        let outcome = Locked<Result<Int, PostFailure>>(.failure(PostFailure(reason: "no reply")))
        session.dataTask(with: request) { data, response, error in
            let status = (response as? HTTPURLResponse)?.statusCode ?? -1
            if status == 201, let data, let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
               let seq = object["seq"] as? Int {
                outcome.set(.success(seq))
            } else {
                let text = error.map { "\($0.localizedDescription)" } ?? String(decoding: (data ?? Data()).prefix(200), as: UTF8.self)
                outcome.set(.failure(PostFailure(reason: "\(status) \(text)")))
            }
            done.signal()
        }.resume()
        done.wait()
        return outcome.get()
    }

    struct PostFailure: Error { let reason: String }

    /// Every message of `id` through the API, paged forward from the start (200 a page).
    static func allMessages(_ server: RunningServer, _ id: String, token: String) throws -> [(seq: Int, content: String)] {
        var out: [(seq: Int, content: String)] = []
        while true {
            let reply = try server.request("GET", "/v1/conversations/\(id)?after_seq=\(out.last?.seq ?? 0)&limit=200", token: token)
            #expect(reply.status == 200, "\(reply.body)")
            let object = try #require(try JSONSerialization.jsonObject(with: Data(reply.body.utf8)) as? [String: Any])
            let page = try #require(object["messages"] as? [[String: Any]])
            for message in page { out.append((try #require(message["seq"] as? Int), try #require(message["content"] as? String))) }
            if object["has_more"] as? Bool != true || page.isEmpty { return out }
        }
    }

    @Test func killNineWhilePostingLosesNoAcknowledgedMessageWhateverTheCachesLookLike() throws {
        let scratch = Scratch()
        let data = scratch.file("data")
        let alice = try token("alice"), bob = try token("bob")
        var acknowledged: [Int: String] = [:]
        var id = ""
        // Round 0 restarts with the caches as the kill left them; round 1 without the checkpoint; round 2
        // with the index cut in the middle of a page.
        for round in 0..<3 {
            let server = try RunningServer(data: data)
            if round == 0 {
                let created = try server.request("POST", "/v1/conversations", token: alice, body: body(#"{"members":["alice","bob"]}"#))
                id = String(created.body.split(separator: "\"")[3])
            }
            let acks = Locked<[(Int, String)]>([])
            let failures = Locked<[String]>([])
            let posters = DispatchGroup()
            let port = server.port
            let pid = server.process.processIdentifier
            let postingEnds = Date().addingTimeInterval(120)
            for poster in 0..<6 {
                posters.enter()
                Thread { [id, port] in
                    defer { posters.leave() }
                    var i = 0
                    // Until the kill (bounded: 5,000 messages or 120 s a poster).
                    while i < 5_000 && Date() < postingEnds {
                        let content = "round \(round) poster \(poster) message \(i)"
                        switch Self.post(port: port, "/v1/conversations/\(id)/messages", token: poster % 2 == 0 ? alice : bob,
                                         body: Data("{\"content\":\"\(content)\"}".utf8)) {
                        case .success(let seq):
                            acks.update { $0.append((seq, content)) }
                        case .failure(let failure):
                            // Not acknowledged: the server is gone (the kill), or it failed this one (a busy
                            // machine): the next message is sent after a pause, this one is never counted.
                            if kill(pid, 0) != 0 { return }
                            failures.update { if $0.count < 5 { $0.append(failure.reason) } }
                            usleep(20_000)
                        }
                        i += 1
                    }
                }.start()
            }
            // Let some acknowledgements through, then kill it mid-stream (bounded: 60 s at most).
            let wanted = 150 + Int.random(in: 0..<300)
            let deadline = Date().addingTimeInterval(60)
            while acks.get().count < wanted && Date() < deadline { usleep(2_000) }
            kill(server.process.processIdentifier, SIGKILL)
            server.process.waitUntilExit()
            #expect(posters.wait(timeout: .now() + 60) == .success, "a poster did not stop after the kill")
            let got = acks.get()
            #expect(got.count >= 100, "round \(round): only \(got.count) acknowledgements before the kill; failures: \(failures.get())")
            for (seq, content) in got {
                #expect(acknowledged[seq] == nil, "seq \(seq) acknowledged twice")
                acknowledged[seq] = content
            }
            switch round {
            case 1: try FileManager.default.removeItem(atPath: data + "/messages-index/checkpoint")
            case 2:
                let index = data + "/messages-index/index"
                let size = try #require(try FileManager.default.attributesOfItem(atPath: index)[.size] as? Int)
                #expect(truncate(index, off_t(size / 2 + 5)) == 0)
            default: break
            }
        }
        // Every acknowledged message is at its seq, seqs run 1, 2, 3... with nothing missing, through the API.
        let server = try RunningServer(data: data)
        let stored = try Self.allMessages(server, id, token: bob)
        #expect(stored.map(\.seq) == (0..<stored.count).map { $0 + 1 })
        let bySeq = Dictionary(stored.map { ($0.seq, $0.content) }, uniquingKeysWith: { a, _ in a })
        var lost = 0
        for (seq, content) in acknowledged where bySeq[seq] != content { lost += 1 }
        #expect(lost == 0, "\(lost) of \(acknowledged.count) acknowledged messages are not at their seq")
        #expect(server.stop() == 0)
        // The same messages offline, and the audit finds the index and checkpoint the clean stop left equal to the log.
        let offline = try CLI.presence(["messages", "--data", data, "--conversation", id, "--after-seq", "0", "--limit", "1000000"])
        #expect(offline.status == 0, "\(offline.stderr)")
        let lines = offline.stdout.split(separator: "\n")
        #expect(lines.count == stored.count)
        #expect(offline.stderr.contains("read through the message index"), "\(offline.stderr)")
        for (line, message) in zip(lines, stored) {
            #expect(line.hasPrefix("{\"seq\":\(message.seq),") && line.contains("\"content\":\"\(message.content)\""), "\(line)")
        }
        let audit = try CLI.presence(["audit", "--data", data, "--json"])
        let report = try #require(try JSONSerialization.jsonObject(with: Data(audit.stdout.utf8)) as? [String: Any])
        let messages = try #require(report["messages"] as? [String: Any], "\(audit.stdout)")
        #expect(messages["exit"] as? Int == 0, "\(audit.stdout)")
        #expect(messages["entries_checked"] as? Int == stored.count)
    }

    @Test func theMessagesCommandPagesLikeTheAPIAndRefusesWhatItCannotAnswer() throws {
        let scratch = Scratch()
        let data = scratch.file("data")
        let server = try RunningServer(data: data, extra: ["--message-cache", "1KiB"])
        let alice = try token("alice")
        let created = try server.request("POST", "/v1/conversations", token: alice, body: body(#"{"members":["alice","bob"]}"#))
        let id = String(created.body.split(separator: "\"")[3])
        for i in 1...30 {
            _ = try server.request("POST", "/v1/conversations/\(id)/messages", token: alice, body: body("{\"content\":\"m\(i)\"}"))
        }
        // Beside the running server (it opens nothing for writing), pages as the API gives them.
        for (query, arguments) in [("before_seq=11&limit=4", ["--before-seq", "11", "--limit", "4"]), ("after_seq=26", ["--after-seq", "26"]),
                                   ("limit=3", ["--limit", "3"])] {
            let api = try server.request("GET", "/v1/conversations/\(id)?\(query)", token: alice)
            let cli = try CLI.presence(["messages", "--data", data, "--conversation", id] + arguments)
            #expect(cli.status == 0, "\(cli.stderr)")
            let apiMessages = try #require(try JSONSerialization.jsonObject(with: Data(api.body.utf8)) as? [String: Any])["messages"] as? [[String: Any]]
            let apiLines = (apiMessages ?? []).map { try? JSONSerialization.data(withJSONObject: $0, options: [.sortedKeys]) }
            let cliLines = cli.stdout.split(separator: "\n").map {
                (try? JSONSerialization.jsonObject(with: Data($0.utf8))).flatMap { try? JSONSerialization.data(withJSONObject: $0, options: [.sortedKeys]) }
            }
            #expect(apiLines == cliLines, "\(query): \(api.body) vs \(cli.stdout)")
        }
        let unknown = try CLI.presence(["messages", "--data", data, "--conversation", "conv_none"])
        #expect(unknown.status == 64 && unknown.stderr.contains("no conversation 'conv_none'"), "\(unknown.stderr)")
        let both = try CLI.presence(["messages", "--data", data, "--conversation", id, "--after-seq", "1", "--before-seq", "5"])
        #expect(both.status == 64, "\(both.stderr)")
        let nowhere = try CLI.presence(["messages", "--data", scratch.file("empty"), "--conversation", id])
        #expect(nowhere.status == 64 && nowhere.stderr.contains("no messages log"), "\(nowhere.stderr)")
        #expect(server.stop() == 0)
    }
}
