import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing

/// An event's "id" de-duplicates: a line the log already holds (same gateway, same id, same event) is
/// acknowledged with its first offset and not written again, by `ingest` and by `POST /v1/events`,
/// across restarts; the same id on another event is refused.
@Suite struct EventIDTests {
    static let first = #"{"type":"connect","user":"alice","conn":"a1","gateway":"gw-1","ts":"2024-01-15T09:41:40.000Z","id":"evt-17"}"#
    static let other = #"{"type":"connect","user":"bob","conn":"b1","gateway":"gw-1","ts":"2024-01-15T09:41:41.000Z"}"#
    /// evt-17 again, on another event.
    static let conflicting = #"{"type":"connect","user":"carol","conn":"c1","gateway":"gw-1","ts":"2024-01-15T09:41:42.000Z","id":"evt-17"}"#
    /// evt-17 of another gateway: another id.
    static let otherGateway = #"{"type":"connect","user":"dan","conn":"d1","gateway":"gw-2","ts":"2024-01-15T09:41:43.000Z","id":"evt-17"}"#

    @Test func ingestWritesAnEventIdOnceAcrossRuns() throws {
        let dir = Scratch()
        let data = dir.file("data")
        let run1 = try CLI.presence(["ingest", "--data", data], input: Data([Self.first, Self.other, Self.first].joined(separator: "\n").utf8))
        #expect(run1.status == 0, "\(run1.stderr)")
        #expect(run1.stderr.contains("line 3: a repeat of event id \"evt-17\", written at offset 0; not written again"), "\(run1.stderr)")
        #expect(run1.stderr.contains("ingested 2 events, skipped 1 repeated event id (already in the log)"), "\(run1.stderr)")
        // A later run rebuilds the ids from the log.
        let run2 = try CLI.presence(["ingest", "--data", data], input: Data([Self.first, Self.otherGateway].joined(separator: "\n").utf8))
        #expect(run2.status == 0 && run2.stderr.contains("line 1: a repeat of event id \"evt-17\", written at offset 0"), "\(run2.stderr)")
        let conflict = try CLI.presence(["ingest", "--data", data], input: Data(Self.conflicting.utf8))
        #expect(conflict.status == 2)
        #expect(conflict.stderr.contains("line 1: event id \"evt-17\" was used at offset 0 for another event of this gateway; refused"), "\(conflict.stderr)")
        let dump = try CLI.presence(["dump", "--data", data]).stdout.lines
        #expect(dump == [Self.first, Self.other, Self.otherGateway], "\(dump)")
        // Past the window the id is free again: evt-17 was written 3 s before the newest event.
        let late = try CLI.presence(["ingest", "--data", data, "--id-window", "1s"], input: Data(Self.conflicting.utf8))
        #expect(late.status == 0, "\(late.stderr)")
    }

    @Test func postingAnEventIdAgainIsAcknowledgedWithItsFirstOffset() throws {
        let dir = Scratch()
        let data = dir.file("data")
        var server: RunningServer? = try RunningServer(data: data)
        let gateway = try token("gw-1", gateway: true)
        func post(_ lines: [String]) throws -> RunningServer.Reply {
            try #require(server).request("POST", "/v1/events", token: gateway, body: Data(lines.joined(separator: "\n").utf8))
        }
        #expect(try post([Self.first]).body == #"{"first_offset":0,"last_offset":0}"#)
        #expect(try post([Self.first]).body == #"{"first_offset":0,"last_offset":0,"repeats":[{"line":1,"offset":0}]}"#)
        #expect(try post([Self.other, Self.first, Self.first]).body == #"{"first_offset":0,"last_offset":1,"repeats":[{"line":2,"offset":0},{"line":3,"offset":0}]}"#)
        let conflict = try post([Self.conflicting])
        #expect(conflict.status == 400 && conflict.body.contains("was used at offset 0 for another event of this gateway"), "\(conflict.body)")
        // After a restart the ids come back from the log.
        #expect(try #require(server).stop() == 0)
        server = try RunningServer(data: data)
        #expect(try post([Self.first]).body.contains(#""repeats":[{"line":1,"offset":0}]"#))
        // Retries racing each other: one writing, every answer with its offset.
        let retried = #"{"type":"disconnect","user":"alice","conn":"a1","gateway":"gw-1","ts":"2024-01-15T09:50:00.000Z","id":"evt-18"}"#
        let port = try #require(server).port
        let answers = Locked<[String]>([])
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            let body = postEvents(port: port, token: gateway, body: Data(retried.utf8)).body
            answers.update { $0.append(body) }
        }
        let offsets = Set(answers.get().map { $0.prefix(while: { $0 != "," }) })
        #expect(offsets == [#"{"first_offset":2"#], "\(answers.get())")
        #expect(try #require(server).stop() == 0)
        let dump = try CLI.presence(["dump", "--data", data]).stdout.lines.filter { !$0.contains("heartbeat") && !$0.contains("gateway_down") }
        #expect(dump.count == 3, "\(dump)")
    }
}

/// POST /v1/events to a server on `port`, from any thread.
func postEvents(port: Int, token: String, body: Data) -> (status: Int, body: String) {
    send(port: port, "POST", "/v1/events", token: token, body: body)
}

/// A request to a server on `port`, from any thread.
func send(port: Int, _ method: String, _ path: String, token: String, body: Data) -> (status: Int, body: String) {
    var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(path)")!)
    request.httpMethod = method
    request.httpBody = body
    request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
    let done = DispatchSemaphore(value: 0)
    let reply = Locked((status: -1, body: ""))
    URLSession.shared.dataTask(with: request) { data, response, _ in
        reply.set(((response as? HTTPURLResponse)?.statusCode ?? -1, String(decoding: data ?? Data(), as: UTF8.self)))
        done.signal()
    }.resume()
    done.wait()
    return reply.get()
}

/// A retry racing its original on another connection: creating the conversation of a pair, and posting
/// a message with a client id, are decided one after the other, so the race makes one of each.
@Suite struct RacingRetryTests {
    @Test func racingCreatesOfAPairMakeOneConversationAndRacingSendsOfAClientIdOneMessage() throws {
        let dir = Scratch()
        let server = try RunningServer(data: dir.file("data"))
        let alice = try token("alice")
        let port = server.port
        @Sendable func send(_ path: String, _ body: String) -> (status: Int, body: String) {
            var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(path)")!)
            request.httpMethod = "POST"
            request.httpBody = Data(body.utf8)
            request.setValue("Bearer \(alice)", forHTTPHeaderField: "Authorization")
            let done = DispatchSemaphore(value: 0)
            let reply = Locked((status: -1, body: ""))
            URLSession.shared.dataTask(with: request) { data, response, _ in
                reply.set(((response as? HTTPURLResponse)?.statusCode ?? -1, String(decoding: data ?? Data(), as: UTF8.self)))
                done.signal()
            }.resume()
            done.wait()
            return reply.get()
        }
        let created = Locked<[(status: Int, body: String)]>([])
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            let reply = send("/v1/conversations", #"{"members":["alice","bob"]}"#)
            created.update { $0.append(reply) }
        }
        let ids = Set(created.get().map(\.body))
        #expect(ids.count == 1, "\(created.get())")
        #expect(created.get().filter { $0.status == 201 }.count == 1 && created.get().filter { $0.status == 200 }.count == 7, "\(created.get())")
        let id = try #require(ids.first.flatMap { $0.split(separator: "\"").dropFirst(3).first }.map(String.init))
        let sent = Locked<[(status: Int, body: String)]>([])
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            let reply = send("/v1/conversations/\(id)/messages", #"{"content":"hi","client_id":"retry-1"}"#)
            sent.update { $0.append(reply) }
        }
        #expect(Set(sent.get().map { $0.body.prefix(while: { $0 != "," }) }) == [#"{"seq":1"#], "\(sent.get())")
        #expect(sent.get().filter { $0.status == 201 }.count == 1, "\(sent.get())")
        let page = try server.request("GET", "/v1/conversations/\(id)", token: alice)
        #expect(page.body.components(separatedBy: "\"seq\":").count == 2, "one message: \(page.body)")
        #expect(server.stop() == 0)
    }
}
