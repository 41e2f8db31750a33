import Foundation
import Testing

@Suite(.serialized) struct ConversationTests {
    func body(_ json: String) -> Data { Data(json.utf8) }

    @Test func theSnapshotCarriesMessagesAndPeersPresenceInOneRoundTrip() throws {
        let dir = Scratch()
        let data = dir.file("data")
        var server = try RunningServer(data: data)
        let alice = try token("alice"), bob = try token("bob"), carol = try token("carol")
        let created = try server.request("POST", "/v1/conversations", token: alice, body: body(#"{"members":["alice","bob"]}"#))
        #expect(created.status == 201, "\(created.body)")
        let id = String(created.body.split(separator: "\"")[3])
        #expect(id.hasPrefix("conv_"))
        for i in 1...3 {
            let posted = try server.request("POST", "/v1/conversations/\(id)/messages", token: i == 2 ? bob : alice, body: body(#"{"content":"hey \#(i)"}"#))
            #expect(posted.status == 201)
            #expect(posted.body.hasPrefix("{\"seq\":\(i),\"ts\":\""), "\(posted.body)")
        }
        // Bob's phone connects through a gateway; Alice's snapshot shows him online, with the cursor.
        let gateway = try token("gw-1", gateway: true)
        let events = #"{"type":"connect","user":"bob","conn":"bob-phone-1","gateway":"gw-1","ts":"2024-01-15T09:40:00Z"}"#
        #expect(try server.request("POST", "/v1/events", token: gateway, body: body(events)).status == 200)
        let snapshot = try server.request("GET", "/v1/conversations/\(id)?after_seq=1&limit=1", token: alice)
        #expect(snapshot.status == 200)
        #expect(snapshot.body.hasPrefix("{\"conversation_id\":\"\(id)\",\"messages\":[{\"seq\":2,\"sender\":\"bob\",\"content\":\"hey 2\",\"ts\":\""), "\(snapshot.body)")
        #expect(snapshot.body.hasSuffix("\"has_more\":true,\"presence\":{\"bob\":{\"online\":true,\"last_seen\":null,\"connections\":1}},\"presence_cursor\":1}"), "\(snapshot.body)")
        let rest = try server.request("GET", "/v1/conversations/\(id)?after_seq=2", token: bob)
        #expect(rest.body.contains("\"seq\":3") && rest.body.contains("\"has_more\":false"))
        #expect(rest.body.contains("\"presence\":{\"alice\":{\"online\":false,\"last_seen\":null,\"connections\":0}}"))
        // By default (contacts) presence is shown to conversation members only; to others it reads as never seen.
        #expect(try server.request("GET", "/v1/users/bob/presence", token: alice).body.contains("\"online\":true"))
        let stranger = try server.request("GET", "/v1/users/bob/presence", token: carol)
        #expect(stranger.status == 200 && stranger.body.hasPrefix(#"{"user":"bob","online":false,"last_seen":null,"connections":0,"#))
        // Restart: the messages are back, numbering goes on.
        #expect(server.stop() == 0)
        server = try RunningServer(data: data)
        let after = try server.request("POST", "/v1/conversations/\(id)/messages", token: bob, body: body(#"{"content":"back"}"#))
        #expect(after.body.hasPrefix("{\"seq\":4,"), "\(after.body)")
        #expect(server.stop() == 0)
    }

    @Test func membersOnlyAndBadInputAnswersWithTheRightStatus() throws {
        let dir = Scratch()
        let server = try RunningServer(data: dir.file("data"), extra: ["--max-body", "8KiB"])
        let alice = try token("alice"), carol = try token("carol")
        let created = try server.request("POST", "/v1/conversations", token: alice, body: body(#"{"members":["alice","bob"]}"#))
        let id = String(created.body.split(separator: "\"")[3])
        #expect(try server.request("POST", "/v1/conversations", token: carol, body: body(#"{"members":["alice","bob"]}"#)).status == 403)
        #expect(try server.request("POST", "/v1/conversations", token: alice, body: body(#"{"members":"bob"}"#)).status == 400)
        #expect(try server.request("POST", "/v1/conversations", token: alice, body: body(#"{"members":["alice"]}"#)).status == 400)
        let malformed = try server.request("POST", "/v1/conversations", token: alice, body: body("{members"))
        #expect(malformed.status == 400)
        #expect(malformed.body.contains("\"code\":\"invalid_json\""))
        #expect(try server.request("GET", "/v1/conversations/\(id)", token: carol).status == 403)
        #expect(try server.request("GET", "/v1/conversations/conv_nothere", token: alice).status == 404)
        #expect(try server.request("GET", "/v1/conversations/\(id)", token: nil).status == 401)
        #expect(try server.request("GET", "/v1/conversations/\(id)?after_seq=x", token: alice).status == 400)
        #expect(try server.request("GET", "/v1/conversations/\(id)?after_seq=-1", token: alice).status == 400)
        #expect(try server.request("GET", "/v1/conversations/\(id)?limit=0", token: alice).status == 400)
        // Numbers too long for an Int are still numbers: a huge limit is capped, a huge after_seq is past every message.
        let hugeNumbers = try server.request("GET", "/v1/conversations/\(id)?after_seq=99999999999999999999999&limit=99999999999999999999999", token: alice)
        #expect(hugeNumbers.status == 200 && hugeNumbers.body.contains("\"messages\":[]"), "\(hugeNumbers.body)")
        #expect(try server.request("POST", "/v1/conversations/\(id)/messages", token: carol, body: body(#"{"content":"hi"}"#)).status == 403)
        #expect(try server.request("POST", "/v1/conversations/\(id)/messages", token: alice, body: body(#"{"content":5}"#)).status == 400)
        #expect(try server.request("POST", "/v1/conversations/conv_nothere/messages", token: alice, body: body(#"{"content":"hi"}"#)).status == 404)
        let huge = "{\"content\":\"" + String(repeating: "x", count: 20_000) + "\"}"
        #expect(try server.request("POST", "/v1/conversations/\(id)/messages", token: alice, body: body(huge)).status == 413)
        // Nothing of the refused requests reached the conversation.
        let snapshot = try server.request("GET", "/v1/conversations/\(id)", token: alice)
        #expect(snapshot.body.contains("\"messages\":[]"))
        #expect(server.stop() == 0)
    }
}

/// What a chat client asks for next: its pages newest first, and one conversation per pair of users.
@Suite(.serialized) struct ChatClientTests {
    func body(_ json: String) -> Data { Data(json.utf8) }
    func seqs(_ reply: RunningServer.Reply) -> [Int] {
        let object = try? JSONSerialization.jsonObject(with: Data(reply.body.utf8)) as? [String: Any]
        return (object?["messages"] as? [[String: Any]] ?? []).compactMap { $0["seq"] as? Int }
    }
    func hasMore(_ reply: RunningServer.Reply) -> Bool? {
        (try? JSONSerialization.jsonObject(with: Data(reply.body.utf8)) as? [String: Any])?["has_more"] as? Bool
    }

    @Test func aChatOpensAtTheBottomAndPagesBackWithBeforeSeq() throws {
        let dir = Scratch()
        let server = try RunningServer(data: dir.file("data"))
        let alice = try token("alice")
        let created = try server.request("POST", "/v1/conversations", token: alice, body: body(#"{"members":["alice","bob"]}"#))
        let id = String(created.body.split(separator: "\"")[3])
        for n in 1...7 {
            #expect(try server.request("POST", "/v1/conversations/\(id)/messages", token: alice, body: body(#"{"content":"m\#(n)"}"#)).status == 201)
        }
        // No cursor: the newest, in seq order, and older ones exist. Twice: the second may come from the fast path.
        for _ in 0..<2 {
            let bottom = try server.request("GET", "/v1/conversations/\(id)?limit=3", token: alice)
            #expect(seqs(bottom) == [5, 6, 7] && hasMore(bottom) == true, "\(bottom.body)")
        }
        let back = try server.request("GET", "/v1/conversations/\(id)?before_seq=5&limit=3", token: alice)
        #expect(seqs(back) == [2, 3, 4] && hasMore(back) == true, "\(back.body)")
        let first = try server.request("GET", "/v1/conversations/\(id)?before_seq=2&limit=3", token: alice)
        #expect(seqs(first) == [1] && hasMore(first) == false, "\(first.body)")
        let raw = try RawConnection(port: server.port).exchange("GET /v1/conversations/\(id)?before_seq=5&limit=3 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(alice)\r\n\r\n")
        #expect(raw.body == back.body, "\(raw.body)")
        // Forward from a cursor is as before.
        let forward = try server.request("GET", "/v1/conversations/\(id)?after_seq=5", token: alice)
        #expect(seqs(forward) == [6, 7] && hasMore(forward) == false, "\(forward.body)")
        let all = try server.request("GET", "/v1/conversations/\(id)", token: alice)
        #expect(seqs(all) == Array(1...7) && hasMore(all) == false, "\(all.body)")
        let both = try server.request("GET", "/v1/conversations/\(id)?after_seq=1&before_seq=5", token: alice)
        #expect(both.status == 400 && both.body.contains("not both"), "\(both.body)")
        #expect(try server.request("GET", "/v1/conversations/\(id)?before_seq=x", token: alice).status == 400)
        #expect(server.stop() == 0)
    }

    @Test func theInboxListsTheCallersConversationsMostRecentFirstWithPeersPresence() throws {
        let dir = Scratch()
        let server = try RunningServer(data: dir.file("data"))
        let alice = try token("alice"), bob = try token("bob")
        func create(_ members: String, by creator: String) throws -> String {
            let created = try server.request("POST", "/v1/conversations", token: creator, body: body(#"{"members":[\#(members)]}"#))
            usleep(5_000)  // distinct times, so the order is the activity's
            return String(created.body.split(separator: "\"")[3])
        }
        let withBob = try create(#""alice","bob""#, by: alice)
        let withCarol = try create(#""alice","carol""#, by: alice)
        let group = try create(#""alice","bob","carol""#, by: alice)
        _ = try create(#""bob","carol""#, by: bob)
        #expect(try server.request("POST", "/v1/conversations/\(withBob)/messages", token: bob, body: body(#"{"content":"old"}"#)).status == 201)
        usleep(5_000)
        #expect(try server.request("POST", "/v1/conversations/\(withCarol)/messages", token: alice, body: body(#"{"content":"new"}"#)).status == 201)
        let connect = #"{"type":"connect","user":"carol","conn":"c1","gateway":"gw-1","ts":"2024-01-15T09:00:00Z"}"#
        #expect(try server.request("POST", "/v1/events", token: try token("gw-1", gateway: true), body: body(connect)).status == 200)
        let inbox = try server.request("GET", "/v1/me/conversations", token: alice)
        #expect(inbox.status == 200, "\(inbox.body)")
        let object = try JSONSerialization.jsonObject(with: Data(inbox.body.utf8)) as? [String: Any]
        let list = object?["conversations"] as? [[String: Any]] ?? []
        #expect(list.map { $0["id"] as? String ?? "" } == [withCarol, withBob, group], "\(inbox.body)")
        #expect((list.first?["last_message"] as? [String: Any])?["content"] as? String == "new", "\(inbox.body)")
        #expect(((list.first?["presence"] as? [String: Any])?["carol"] as? [String: Any])?["online"] as? Bool == true, "\(inbox.body)")
        #expect((list.dropFirst().first?["last_message"] as? [String: Any])?["seq"] as? Int == 1, "\(inbox.body)")
        #expect(list.last?["last_message"] is NSNull, "\(inbox.body)")
        #expect((list.last?["presence"] as? [String: Any]).map { Set($0.keys) } == ["bob", "carol"], "\(inbox.body)")
        #expect(list.last?["members"] as? [String] == ["alice", "bob", "carol"], "\(inbox.body)")
        #expect(object?["presence_cursor"] as? Int == 1, "\(inbox.body)")
        // Someone with no conversation has an empty inbox; a gateway has none at all.
        #expect(try server.request("GET", "/v1/me/conversations", token: try token("dave")).body == #"{"conversations":[],"presence_cursor":1}"#)
        #expect(try server.request("GET", "/v1/me/conversations", token: try token("gw-1", gateway: true)).status == 403)
        #expect(try server.request("GET", "/v1/me/conversations").status == 401)
        #expect(server.stop() == 0)
    }

    @Test func creatingTheConversationOfTwoUsersAgainReturnsIt() throws {
        let dir = Scratch()
        let data = dir.file("data")
        var server = try RunningServer(data: data)
        let alice = try token("alice"), bob = try token("bob")
        let first = try server.request("POST", "/v1/conversations", token: alice, body: body(#"{"members":["alice","bob"]}"#))
        #expect(first.status == 201, "\(first.body)")
        let again = try server.request("POST", "/v1/conversations", token: bob, body: body(#"{"members":["bob","alice"]}"#))
        #expect(again.status == 200 && again.body == first.body, "\(again.body)")
        // A group with the same two and a third is another conversation.
        let group = try server.request("POST", "/v1/conversations", token: alice, body: body(#"{"members":["alice","bob","carol"]}"#))
        #expect(group.status == 201 && group.body != first.body, "\(group.body)")
        // Rebuilt from the log after a restart.
        #expect(server.stop() == 0)
        server = try RunningServer(data: data)
        let afterRestart = try server.request("POST", "/v1/conversations", token: alice, body: body(#"{"members":["alice","bob"]}"#))
        #expect(afterRestart.status == 200 && afterRestart.body == first.body, "\(afterRestart.body)")
        #expect(server.stop() == 0)
    }
}
