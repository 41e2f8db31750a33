import Hummingbird
import NIOCore
import NIOPosix
import Presence
import Projector
import SegmentLog

/// The audit routes: what an operator (or a user, about themself) asks of the log, answered by the code
/// the CLI runs (`UserAudit`, `History`, `LogSummary`), so the API, the CLI and the web console agree.
///
///     GET /v1/users/{id}/history?from=T&to=T   operator, or {id} itself: {"user","sessions":[{"conn",
///                                              "gateway","start","end","end_reason","duration_ms"}]}
///                                              (as `presence history --format json`)
///     GET /v1/users/{id}/state?at=T            operator, or {id} itself: {"user","at","online","last_seen",
///                                              "connections","through_offset"} (as `presence state --at`)
///     GET /v1/log                              operator: the log's segments and totals (as `presence
///                                              log-info --json`) and its end offsets
///
/// Each reads the log from disk (as the commands do: without a lock, beside the writer) on NIO's thread
/// pool, never on an event loop.
extension PresenceHTTPServer {
    static func addAuditRoutes(to router: Router<BasicRequestContext>, state: PresenceNode, tokens: TokenAuthority) {
        router.get("v1/users/:id/history") { request, context in
            let claims = try await authenticate(request, tokens)
            let user = try pathParameter(context, "id", what: "user id")
            try requireOperatorOrSelf(claims, user)
            let query = request.uri.queryParameters
            let from = try time(query.get("from"), "from"), to = try time(query.get("to"), "to")
            if let from, let to, from > to {
                throw APIError(.badRequest, "invalid_request", "from (\(Timestamp.format(from))) is after to (\(Timestamp.format(to)))")
            }
            let logDirectory = try state.directory.logPath(presenceLogName)
            let sessions = try await offEventLoop {
                try History.sessions(logDirectory: logDirectory, user: user, horizon: state.horizon, from: from, to: to)
            }
            var out: [UInt8] = Array("{\"user\":".utf8)
            EventJSON.appendString(user, to: &out)
            out.append(contentsOf: ",\"sessions\":[".utf8)
            for (index, session) in sessions.enumerated() {
                if index > 0 { out.append(44) }
                session.appendJSON(to: &out)
            }
            out.append(contentsOf: "]}".utf8)
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: out)))
        }
        router.get("v1/users/:id/state") { request, context in
            let claims = try await authenticate(request, tokens)
            let user = try pathParameter(context, "id", what: "user id")
            try requireOperatorOrSelf(claims, user)
            guard let at = try time(request.uri.queryParameters.get("at"), "at") else {
                throw APIError(.badRequest, "invalid_request", "at is required: the time to fold the log up to (ISO-8601 with a zone, or epoch ms)")
            }
            let logDirectory = try state.directory.logPath(presenceLogName)
            let (found, through) = try await offEventLoop {
                try UserAudit.state(of: user, at: at, data: state.data, logDirectory: logDirectory, horizon: state.horizon)
            }
            var out: [UInt8] = Array("{\"user\":".utf8)
            EventJSON.appendString(user, to: &out)
            out.append(contentsOf: ",\"at\":".utf8)
            Timestamp.appendJSON(at, to: &out)
            out.append(44)
            found.appendJSONFields(to: &out)
            out.append(contentsOf: ",\"through_offset\":\(through)}".utf8)
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: out)))
        }
        router.get("v1/log") { request, _ in
            let claims = try await authenticate(request, tokens)
            guard claims.isOperator else { throw APIError(.forbidden, "forbidden", "the log's figures are for operator tokens (`presence token --operator`)") }
            let logDirectory = try state.directory.logPath(presenceLogName)
            let summary = try await offEventLoop { try LogSummary.read(directory: logDirectory) }
            var out = "{\"log\":\"\(presenceLogName)\",\"segments\":["
            out += summary.segments.map { segmentJSON($0, name: "\"segment\":\"\(Log.segmentName($0.baseOffset))\"") }.joined(separator: ",")
            out += "],\"total\":\(segmentJSON(summary.total, name: "\"segments\":\(summary.segments.count)"))"
            out += ",\"log_end_offset\":\(state.writer.endOffset),\"durable_end_offset\":\(state.writer.durableEndOffset)}"
            return json(.ok, out)
        }
    }

    /// One segment (or the total) as `presence log-info --json` prints it; `name` is its first field.
    static func segmentJSON(_ s: LogSummary.Segment, name: String) -> String {
        var fields = [name, "\"base_offset\":\(s.baseOffset)", "\"end_offset\":\(s.endOffset)", "\"events\":\(s.records)",
                      "\"batches\":\(s.batches)", "\"log_bytes\":\(s.bytes)", "\"index_bytes\":\(s.indexBytes)"]
        if let perEvent = s.bytesPerEvent {
            fields.append("\"first_time\":\"\(Timestamp.format(s.firstTimestamp))\"")
            fields.append("\"last_time\":\"\(Timestamp.format(s.maxTimestamp))\"")
            fields.append("\"bytes_per_event\":\((perEvent * 1000).rounded() / 1000)")
        }
        return "{" + fields.joined(separator: ",") + "}"
    }

    /// An operator may audit anyone; a user only themself; a gateway nobody.
    static func requireOperatorOrSelf(_ claims: PresenceClaims, _ user: String) throws {
        if claims.isOperator || (claims.isUser && claims.sub.value == user) { return }
        if claims.isGateway { throw gatewayRefused }
        if claims.isAdmin { throw adminRefused }
        throw APIError(.forbidden, "forbidden", "a user reads only their own history and past state; an operator token (`presence token --operator`) reads anyone's")
    }

    /// A query's time (ISO-8601 with a zone, or epoch ms), nil when absent; 400 naming the parameter otherwise.
    static func time(_ text: String?, _ name: String) throws -> Int64? {
        guard let text else { return nil }
        guard let ms = Timestamp.parse(text) else {
            throw APIError(.badRequest, "invalid_request", "\(name) '\(text.prefix(64))' is not a time: use ISO-8601 with a zone (2024-01-15T09:41:03Z) or epoch milliseconds")
        }
        return ms
    }

    /// Runs blocking work (reading the log) on NIO's thread pool, off the event loops.
    static func offEventLoop<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        do {
            return try await NIOThreadPool.singleton.runIfActive(body)
        } catch let error as LogError {
            throw APIError(.serviceUnavailable, "log_unavailable", error.message)
        }
    }
}
