import ClientInput
import Foundation
import Hummingbird
import NIOCore
import Presence
import SegmentLog

/// The web console: its page at `/` and its files at `/console/{name}`, embedded in the binary
/// (`ConsoleFiles`, generated from Sources/PresenceServer/Console by the EmbedConsole build plugin), and
/// the two small routes only it needs:
///
///     GET  /v1/console        no token: {"development_tokens":true|false} (whether the sign-in form may mint)
///     POST /v1/dev/tokens     --dev servers only: {"user":"alice","role":"user"|"operator"} -> 201
///                             {"token","user","role","expires_in"}; 404 on any other server
///
/// Everything else it shows comes from the documented API (conversations, the socket, the audit routes,
/// /metrics), with the signed-in user's token: the console has no back door.
///
/// Every file is sent with a strict Content-Security-Policy (scripts and styles from this server only, no
/// inline code, connections to this origin only, no framing), an ETag, and `Cache-Control: no-cache`:
/// browsers keep the files and ask again with `If-None-Match` (304), so a new binary is seen at once.
extension PresenceHTTPServer {
    static func addConsoleRoutes(to router: Router<BasicRequestContext>, tokens: TokenAuthority, configuration: ServerConfiguration) {
        router.get("/") { request, _ in ConsoleAssets.response(for: "index.html", request) }
        router.get("console/:file") { request, context in
            let name = try context.parameters.require("file")
            return ConsoleAssets.response(for: name, request)
        }
        router.get("v1/console") { _, _ in
            json(.ok, "{\"development_tokens\":\(configuration.developmentTokens)}")
        }
        router.post("v1/dev/tokens") { request, _ in
            guard configuration.developmentTokens else {
                throw APIError(.notFound, "not_found", "this server mints no tokens: it was not started with --dev; mint one with `presence token` and paste it")
            }
            let asked = try await decodeBody(DevToken.self, request, limit: 4096)
            guard let role = PresenceClaims.Role(rawValue: asked.role ?? "user"), role == .user || role == .operator else {
                throw APIError(.badRequest, "invalid_request", "role must be \"user\" or \"operator\"")
            }
            if let problem = PresenceClaims.subjectProblem(asked.user) {
                throw APIError(.badRequest, "invalid_request", "no token for that user: \(problem)")
            }
            let token = try await tokens.mint(subject: asked.user, role: role, ttl: DevToken.ttl)
            var out: [UInt8] = Array("{\"token\":\"\(token)\",\"user\":".utf8)
            EventJSON.appendString(asked.user, to: &out)
            out.append(contentsOf: ",\"role\":\"\(role.rawValue)\",\"expires_in\":\(Int(DevToken.ttl))}".utf8)
            return json(.created, String(decoding: out, as: UTF8.self))
        }
    }

    /// `POST /v1/dev/tokens`' body.
    struct DevToken: Decodable, JSONBodyShape {
        var user: String
        var role: String?
        static let example = #"{"user":"alice","role":"user"}"#
        /// A console session's length: a working day.
        static let ttl: TimeInterval = 12 * 3600
    }
}

/// The console's files, ready to send: bytes, type and ETag, computed once.
enum ConsoleAssets {
    struct Asset: Sendable {
        let body: ByteBuffer
        let contentType: String
        let etag: String
    }

    static let byName: [String: Asset] = {
        var assets: [String: Asset] = [:]
        for (name, text) in ConsoleFiles.all {
            let bytes = Array(text.utf8)
            let type: String
            switch name.split(separator: ".").last {
            case "html": type = "text/html; charset=utf-8"
            case "css": type = "text/css; charset=utf-8"
            case "js": type = "text/javascript; charset=utf-8"
            case "svg": type = "image/svg+xml"
            default: type = "application/octet-stream"
            }
            let etag = "\"" + String(CRC32C.checksum(bytes), radix: 16) + "-" + String(bytes.count, radix: 16) + "\""
            assets[name] = Asset(body: ByteBuffer(bytes: bytes), contentType: type, etag: etag)
        }
        return assets
    }()

    /// No inline script or style, nothing from elsewhere: the page talks to this server only (`'self'`
    /// covers its WebSocket too).
    static let contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        + "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"

    static func response(for name: String, _ request: Request) -> Response {
        guard let asset = byName[name] else {
            return PresenceHTTPServer.error(.notFound, "not_found", "the console has no file '\(name.prefix(64))'")
        }
        var headers: HTTPFields = [
            .contentType: asset.contentType,
            .eTag: asset.etag,
            .cacheControl: "no-cache",
            .contentSecurityPolicy: contentSecurityPolicy,
            .xContentTypeOptions: "nosniff",
        ]
        if request.headers[.ifNoneMatch]?.split(separator: ",").contains(where: { $0.trimmingCharacters(in: .whitespaces) == asset.etag }) == true {
            headers[.contentType] = nil
            return Response(status: .notModified, headers: headers)
        }
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: asset.body))
    }
}
