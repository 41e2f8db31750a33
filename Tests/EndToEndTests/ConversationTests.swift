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
        // Presence is shared with conversation members only.
        #expect(try server.request("GET", "/v1/users/bob/presence", token: alice).status == 200)
        #expect(try server.request("GET", "/v1/users/bob/presence", token: carol).status == 403)
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
