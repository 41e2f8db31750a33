import Foundation
import Testing

/// Message posts taken ahead of the HTTP codec (`SnapshotAnswers+Posts`): the same requests,
/// pipelined on one connection, to a server with the fast path and to one without
/// (`PRESENCE_SNAPSHOT_FAST_PATH=off`: every request through the codec and the routes), get the same
/// statuses and bodies in the same order, and a snapshot asked behind a post shows the post.
@Suite struct PostFastPathTests {
    /// The answers of one connection: status line and body, in order (times and the conversation id
    /// replaced, as they differ between two servers).
    static func answers(fastPath: Bool) throws -> (answers: [String], taken: Int) {
        let dir = Scratch()
        let server = try RunningServer(data: dir.file("data"), environment: fastPath ? [:] : ["PRESENCE_SNAPSHOT_FAST_PATH": "off"])
        let alice = try token("alice"), carol = try token("carol")
        let created = try server.request("POST", "/v1/conversations", token: alice, body: Data(#"{"members":["alice","bob"]}"#.utf8))
        #expect(created.status == 201, "\(created.body)")
        let id = (try JSONSerialization.jsonObject(with: Data(created.body.utf8)) as? [String: Any])?["id"] as? String ?? ""
        // Both tokens verified once through the route, so the fast path knows them.
        #expect(try server.request("GET", "/v1/conversations/\(id)", token: alice).status == 200)
        #expect(try server.request("GET", "/v1/me/conversations", token: carol).status == 200)

        func post(_ body: String, token: String = alice, to conversation: String? = nil) -> String {
            "POST /v1/conversations/\(conversation ?? id)/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(token)\r\n"
                + "Content-Length: \(body.utf8.count)\r\n\r\n\(body)"
        }
        let get = "GET /v1/conversations/\(id) HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(alice)\r\n\r\n"
        let requests = [
            post(#"{"content":"zero"}"#),                      // no client id: answered from the commit thread
            post(#"{"content":"one","client_id":"c-1"}"#),
            get,                                              // behind the post: shows it
            post(#"{"content":"one again","client_id":"c-1"}"#),  // a retry: 200, the first seq
            post(#"{"content":""}"#),                          // the store refuses it: 400
            post(#"{"content":5}"#),                           // the decoder refuses it: the route's 400
            post(#"{"content":"x"}"#, token: carol),           // not a member: 403
            post(#"{"content":"x"}"#, to: "conv_nope"),        // no such conversation: 404
            post(#"{"content":"two"}"#),
            get,
            "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        ]
        let connection = try RawConnection(port: server.port)
        connection.send(requests.joined())
        let (text, closed) = connection.readUntilClosed(seconds: 20)
        #expect(closed, "the last request closes the connection: \(text)")
        let metrics = try server.request("GET", "/metrics", token: alice).body
        let taken = metrics.split(separator: "\n").first { $0.hasPrefix("presence_post_fast_path_total ") }
            .flatMap { Int($0.split(separator: " ").last ?? "") } ?? 0
        #expect(server.stop() == 0)

        // Split the stream into answers by their Content-Length.
        var answers: [String] = []
        var rest = Substring(text)
        while let headEnd = rest.range(of: "\r\n\r\n") {
            let head = rest[..<headEnd.lowerBound]
            let status = head.split(separator: "\r\n").first.map(String.init) ?? ""
            let length = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                .flatMap { Int($0.split(separator: ":").last?.trimmingCharacters(in: .whitespaces) ?? "") } ?? 0
            let bodyStart = headEnd.upperBound
            let bodyEnd = rest.utf8.index(bodyStart, offsetBy: length, limitedBy: rest.utf8.endIndex) ?? rest.endIndex
            var body = String(rest[bodyStart..<bodyEnd])
            body = body.replacingOccurrences(of: id, with: "CONV")
            body = body.replacingOccurrences(of: #""ts":"[^"]*""#, with: #""ts":"T""#, options: .regularExpression)
            body = body.replacingOccurrences(of: #""last_seen":"[^"]*""#, with: #""last_seen":"T""#, options: .regularExpression)
            answers.append(status + " " + body)
            rest = rest[bodyEnd...]
        }
        return (answers, taken)
    }

    @Test func postsAheadOfTheCodecAnswerAsTheRouteDoesAndInRequestOrder() throws {
        let (fast, taken) = try Self.answers(fastPath: true)
        let (route, none) = try Self.answers(fastPath: false)
        #expect(fast == route, "fast path:\n\(fast.joined(separator: "\n"))\nroute:\n\(route.joined(separator: "\n"))")
        #expect(fast.count == 11)
        #expect(fast.first == #"HTTP/1.1 201 Created {"seq":1,"ts":"T"}"#)
        #expect(fast.count > 1 && fast[1] == #"HTTP/1.1 201 Created {"seq":2,"ts":"T"}"#)
        #expect(fast.count > 2 && fast[2].contains(#""content":"one""#), "the snapshot behind the post shows it: \(fast)")
        #expect(fast.count > 3 && fast[3] == #"HTTP/1.1 200 OK {"seq":2,"ts":"T"}"#)
        #expect(fast.count > 4 && fast[4].hasPrefix("HTTP/1.1 400 Bad Request"))
        #expect(fast.count > 9 && fast[9].contains(#""content":"two""#))
        // The posts the store answered went ahead of the codec (zero, one, its retry, the empty one); the
        // others were the route's, and so was "two", read while the route's answers were on their way.
        #expect(taken == 4 && none == 0, "taken \(taken), with the fast path off \(none)")
    }
}
