import Chat
import Foundation
import Hummingbird
import NIOCore
import Presence
import Projector

/// `GET` and `PUT /v1/me/privacy`, and the user presence route, which answers as the settings allow.
extension PresenceHTTPServer {
    static func addPrivacyRoutes(to router: Router<BasicRequestContext>, state: PresenceNode, tokens: TokenAuthority,
                                 configuration: ServerConfiguration) {
        // The caller's settings: {"last_seen":{"who":..,"except":[..]},"online":{"who":..,"except":[..]}}.
        router.get("v1/me/privacy") { request, _ in
            let claims = try await authenticateUser(request, tokens)
            return json(.ok, privacyJSON(state.privacy.current[claims.sub.value]))
        }
        // Changes either or both fields; answers the settings now in force. Nothing is stored unless the
        // whole body is understood.
        router.put("v1/me/privacy") { request, _ in
            let claims = try await authenticateUser(request, tokens)
            var request = request
            let body: ByteBuffer
            do {
                body = try await request.collectBody(upTo: configuration.maxBodyBytes)
            } catch is NIOTooManyBytesError {
                throw APIError(.contentTooLarge, "body_too_large", "the body is over the \(configuration.maxBodyBytes)-byte limit")
            }
            let bytes = Array(body.readableBytesView)
            do throws(EventParseError) {
                try StrictJSON.check(bytes)
            } catch {
                throw APIError(.badRequest, "invalid_json", "the body is not valid JSON: \(error.reason)")
            }
            let update: PrivacyUpdate
            do throws(ChatError) { update = try PrivacyUpdate.parse(bytes) } catch { throw APIError(chat: error) }
            let settings = try await chat { try await state.privacy.update(claims.sub.value, update) }
            return json(.ok, privacyJSON(settings))
        }
    }

    /// `{"last_seen":{"who":..,"except":[..]},"online":{"who":..,"except":[..]}}`.
    static func privacyJSON(_ settings: PrivacySettings) -> String {
        var out: [UInt8] = []
        func rule(_ name: String, _ rule: AudienceRule) {
            out.append(contentsOf: "\"\(name)\":{\"who\":\"\(rule.who.rawValue)\",\"except\":[".utf8)
            for (index, id) in rule.except.enumerated() {
                if index > 0 { out.append(44) }
                EventJSON.appendString(id, to: &out)
            }
            out.append(contentsOf: "]}".utf8)
        }
        out.append(123)
        rule("last_seen", settings.lastSeen)
        out.append(44)
        rule("online", settings.online)
        out.append(125)
        return String(decoding: out, as: UTF8.self)
    }

    /// The body of `GET /v1/users/{id}/presence` for `caller`: any user may ask, and is shown each field
    /// as `Access` allows (hidden ones read as unknown), with the cursor they reflect.
    static func userPresence(of user: String, for caller: String, state: PresenceNode) -> String {
        let contacts = state.access.areContacts(caller, user)
        return state.readShown { projection, access in
            var out: [UInt8] = Array("{\"user\":".utf8)
            EventJSON.appendString(user, to: &out)
            out.append(44)
            appendPresenceFields(of: user, projection, access.visibility(of: user, to: caller, contacts: contacts), to: &out)
            out.append(contentsOf: ",\"presence_cursor\":\(projection.nextOffset)}".utf8)
            return String(decoding: out, as: UTF8.self)
        }
    }
}
