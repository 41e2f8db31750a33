import Foundation
import Presence

/// What a WebSocket client frame asks for, once read: `{"op":"open"|"close","conversation":..}` (an
/// open may carry `"presence_cursor":N`) or
/// `{"op":"send","conversation":..,"content":..,"client_id":..}`. Reading a frame touches no state,
/// so any bytes can be tested (and fuzzed) here; `WebSocketSessions.handle` then carries it out.
package enum ClientRequest: Equatable {
    /// With a `presence_cursor`: resume from it (`presence_cursor` of an earlier `opened`, or one past
    /// the offset of the last presence frame the client took), on this node or another of the cluster.
    case open(conversation: String, presenceCursor: Int64? = nil)
    case close(conversation: String)
    /// A message to post, as the frame gave it (the chat domain checks its limits when it is posted).
    case send(conversation: String, content: String, clientID: String?)

    /// Why a frame was refused: the `{"type":"error",..}` frame's code and message, and the
    /// conversation it named, once it named one.
    package struct Refusal: Error, Equatable {
        package var code: String
        package var message: String
        package var conversation: String?

        /// The `{"type":"error",..}` frame that answers it.
        package var frame: String { ClientRequest.errorFrame(code, message, conversation: conversation) }
    }

    /// The frame's fields as JSON names them, decoded after `StrictJSON`'s checks.
    struct Frame: Decodable, JSONBodyShape {
        var op: String
        var conversation: String?
        var content: String?
        var clientID: String?
        var presenceCursor: Int64?
        enum CodingKeys: String, CodingKey { case op, conversation, content, clientID = "client_id", presenceCursor = "presence_cursor" }
        static let example = #"{"op":"open","conversation":"conv_…"}"#
    }

    /// Reads a text frame's bytes: the same JSON rules as every body (`StrictJSON`, then the frame's
    /// form), a known op, a conversation id, and for `send` the message's limits.
    package static func read(_ bytes: [UInt8]) -> Result<ClientRequest, Refusal> {
        let frame: Frame
        do throws(JSONInputProblem) {
            frame = try JSONInput.decode(Frame.self, bytes, what: "the frame")
        } catch {
            return .failure(Refusal(code: error.code, message: error.message))
        }
        guard ["open", "close", "send"].contains(frame.op) else {
            return .failure(Refusal(code: "invalid_request", message: "unknown op '\(frame.op)': use \"open\", \"close\" or \"send\""))
        }
        guard let conversation = frame.conversation, !conversation.isEmpty else {
            return .failure(Refusal(code: "invalid_request", message: "\"conversation\" must be a conversation id"))
        }
        switch frame.op {
        case "open":
            return .success(.open(conversation: conversation, presenceCursor: frame.presenceCursor))
        case "close":
            return .success(.close(conversation: conversation))
        default:
            // The message's limits are the chat domain's (`ChatRules.message`), checked where it is posted.
            return .success(.send(conversation: conversation, content: frame.content ?? "", clientID: frame.clientID))
        }
    }

    /// A `{"type":"error",..}` frame: `{"type":"error","conversation":..,"error":{"code":..,"message":..}}`,
    /// the conversation only when one is named.
    package static func errorFrame(_ code: String, _ message: String, conversation: String? = nil) -> String {
        var out: [UInt8] = Array("{\"type\":\"error\",".utf8)
        if let conversation {
            out.append(contentsOf: "\"conversation\":".utf8)
            EventJSON.appendString(conversation, to: &out)
            out.append(44)
        }
        out.append(contentsOf: "\"error\":{\"code\":\"\(code)\",\"message\":".utf8)
        EventJSON.appendString(message, to: &out)
        out.append(contentsOf: "}}".utf8)
        return String(decoding: out, as: UTF8.self)
    }
}
