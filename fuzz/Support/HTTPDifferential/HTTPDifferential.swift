import Foundation
import HTTPTypes
import HummingbirdCore
import NIOCore
import NIOEmbedded
import NIOHTTP1
import ClientInput

/// `SnapshotFastPath`'s reading of a byte stream against NIO's `HTTPRequestDecoder` (configured as
/// Hummingbird configures it), for the unit tests and the `fuzz-http` target.
///
/// The stream goes, in the same chunks, to a decoder alone (the reference) and through a model of the
/// fast path: `RequestFraming` steps, as `SnapshotFastPath.process` takes them, with every request
/// the handler could answer answered (a snapshot GET with no body, one bearer token and a valid query,
/// as if its token were verified and the codec had answered everything before it) and everything else
/// forwarded, byte for byte, to a second decoder (the codec behind the fast path). The server's
/// reading is the answered requests and the second decoder's requests in stream order; it must be the
/// reference's request for request: the same boundaries, the same heads and bodies, an answered
/// request exactly the GET the reference decoded (target, token, no body), a refusal where the
/// reference has the refused head or an error, and no request where the reference has none. Both
/// readings stop at a decoder error (Hummingbird answers 400 and closes).
package enum HTTPDifferential {
    /// The largest body any route takes, as the server is configured by default (`--max-body`).
    package static let maxBodyBytes = 16 << 20

    /// One request as NIO's decoder read it.
    package struct DecodedRequest: Equatable, CustomStringConvertible {
        package var head: HTTPRequestHead
        package var body: [UInt8] = []
        package var ended = false
        package var description: String { "\(head.method) \(head.uri) \(head.version) \(head.headers) body \(body.count) bytes\(ended ? "" : ", unfinished")" }
    }

    /// NIO's HTTP/1 request decoder in an `EmbeddedChannel`, fed chunk by chunk.
    package final class Decoder {
        private let channel = EmbeddedChannel()
        private var handler: ByteToMessageHandler<HTTPRequestDecoder>
        package private(set) var requests: [DecodedRequest] = []
        /// The index of the request the decoder failed in (its head or its body), if it failed.
        package private(set) var failedAt: Int?

        package init() {
            handler = Self.makeHandler()
            // Adding a handler to a fresh EmbeddedChannel cannot fail.
            try? channel.pipeline.syncOperations.addHandler(handler)
        }

        private static func makeHandler() -> ByteToMessageHandler<HTTPRequestDecoder> {
            var limits = NIOHTTPDecoderLimitConfiguration()
            limits.maxHeaderFieldCount = 1000  // Hummingbird's
            return ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes, limitConfiguration: limits))
        }

        /// Makes this a fresh decoder (a new `HTTPRequestDecoder`, nothing read, no error) in the same
        /// channel: what a new `Decoder` is, for a fraction of its cost (the fuzzer's one pair is reset
        /// for every input instead of two channels being made and finished).
        package func reset() {
            _ = channel.pipeline.syncOperations.removeHandler(handler)
            channel.embeddedEventLoop.run()
            // The removed decoder's leftovers (parts decoded from bytes it held, or an error) are dropped.
            while true {
                do { guard try channel.readInbound(as: NIOAny.self) != nil else { break } } catch { continue }
            }
            _ = try? channel.throwIfErrorCaught()
            handler = Self.makeHandler()
            try? channel.pipeline.syncOperations.addHandler(handler)
            requests = []
            failedAt = nil
        }

        // The channel holds its pipeline (and the pipeline it) until it is finished.
        deinit { _ = try? channel.finish(acceptAlreadyClosed: true) }

        package func feed(_ bytes: [UInt8]) {
            guard failedAt == nil, !bytes.isEmpty else { return }
            do {
                try channel.writeInbound(ByteBuffer(bytes: bytes))
            } catch {
                collect()
                let last = requests.last
                failedAt = last.map { $0.ended ? requests.count : requests.count - 1 } ?? 0
                return
            }
            collect()
        }

        private func collect() {
            while let part = try? channel.readInbound(as: HTTPServerRequestPart.self) {
                switch part {
                case .head(let head): requests.append(DecodedRequest(head: head))
                case .body(let buffer): if !requests.isEmpty { requests[requests.count - 1].body += Array(buffer.readableBytesView) }
                case .end: if !requests.isEmpty { requests[requests.count - 1].ended = true }
                }
            }
        }
    }

    /// What the fast path did with one request, in stream order.
    package enum Reading: CustomStringConvertible {
        /// Answered from the head's bytes.
        case answered(RequestHead, bytes: [UInt8])
        /// A message post taken with its body (`SnapshotAnswers.takePost`): the head's and the body's bytes.
        case taken(RequestHead, bytes: [UInt8])
        /// Given to the codec: the second decoder's request of this index.
        case codec(Int)
        /// Refused from its head; nothing more is read.
        case refused(RequestFraming.Refusal, RequestHead?)

        package var description: String {
            switch self {
            case .answered(let head, let bytes): "answered \(head.snapshot.map { "\($0)" } ?? "?") from \(String(decoding: bytes, as: UTF8.self).debugDescription)"
            case .taken(let head, let bytes): "took a post to \(head.postMessageTo ?? "?") from \(String(decoding: bytes, as: UTF8.self).debugDescription)"
            case .codec(let index): "codec request \(index)"
            case .refused(let refusal, _): "refused \(refusal.status)"
            }
        }
    }

    /// The fast path's model: framing, the requests it answered, the codec behind it.
    package struct FastPath {
        package var framing = RequestFraming(maxBodyBytes: HTTPDifferential.maxBodyBytes)
        package let codec: Decoder
        package private(set) var readings: [Reading] = []
        /// Where the stream was handed to the codec for good: the reading's index, and whether the
        /// request there is the connection's last (HTTP/1.0 without keep-alive).
        package private(set) var handOver: (index: Int, closesAfterAnswer: Bool)?
        private var pending: [UInt8] = []
        /// Codec requests given so far (heads forwarded; after the hand-over, decoded from passthrough).
        private var forwardedHeads = 0

        /// `codec`: a fresh decoder (new or just reset).
        package init(codec: Decoder = Decoder()) { self.codec = codec }

        package mutating func feed(_ chunk: [UInt8]) {
            if case .passthrough = framing.mode { return codec.feed(chunk) }
            if case .ending = framing.mode { return }
            pending += chunk
            while !pending.isEmpty {
                switch pending.withUnsafeBytes({ framing.next($0) }) {
                case .wait, .drop:
                    if case .ending = framing.mode { pending = [] }
                    return
                case .handOver(let closes):
                    handOver = (readings.count, closes)
                    codec.feed(pending)
                    pending = []
                    return
                case .refuse(let refusal):
                    readings.append(.refused(refusal, nil))
                    pending = []
                    return
                case .body(let count):
                    codec.feed(Array(pending.prefix(count)))
                    pending.removeFirst(count)
                case .request(let head):
                    if Self.wouldAnswer(head) {
                        readings.append(.answered(head, bytes: Array(pending.prefix(head.size))))
                        pending.removeFirst(head.size)
                        continue
                    }
                    // A post whose body has come whole with it (else the handler forwards it), as if its
                    // token were verified, its caller a member and its body a message.
                    if head.postMessageTo != nil, head.bearerToken != nil, head.contentLength > 0, pending.count >= head.size + head.contentLength {
                        readings.append(.taken(head, bytes: Array(pending.prefix(head.size + head.contentLength))))
                        pending.removeFirst(head.size + head.contentLength)
                        continue
                    }
                    readings.append(.codec(forwardedHeads))
                    forwardedHeads += 1
                    framing.forwarded(head)
                    codec.feed(Array(pending.prefix(head.size)))
                    pending.removeFirst(head.size)
                }
            }
        }

        /// Whether `SnapshotFastPath` answers `head` when the caller's token is verified and a member
        /// (`SnapshotAnswers`: a snapshot target, one bearer token, a query `snapshot` accepts).
        static func wouldAnswer(_ head: RequestHead) -> Bool {
            guard let target = head.snapshot, head.bearerToken != nil, head.contentLength == 0 else { return false }
            func whole(_ text: String?) -> Bool { text.map { !$0.isEmpty && $0.utf8.allSatisfy { $0 >= 48 && $0 <= 57 } } ?? true }
            guard target.afterSeq == nil || target.beforeSeq == nil, whole(target.afterSeq), whole(target.beforeSeq), whole(target.limit)
            else { return false }
            return true
        }

        /// The readings with the codec's requests after the hand-over appended, up to the codec's error.
        package var merged: [Reading] {
            var all = readings
            if handOver != nil {
                all += (forwardedHeads..<max(forwardedHeads, codec.requests.count)).map { .codec($0) }
            }
            if let failed = codec.failedAt, let cut = all.firstIndex(where: { if case .codec(let i) = $0 { i >= failed } else { false } }) {
                all = Array(all.prefix(cut))
            }
            return all
        }
    }

    /// A disagreement between the two readings, described for a test failure or a fuzzer crash.
    package struct Disagreement: Error, CustomStringConvertible {
        package var description: String
    }

    /// Feeds `stream` in `chunks` (sizes; the rest in one) to both readers and compares their readings.
    /// `reusing`: two decoders to reset and use instead of making two (the fuzzer's, one pair for
    /// every input; each is reset before it reads, so the reading is a fresh decoder's).
    package static func compare(_ stream: [UInt8], chunks: [Int] = [], reusing decoders: (reference: Decoder, codec: Decoder)? = nil) -> Disagreement? {
        decoders?.reference.reset()
        decoders?.codec.reset()
        let reference = decoders?.reference ?? Decoder()
        var fastPath = FastPath(codec: decoders?.codec ?? Decoder())
        var position = 0
        for size in chunks + [stream.count] where position < stream.count {
            let end = min(stream.count, position + max(size, 1))
            let chunk = Array(stream[position..<end])
            reference.feed(chunk)
            fastPath.feed(chunk)
            position = end
        }
        return compare(fastPath, reference)
    }

    static func compare(_ fastPath: FastPath, _ reference: Decoder) -> Disagreement? {
        let readings = fastPath.merged
        let expected = reference.failedAt.map { Array(reference.requests.prefix($0)) } ?? reference.requests
        for (index, reading) in readings.enumerated() {
            let theirs = index < expected.count ? expected[index] : nil
            switch reading {
            case .codec(let i):
                guard let theirs, i < fastPath.codec.requests.count else {
                    if theirs == nil, i >= fastPath.codec.requests.count { continue }  // the codec waits for more, as the reference
                    return Disagreement(description: "request \(index): the codec behind the fast path read \(fastPath.codec.requests.count > i ? "\(fastPath.codec.requests[i])" : "nothing"), NIO alone \(theirs.map { "\($0)" } ?? "nothing")")
                }
                let ours = fastPath.codec.requests[i]
                // The last request may still be coming: a prefix of the reference's body is the same reading.
                guard ours.head == theirs.head, ours.ended == theirs.ended ? ours.body == theirs.body : !ours.ended && theirs.body.starts(with: ours.body)
                else { return Disagreement(description: "request \(index): through the fast path \(ours), NIO alone \(theirs)") }
            case .answered(let head, let bytes):
                guard let theirs else {
                    return Disagreement(description: "request \(index): the fast path answered \(reading), NIO alone read no request there")
                }
                if let problem = answeredProblem(head, bytes: bytes, theirs) {
                    return Disagreement(description: "request \(index): the fast path answered \(reading), NIO alone read \(theirs): \(problem)")
                }
            case .taken(let head, let bytes):
                guard let theirs else {
                    return Disagreement(description: "request \(index): the fast path \(reading), NIO alone read no request there")
                }
                if let problem = takenProblem(head, bytes: bytes, theirs) {
                    return Disagreement(description: "request \(index): the fast path \(reading), NIO alone read \(theirs): \(problem)")
                }
            case .refused(let refusal, _):
                guard let theirs else {
                    if reference.failedAt == index { continue }  // both refuse
                    return Disagreement(description: "request \(index): the fast path refused (\(refusal.status)) a request NIO alone did not read")
                }
                if refusal.status.hasPrefix("413") {
                    // NIO keeps the value's trailing whitespace; a length too long for an Int is over any limit.
                    let length = theirs.head.headers["content-length"]
                    let value = length.first.map { $0.trimmingCharacters(in: CharacterSet(charactersIn: " \t")) } ?? ""
                    guard length.count == 1, !value.isEmpty, value.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }),
                          Int(value).map({ $0 > maxBodyBytes }) ?? (value.drop { $0 == "0" }.count > 18)
                    else { return Disagreement(description: "request \(index): the fast path refused a long body NIO alone reads as \(theirs)") }
                } else {
                    guard theirs.head.headers["upgrade"].contains(where: { $0.lowercased() == "websocket" }) else {
                        return Disagreement(description: "request \(index): the fast path refused a WebSocket handshake NIO alone reads as \(theirs)")
                    }
                }
                return nil  // nothing after a refusal is read
            }
        }
        if let handOver = fastPath.handOver, handOver.index < expected.count {
            let head = expected[handOver.index].head
            let nioCloses = head.version == .http1_0 && !head.isKeepAlive
            guard handOver.closesAfterAnswer == nioCloses else {
                return Disagreement(description: "request \(handOver.index): the fast path \(handOver.closesAfterAnswer ? "closes" : "keeps") the connection after its answer, NIO reads \(head.version) keep-alive \(head.isKeepAlive)")
            }
        }
        if readings.count < expected.count, !fastPath.framing.mode.isEnding {
            return Disagreement(description: "request \(readings.count): NIO alone read \(expected[readings.count]), the fast path \(fastPath.framing.mode == .requests ? "waits for more" : "read nothing")")
        }
        return nil
    }

    /// Whether NIO read the request line's target as the fast path did, and the one bearer token it
    /// found (the route reads the header through swift-http-types, which trims the value's whitespace).
    static func targetAndTokenProblem(_ head: RequestHead, bytes: [UInt8], _ theirs: DecodedRequest) -> String? {
        let line = bytes.prefix { $0 != 13 }
        let parts = line.split(separator: 32, omittingEmptySubsequences: false)
        guard parts.count == 3, theirs.head.uri == String(decoding: parts[1], as: UTF8.self) else { return "another target" }
        let authorization = theirs.head.headers["authorization"].map { HTTPField(name: .authorization, value: $0).value }
        guard let token = head.bearerToken, authorization.count == 1,
              authorization.first == "Bearer " + String(decoding: bytes[token], as: UTF8.self)
        else { return "another token (\(authorization))" }
        return nil
    }

    /// What is wrong with the fast path answering `head` (read from `bytes`) where NIO read `theirs`:
    /// the route must see the same request (a GET over HTTP/1.1 of the same target, the same one
    /// token, no body) and read the same conversation and query from it.
    static func answeredProblem(_ head: RequestHead, bytes: [UInt8], _ theirs: DecodedRequest) -> String? {
        guard theirs.head.method == .GET, theirs.head.version == .http1_1 else { return "not a GET over HTTP/1.1" }
        guard theirs.ended, theirs.body.isEmpty else { return "NIO reads a body" }
        guard theirs.head.isKeepAlive else { return "NIO reads the connection as closing" }
        if let problem = targetAndTokenProblem(head, bytes: bytes, theirs) { return problem }
        // A length of zero in any spelling (llhttp reads `000` as 0, and NIO keeps a value's trailing
        // whitespace): the route gets an empty body, as the fast path reads it.
        func isZero(_ length: String) -> Bool {
            let digits = length.trimmingCharacters(in: .whitespaces)
            return !digits.isEmpty && digits.allSatisfy { $0 == "0" }
        }
        guard theirs.head.headers["transfer-encoding"].isEmpty, theirs.head.headers["content-length"].allSatisfy(isZero)
        else { return "NIO reads body headers" }
        // What the route reads from the target: the path's id (percent-decoded) and the query's first values.
        let uri = URI(theirs.head.uri)
        let prefix = "/v1/conversations/"
        guard let target = head.snapshot, uri.path.hasPrefix(prefix) else { return "another route" }
        let id = String(uri.path.dropFirst(prefix.count))
        guard !id.contains("/"), id.removingPercentEncoding == target.id else { return "another conversation id (\(id))" }
        // The route's `queryParameters.get` (Hummingbird): the first value of a name.
        let query = uri.queryParameters
        func get(_ name: String) -> String? { query[name[...]].map { String($0) } }
        guard get("after_seq") == target.afterSeq, get("before_seq") == target.beforeSeq, get("limit") == target.limit
        else { return "another query (\(uri.query ?? ""))" }
        return nil
    }
}

extension HTTPDifferential {
    /// What is wrong with the fast path taking the post `head` (read with its body from `bytes`) where
    /// NIO read `theirs`: the route must see the same request (a POST over HTTP/1.1 of the same target,
    /// the same one token, the same whole body) and read the same conversation from it.
    static func takenProblem(_ head: RequestHead, bytes: [UInt8], _ theirs: DecodedRequest) -> String? {
        guard theirs.head.method == .POST, theirs.head.version == .http1_1 else { return "not a POST over HTTP/1.1" }
        guard theirs.ended, theirs.body == Array(bytes.dropFirst(head.size)) else { return "NIO reads another body" }
        guard theirs.head.isKeepAlive else { return "NIO reads the connection as closing" }
        guard theirs.head.headers["transfer-encoding"].isEmpty else { return "NIO reads a transfer coding" }
        if let problem = targetAndTokenProblem(head, bytes: bytes, theirs) { return problem }
        // What the route reads from the target: `v1/conversations/:id/messages`, the id percent-decoded.
        let uri = URI(theirs.head.uri)
        let components = uri.path.split(separator: "/", omittingEmptySubsequences: false)
        guard uri.query == nil, components.count == 5, components[0].isEmpty, components[1] == "v1", components[2] == "conversations",
              components[4] == "messages", components[3].removingPercentEncoding == head.postMessageTo
        else { return "another route (\(uri.path))" }
        return nil
    }
}

extension RequestFraming.Mode {
    var isEnding: Bool { if case .ending = self { true } else { false } }
}
