import ClientInput
import Testing

/// A WebSocket client frame is read to what it asks, or refused with the error frame the client is sent.
@Suite struct ClientRequestTests {
    func read(_ text: String) -> Result<ClientRequest, ClientRequest.Refusal> { ClientRequest.read(Array(text.utf8)) }

    @Test func theThreeOpsAreRead() {
        #expect(read(#"{"op":"open","conversation":"conv_1"}"#) == .success(.open(conversation: "conv_1")))
        #expect(read(#" {"conversation":"c\u00e9","op":"close"} "#) == .success(.close(conversation: "cé")))
        #expect(read(#"{"op":"open","conversation":"c","presence_cursor":42}"#) == .success(.open(conversation: "c", presenceCursor: 42)))
        #expect(read(#"{"op":"send","conversation":"c","content":"hi","client_id":"m1"}"#)
            == .success(.send(conversation: "c", content: "hi", clientID: "m1")))
        // The message's limits are the chat domain's, checked when it is posted.
        #expect(read(#"{"op":"send","conversation":"c"}"#) == .success(.send(conversation: "c", content: "", clientID: nil)))
    }

    @Test func badFramesAreRefusedWithWhatIsWrong() throws {
        let cases: [(String, String, String)] = [
            ("{", "invalid_json", "the frame is not valid JSON"),
            (#"["open"]"#, "invalid_json", "the frame must be a JSON object"),
            (#"{"op":"open","op":"close","conversation":"c"}"#, "invalid_json", "the frame is not valid JSON"),
            (#"{"conversation":"c"}"#, "invalid_request", #"the frame has no "op""#),
            (#"{"op":1,"conversation":"c"}"#, "invalid_request", #""op" in the frame has the wrong type"#),
            (#"{"op":"join","conversation":"c"}"#, "invalid_request", "unknown op 'join'"),
            (#"{"op":"open","conversation":""}"#, "invalid_request", #""conversation" must be a conversation id"#),
            (#"{"op":"open"}"#, "invalid_request", #""conversation" must be a conversation id"#),
            (#"{"op":"open","conversation":"c","presence_cursor":"7"}"#, "invalid_request", #""presence_cursor" in the frame has the wrong type"#),
        ]
        for (frame, code, start) in cases {
            guard case .failure(let refusal) = read(frame) else {
                Issue.record("\(frame) was read")
                continue
            }
            #expect(refusal.code == code, "\(frame)")
            #expect(refusal.message.hasPrefix(start), "\(frame): \(refusal.message)")
            #expect(refusal.frame.hasPrefix(#"{"type":"error","error":{"code":"\#(code)","message":"#), "\(refusal.frame)")
        }
    }

    @Test func anErrorFrameNamingAConversationEscapesIt() {
        #expect(ClientRequest.errorFrame("not_found", "no \"x\"", conversation: "a\"b")
            == #"{"type":"error","conversation":"a\"b","error":{"code":"not_found","message":"no \"x\""}}"#)
    }
}
