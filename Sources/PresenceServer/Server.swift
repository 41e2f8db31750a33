import Foundation
import Hummingbird
import NIOCore
import Presence
import Projector
import SegmentLog

/// How `presence serve` runs, validated once at start.
public struct ServerConfiguration: Sendable {
    public var data: String
    public var host = "127.0.0.1"
    public var port = 8080
    /// The largest request body accepted (bytes); larger ones get 413.
    public var maxBodyBytes = 4 << 20
    public var horizon = defaultLateArrivalHorizon
    public var log = LogConfiguration()

    public init(data: String) { self.data = data }
}

/// The HTTP API (this increment): health, gateway ingest, and a user's own presence.
///
///     GET  /health                    no token: {"status":"ok","log_end_offset":N,"durable_end_offset":N}
///     POST /v1/events                 gateway token; NDJSON; all lines valid or nothing is written;
///                                     200 {"first_offset":..,"last_offset":..} once durable
///     GET  /v1/users/{id}/presence    user token; {"user":..,"online":..,"last_seen":..,"connections":..,
///                                     "presence_cursor":N}
///
/// Errors are `{"error":{"code":"...","message":"..."}}` with the matching status: 401 for a missing,
/// bad or expired token, 403 for a token without the right, 400 for bad input, 413 for a body over
/// the limit.
public enum PresenceHTTPServer {
    /// Builds the application; `onRunning` gets the bound port.
    public static func application(state: LiveState, tokens: TokenAuthority, configuration: ServerConfiguration,
                                   onRunning: @escaping @Sendable (Int) async -> Void) -> some ApplicationProtocol {
        let router = Router(context: BasicRequestContext.self)
        router.get("health") { _, _ in
            json(.ok, "{\"status\":\"ok\",\"log_end_offset\":\(state.writer.endOffset),\"durable_end_offset\":\(state.writer.durableEndOffset)}")
        }
        router.post("v1/events") { request, _ in
            let claims: PresenceClaims
            switch await authenticate(request, tokens) {
            case .failure(let response): return response
            case .success(let found): claims = found
            }
            guard claims.isGateway else { return error(.forbidden, "forbidden", "only a gateway token may post events") }
            var request = request
            let body: ByteBuffer
            do {
                body = try await request.collectBody(upTo: configuration.maxBodyBytes)
            } catch is NIOTooManyBytesError {
                return error(.contentTooLarge, "body_too_large", "the body is over the \(configuration.maxBodyBytes)-byte limit")
            }
            return try await ingest(body, state: state, horizon: configuration.horizon)
        }
        router.get("v1/users/:id/presence") { request, context in
            let claims: PresenceClaims
            switch await authenticate(request, tokens) {
            case .failure(let response): return response
            case .success(let found): claims = found
            }
            let user = try context.parameters.require("id")
            // Presence is shared with members of a common conversation; until conversations exist, only with oneself.
            guard claims.sub.value == user else {
                return error(.forbidden, "forbidden", "you share no conversation with '\(user)'")
            }
            return state.read { projection in
                let presence = projection.state(of: user) ?? .init(user: user, online: false, lastSeen: nil, connections: 0)
                var out: [UInt8] = Array("{\"user\":".utf8)
                EventJSON.appendString(user, to: &out)
                out.append(contentsOf: ",\"online\":\(presence.online),\"last_seen\":".utf8)
                if let lastSeen = presence.lastSeen {
                    out.append(34)
                    Timestamp.append(lastSeen, to: &out)
                    out.append(34)
                } else {
                    out.append(contentsOf: "null".utf8)
                }
                out.append(contentsOf: ",\"connections\":\(presence.connections),\"presence_cursor\":\(projection.nextOffset)}".utf8)
                return json(.ok, String(decoding: out, as: UTF8.self))
            }
        }
        return Application(
            router: router,
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "PresenceLog"),
            onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? configuration.port) }
        )
    }

    /// Validates every line, then appends them all as one request: all or nothing.
    static func ingest(_ body: ByteBuffer, state: LiveState, horizon: Int64) async throws -> Response {
        let parser = NDJSONEventParser()
        var records = RecordBuffer()
        var problems: [(line: Int, reason: String)] = []
        var newest = state.read { $0.maxTimestamp == Int64.min ? nil : $0.maxTimestamp }
        body.withUnsafeReadableBytes { raw in
            var number = 0
            var start = 0
            while start < raw.count {
                let end = raw[start...].firstIndex(of: 10) ?? raw.count
                number += 1
                var line = UnsafeRawBufferPointer(rebasing: raw[start..<end])
                if line.last == 13 { line = UnsafeRawBufferPointer(rebasing: line.dropLast()) }
                start = end + 1
                if line.allSatisfy({ $0 == 32 || $0 == 9 }) { continue }
                do throws(EventParseError) {
                    try parser.append(line, to: &records)
                    let timestamp = records.timestamp(at: records.count - 1)
                    if let limit = newest.map({ $0 - horizon }), timestamp < limit {
                        records.removeLast()
                        throw EventParseError("event time \(Timestamp.format(timestamp)) is older than the late-arrival horizon")
                    }
                    newest = max(newest ?? timestamp, timestamp)
                } catch {
                    problems.append((number, error.reason))
                }
            }
        }
        if !problems.isEmpty {
            var out: [UInt8] = Array("{\"error\":{\"code\":\"invalid_events\",\"message\":".utf8)
            EventJSON.appendString("\(problems.count) line\(problems.count == 1 ? "" : "s") rejected; nothing was written", to: &out)
            out.append(contentsOf: ",\"lines\":[".utf8)
            for (index, problem) in problems.prefix(1000).enumerated() {
                if index > 0 { out.append(44) }
                out.append(contentsOf: "{\"line\":\(problem.line),\"reason\":".utf8)
                EventJSON.appendString(problem.reason, to: &out)
                out.append(125)
            }
            out.append(contentsOf: "]}}".utf8)
            return json(.badRequest, String(decoding: out, as: UTF8.self))
        }
        guard !records.isEmpty else { return error(.badRequest, "empty_body", "the body holds no events") }
        do {
            let ack = try await state.append(records)
            return json(.ok, "{\"first_offset\":\(ack.offsets.lowerBound),\"last_offset\":\(ack.offsets.upperBound)}")
        } catch let failure as LogError {
            return error(.serviceUnavailable, "log_unavailable", failure.message)
        }
    }

    enum Authentication {
        case success(PresenceClaims)
        case failure(Response)
    }

    static func authenticate(_ request: Request, _ tokens: TokenAuthority) async -> Authentication {
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer ") else {
            return .failure(error(.unauthorized, "unauthorized", "a bearer token is required (Authorization: Bearer <token>)"))
        }
        do {
            return .success(try await tokens.verify(String(header.dropFirst("Bearer ".count))))
        } catch {
            return .failure(Self.error(.unauthorized, "unauthorized", "the token is not valid: \(error)"))
        }
    }

    static func json(_ status: HTTPResponse.Status, _ body: String) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: body)))
    }

    static func error(_ status: HTTPResponse.Status, _ code: String, _ message: String) -> Response {
        var out: [UInt8] = Array("{\"error\":{\"code\":\"\(code)\",\"message\":".utf8)
        EventJSON.appendString(message, to: &out)
        out.append(contentsOf: "}}".utf8)
        return json(status, String(decoding: out, as: UTF8.self))
    }
}
