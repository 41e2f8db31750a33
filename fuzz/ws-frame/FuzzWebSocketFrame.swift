import Chat
import ClientInput
import FuzzSupport
import Presence

/// Any bytes as a WebSocket client frame (`{"op":...}`): `ClientRequest.read` gives a request or a
/// refusal, never a crash. A request it gives is of JSON that `StrictJSON` accepts and reads back the
/// same when written out again; a message the chat domain accepts (`ChatRules.message`) is within the
/// documented limits; a refusal's error frame is itself valid JSON. Traps (on purpose) when one of these fails.
func check(_ bytes: [UInt8]) {
    switch ClientRequest.read(bytes) {
    case .failure(let refusal):
        let frame = Array(refusal.frame.utf8)
        do throws(EventParseError) { try StrictJSON.check(frame) } catch {
            fatalError("the error frame \(refusal.frame) is not valid JSON: \(error)")
        }
    case .success(let request):
        do throws(EventParseError) { try StrictJSON.check(bytes) } catch {
            fatalError("read \(request) from a frame StrictJSON refuses (\(error)): \(String(decoding: bytes, as: UTF8.self))")
        }
        let written = write(request)
        guard case .success(let again) = ClientRequest.read(written), again == request else {
            fatalError("\(request) written as \(String(decoding: written, as: UTF8.self)) reads back differently")
        }
        // A message the chat domain would post is within its documented limits.
        if case .send(_, let content, let clientID) = request, (try? ChatRules.message(content: content, clientID: clientID)) != nil {
            guard !content.isEmpty, content.utf8.count <= 16 * 1024, clientID.map({ !$0.isEmpty && $0.utf8.count <= 256 }) ?? true
            else { fatalError("a send outside the limits was accepted: \(request)") }
        }
    }
}

/// The request as a client would write it.
func write(_ request: ClientRequest) -> [UInt8] {
    var out: [UInt8] = []
    func field(_ name: String, _ value: String) {
        out.append(contentsOf: ",\"\(name)\":".utf8)
        EventJSON.appendString(value, to: &out)
    }
    switch request {
    case .open(let conversation, let presenceCursor):
        out.append(contentsOf: #"{"op":"open""#.utf8)
        field("conversation", conversation)
        if let presenceCursor { out.append(contentsOf: ",\"presence_cursor\":\(presenceCursor)".utf8) }
    case .close(let conversation):
        out.append(contentsOf: #"{"op":"close""#.utf8)
        field("conversation", conversation)
    case .send(let conversation, let content, let clientID):
        out.append(contentsOf: #"{"op":"send""#.utf8)
        field("conversation", conversation)
        field("content", content)
        if let clientID { field("client_id", clientID) }
    }
    out.append(125)
    return out
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzWebSocketFrame(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    check(fuzzBytes(data, size))
    return 0
}

@main
struct Main {
    static func main() { FuzzRunner.main(fuzzWebSocketFrame, check) }
}
