import Chat
import Foundation
import Hummingbird
import Logging
import Metrics
import HummingbirdCore
import HummingbirdWebSocket
import NIOCore
import Prometheus
import Presence
import Projector
import SegmentLog

/// `POST /v1/events`: a gateway's events, checked whole, then appended as one request.
extension PresenceHTTPServer {
    /// Validates every line, then appends them all as one request: all or nothing. The sender is the
    /// gateway `gateway` (its token's name): a line naming another gateway refuses the whole body (403).
    static func ingest(_ body: ByteBuffer, gateway: String, state: PresenceNode) async throws -> Response {
        let parser = NDJSONEventParser()
        var records = RecordBuffer()
        var problems: [(line: Int, reason: String)] = []
        var foreign: [(line: Int, reason: String)] = []
        let ownGateway = Array(gateway.utf8)
        var lateArrivals = state.lateArrivalGuard()
        lateArrivals.refuser = .server
        var recordLines: [Int] = []  // the body's line number of each record
        body.withUnsafeReadableBytes { raw in
            NDJSONLines.forEach(in: raw) { number, line in
                do throws(EventParseError) {
                    if let named = try parser.append(line, to: &records, admittedBy: &lateArrivals, boundTo: ownGateway) {
                        foreign.append((number, "names gateway \"\(named)\"; this token is for gateway \"\(gateway)\""))
                    }
                    while recordLines.count < records.count { recordLines.append(number) }
                } catch {
                    problems.append((number, error.reason))
                }
            }
        }
        // A gateway speaks only for itself: one line naming another refuses the body, before any other
        // problem is looked at.
        if !foreign.isEmpty {
            return lineErrors(.forbidden, "forbidden", "\(foreign.count) line\(foreign.count == 1 ? " names" : "s name") another gateway than the token's; nothing was written", foreign)
        }
        if !problems.isEmpty {
            return lineErrors(.badRequest, "invalid_events", "\(problems.count) line\(problems.count == 1 ? "" : "s") rejected; nothing was written", problems)
        }
        guard !records.isEmpty else { return error(.badRequest, "empty_body", "the body holds no events") }
        func line(of record: Int?) -> Int { record.flatMap { recordLines.indices.contains($0) ? recordLines[$0] : nil } ?? 0 }
        let ack: PresenceNode.EventsAck
        do {
            ack = try await state.appendEvents(records)
        } catch {
            if let conflict = error as? PresenceNode.EventIDConflict {
                return lineErrors(.badRequest, "invalid_events", "1 line rejected; nothing was written", [(line(of: conflict.record), conflict.reason)])
            }
            guard let failure = error as? LogError else { throw error }
            guard failure.code == .refused else {
                let answer = APIError(storage: failure)
                return self.error(answer.status, answer.code, answer.message)
            }
            // Checked again on the commit thread against what was written since (a concurrent request
            // may have moved the newest event time on): refused whole, nothing written.
            return lineErrors(.badRequest, "invalid_events", "1 line rejected; nothing was written", [(line(of: failure.recordIndex), failure.message)])
        }
        // The offsets of the body's events; a repeat of an event id already written is at its first offset.
        var out = "{\"first_offset\":\(ack.offsets.min() ?? 0),\"last_offset\":\(ack.offsets.max() ?? 0)"
        if !ack.repeats.isEmpty {
            out += ",\"repeats\":[" + ack.repeats.map { "{\"line\":\(line(of: $0)),\"offset\":\(ack.offsets[$0])}" }.joined(separator: ",") + "]"
        }
        return json(.ok, out + "}")
    }

    /// `{"error":{"code":..,"message":..,"lines":[{"line":N,"reason":".."},..]}}` (the first 1000 lines).
    static func lineErrors(_ status: HTTPResponse.Status, _ code: String, _ message: String, _ lines: [(line: Int, reason: String)]) -> Response {
        var out: [UInt8] = Array("{\"error\":{\"code\":\"\(code)\",\"message\":".utf8)
        EventJSON.appendString(message, to: &out)
        out.append(contentsOf: ",\"lines\":[".utf8)
        for (index, problem) in lines.prefix(1000).enumerated() {
            if index > 0 { out.append(44) }
            out.append(contentsOf: "{\"line\":\(problem.line),\"reason\":".utf8)
            EventJSON.appendString(problem.reason, to: &out)
            out.append(125)
        }
        out.append(contentsOf: "]}}".utf8)
        return json(status, String(decoding: out, as: UTF8.self))
    }
}
