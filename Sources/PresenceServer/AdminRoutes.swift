import ClientInput
import Erasure
import Foundation
import Hummingbird
import Presence
import SegmentLog

/// The admin route: erasing a user while the node serves, as `presence forget` does on a stopped one.
///
///     POST /v1/admin/forget   admin token, body {"user":"<id>"} → 200 {"user","presence_records",
///                             "privacy_records","segments_rewritten","bytes_before","bytes_after",
///                             "retention_bases","checkpoint","checkpoints_removed","completed_interrupted",
///                             "sessions_ended","cut_offset"}
///
/// 404 `unknown_user` when the data folder holds no record of the user (nothing changed; an earlier
/// erasure is named), 409 `erasure_running` while another runs, 501 `not_supported` on a cluster node,
/// 507 on a full disk; any other failure is a 500 `erasure_failed` that says the erasure is unfinished
/// (the same request again finishes it).
extension PresenceHTTPServer {
    static func addAdminRoutes(to router: Router<BasicRequestContext>, state: PresenceNode, tokens: TokenAuthority) {
        router.post("v1/admin/forget") { request, _ in
            let claims = try await authenticate(request, tokens)
            guard claims.isAdmin else {
                throw APIError(.forbidden, "forbidden", "erasing a user takes an admin token (`presence token --admin`)")
            }
            let body = try await decodeBody(ForgetBody.self, request, limit: 4096)
            let user = body.user
            if let problem = PresenceClaims.subjectProblem(user) {
                throw APIError(.badRequest, "invalid_request", "\"user\": \(problem)")
            }
            let report: PresenceNode.ErasureReport
            do {
                report = try await state.forget(user: user)
            } catch let refusal as PresenceNode.ErasureRefusal {
                switch refusal.reason {
                case .busy: throw APIError(.conflict, "erasure_running", refusal.description)
                case .unsupported: throw APIError(.notImplemented, "not_supported", refusal.description)
                }
            } catch let refusal as Erasure.Refusal {
                throw refusal.unknownUser ? APIError(.notFound, "unknown_user", refusal.description)
                    : APIError(.notImplemented, "not_supported", refusal.description)
            } catch let failure as LogError where failure.code == .noSpace || failure.code == .closed {
                throw APIError(storage: failure)
            } catch {
                throw APIError(.internalServerError, "erasure_failed",
                               "the erasure stopped part way (\(error)); every segment is whole and the node serves the state it had: send the same request again to finish it")
            }
            let outcome = report.outcome
            var out: [UInt8] = Array("{\"user\":".utf8)
            EventJSON.appendString(user, to: &out)
            out.append(contentsOf: """
                ,"presence_records":\(outcome.presenceRecords),"privacy_records":\(outcome.privacyRecords),\
                "segments_rewritten":\(outcome.segmentsRewritten),"bytes_before":\(outcome.bytesBefore),\
                "bytes_after":\(outcome.bytesAfter),"retention_bases":\(outcome.baseCheckpoints),"checkpoint":
                """.utf8)
            if let checkpoint = outcome.checkpoint { EventJSON.appendString(checkpoint, to: &out) } else { out.append(contentsOf: "null".utf8) }
            out.append(contentsOf: """
                ,"checkpoints_removed":\(outcome.checkpointsRemoved),"completed_interrupted":\(outcome.resumed),\
                "sessions_ended":\(report.sessionsEnded),"cut_offset":\(report.cut)}
                """.utf8)
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: out)))
        }
    }

    /// `POST /v1/admin/forget`'s body: the user, and nothing else (a key this server does not know, such
    /// as a dry-run switch it does not have, is refused rather than ignored).
    struct ForgetBody: Decodable, JSONBodyShape {
        var user: String
        static let example = #"{"user":"bob"}"#

        private struct AnyKey: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }

        init(from decoder: any Decoder) throws {
            let fields = try decoder.container(keyedBy: AnyKey.self)
            if let unknown = fields.allKeys.first(where: { $0.stringValue != "user" }) {
                throw DecodingError.dataCorruptedError(forKey: unknown, in: fields, debugDescription: "unknown key")
            }
            user = try fields.decode(String.self, forKey: AnyKey(stringValue: "user"))
        }
    }
}
