import Foundation
import Presence

/// A JSON body's form, for the errors that refuse another.
package protocol JSONBodyShape {
    /// A valid example, as errors show it.
    static var example: String { get }
}

/// Why a client's JSON (a request body, a WebSocket frame) was refused: the API error's code and
/// message (the server answers it with 400).
package struct JSONInputProblem: Error, Equatable {
    package var code: String
    package var message: String
}

/// Client JSON read under the events' rules (`StrictJSON`: valid UTF-8 and escapes, no field twice),
/// then decoded to its form; every refusal names what is wrong.
package enum JSONInput {
    /// `bytes` as `Body` (a JSON object), or the problem that says what is wrong with it; `what` names
    /// it ("the body", "the frame").
    package static func decode<Body: Decodable & JSONBodyShape>(_ type: Body.Type, _ bytes: [UInt8], what: String) throws(JSONInputProblem) -> Body {
        do throws(EventParseError) {
            try StrictJSON.check(bytes)
        } catch {
            throw JSONInputProblem(code: "invalid_json", message: "\(what) is not valid JSON: \(error.reason)")
        }
        guard bytes.first(where: { $0 != 32 && $0 != 9 && $0 != 10 && $0 != 13 }) == 123 else {
            throw JSONInputProblem(code: "invalid_json", message: "\(what) must be a JSON object, such as \(Body.example)")
        }
        do {
            return try JSONDecoder().decode(Body.self, from: Data(bytes))
        } catch let DecodingError.keyNotFound(key, _) {
            throw JSONInputProblem(code: "invalid_request", message: "\(what) has no \"\(key.stringValue)\": it should be like \(Body.example)")
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context) {
            let field = context.codingPath.first?.stringValue ?? "?"
            throw JSONInputProblem(code: "invalid_request", message: "\"\(field)\" in \(what) has the wrong type: it should be like \(Body.example)")
        } catch {
            throw JSONInputProblem(code: "invalid_request", message: "\(what) is not of the expected form \(Body.example)")
        }
    }
}
