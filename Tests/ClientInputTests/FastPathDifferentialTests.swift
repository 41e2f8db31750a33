import Foundation
import HTTPDifferential
import Testing
@testable import ClientInput

/// The fast path reads every stream as NIO's `HTTPRequestDecoder` reads it (`HTTPDifferential`): the
/// same request boundaries, the same requests handed to the codec, and a request answered from its
/// bytes only where NIO reads that same GET. A request read two ways is how request smuggling starts.
@Suite struct FastPathDifferentialTests {
    static let get = "GET /v1/conversations/conv_1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok\r\n\r\n"

    static let streams: [String] = [
        get,
        get + get + get,
        "GET /v1/conversations/conv_1?after_seq=2&limit=5 HTTP/1.1\r\nAuthorization: Bearer tok\r\n\r\n",
        "GET /v1/conversations/conv_1?before_seq=9 HTTP/1.1\r\nAuthorization: Bearer tok\r\n\r\n" + get,
        // A POST with a body, then a snapshot: the body is the codec's, the GET the fast path's.
        "POST /v1/conversations/conv_1/messages HTTP/1.1\r\nContent-Length: 15\r\n\r\n{\"content\":\"x\"}" + get,
        // The same with a token: the post is taken with its body, then the snapshot.
        "POST /v1/conversations/conv_1/messages HTTP/1.1\r\nAuthorization: Bearer t\r\nContent-Length: 15\r\n\r\n{\"content\":\"x\"}" + get,
        "POST /v1/conversations/conv_1/messages HTTP/1.1\r\nAuthorization: Bearer t\r\nContent-Length: 015\r\n\r\n{\"content\":\"x\"}" + get + get,
        // A body that spells a snapshot request is a body.
        "POST /v1/events HTTP/1.1\r\nContent-Length: \(get.utf8.count)\r\n\r\n" + get + get,
        // Both body headers: the codec decides, for the whole connection.
        "POST /v1/events HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + get,
        "POST /v1/events HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" + get,
        // Two Content-Lengths: NIO refuses, the fast path hands it over.
        "POST /v1/events HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde" + get,
        "GET /v1/conversations/conv_1 HTTP/1.0\r\nAuthorization: Bearer tok\r\n\r\n" + get,
        "GET /v1/conversations/conv_1 HTTP/1.0\r\nConnection: keep-alive\r\nAuthorization: Bearer tok\r\n\r\n" + get,
        "GET /v1/conversations/conv_1 HTTP/1.1\r\nConnection: close\r\nAuthorization: Bearer tok\r\n\r\n" + get,
        "GET /v1/ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n" + get,
        "GET /v1/ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\n\r\n" + get,
        "POST /v1/events HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n" + get,
        // Found by fuzz-http: a length under the limit written in nineteen digits is a body, not a 413.
        "POST /v1/events HTTP/1.1\r\nContent-Length: 0000000000000000012\r\n\r\n{\"a\":\"bcde\"}" + get,
        "GET /v1/conversations/conv_1 HTTP/1.1\nAuthorization: Bearer tok\n\n" + get,
        "FOO /v1/conversations/conv_1 HTTP/1.1\r\n\r\n" + get,
        "GET /v1/conversations/conv_1 HTTP/1.1\r\nAuthorization: Bearer tok\r\nX: \u{1}\r\n\r\n" + get,
        "\r\n" + get,
        // Found by fuzz-http (long run): an HTTP/1.0 request after two empty lines.
        "\r\n\r\nGET /v1/c_1 HTTP/1.0\r\nHtion: Bearer\r\n\r\n",
        "GET /v1/conversations/conv_1?limit=1&limit=2 HTTP/1.1\r\nAuthorization: Bearer tok\r\n\r\n",
        // Found by this suite's random streams (clean-clone CI runs): a tab after a handshake header's value,
        "GET /v1/ws HTTP/1.1\r\nUpgrade: websocket\t\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\n\r\n" + get,
        // and a tab after a length's digits.
        "POST /v1/conversations/conv_1/messages HTTP/1.1\r\nAuthorization: Bearer t\r\nContent-Length: 01\t\r\n\r\n{\"content\":\"x\"}" + get,
        // Found by a long run of them: a tab after an HTTP/1.0 request's keep-alive token (not one to
        // llhttp, so the request is its connection's last), and after an upgrade's Connection token.
        "GET /v1/conversations/conv_1 HTTP/1.0\r\nConnection: keep-alive\t\r\nAuthorization: Bearer tok\r\n\r\n" + get,
        "GET /v1/ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\t\r\nSec-WebSocket-Version: 8\r\n\r\n" + get,
        // Found by a review against llhttp, which reads Proxy-Connection as Connection: keep-alive on
        // HTTP/1.0, close on HTTP/1.1 (a request after it is not read).
        "GET /v1/conversations/conv_1 HTTP/1.0\r\nProxy-Connection: keep-alive\r\nAuthorization: Bearer tok\r\n\r\n" + get,
        "GET /v1/conversations/conv_1 HTTP/1.1\r\nProxy-Connection: close\r\nAuthorization: Bearer tok\r\n\r\n" + get,
    ]

    @Test(arguments: streams)
    func everyCutOfAStreamIsReadAsNIOReadsIt(stream: String) {
        let bytes = Array(stream.utf8)
        if let disagreement = HTTPDifferential.compare(bytes) { Issue.record("\(disagreement)") }
        for cut in 1..<bytes.count {
            if let disagreement = HTTPDifferential.compare(bytes, chunks: [cut]) {
                Issue.record("cut at \(cut): \(disagreement)")
                return
            }
        }
        if let disagreement = HTTPDifferential.compare(bytes, chunks: Array(repeating: 1, count: bytes.count)) {
            Issue.record("a byte at a time: \(disagreement)")
        }
    }

    /// Random damage to the streams (bytes replaced, removed, inserted, from the characters HTTP
    /// framing turns on) is read the same way by both. 3,000 streams a run; a long run:
    /// `PRESENCE_DAMAGED_STREAMS=1000000 swift test --filter damagedStreamsAreReadAsNIOReadsThem`
    /// (this test found two differentials the `http` fuzzer had not, RELIABILITY.md).
    @Test func damagedStreamsAreReadAsNIOReadsThem() {
        let replacements = Array("\r\n :;,\t0123456789aAGTPx/?&=%+-\u{7F}".utf8) + [0x00, 0x80, 0xFF]
        var random = SystemRandomNumberGenerator()
        let count = ProcessInfo.processInfo.environment["PRESENCE_DAMAGED_STREAMS"].flatMap { Int($0) } ?? 3_000
        for _ in 0..<count {
            var bytes = Array((Self.streams.randomElement(using: &random) ?? Self.get).utf8)
            for _ in 0..<Int.random(in: 1...3, using: &random) {
                let at = Int.random(in: 0..<bytes.count, using: &random)
                switch Int.random(in: 0..<3, using: &random) {
                case 0: bytes[at] = replacements.randomElement(using: &random) ?? 32
                case 1: bytes.remove(at: at)
                default: bytes.insert(replacements.randomElement(using: &random) ?? 32, at: at)
                }
            }
            let cut = Int.random(in: 1...max(1, bytes.count), using: &random)
            if let disagreement = HTTPDifferential.compare(bytes, chunks: [cut]) {
                Issue.record("\(disagreement)\nstream \(String(decoding: bytes, as: UTF8.self).debugDescription), cut at \(cut)")
                return
            }
        }
    }

    /// The fuzzer reuses one pair of decoders, reset before each input: after any stream (whole, cut
    /// inside a head or a body, refused by NIO, an upgrade with bytes after it) a reset decoder reads
    /// the next stream exactly as a new one does, and `compare` with the pair gives the same verdict.
    @Test func aResetDecoderReadsTheNextStreamAsANewOne() {
        let reused = HTTPDifferential.Decoder()
        let pair = (reference: HTTPDifferential.Decoder(), codec: HTTPDifferential.Decoder())
        let streams = Self.streams.map { Array($0.utf8) }
        for (index, stream) in streams.enumerated() {
            // What the previous input left: the whole previous stream, or only its first half.
            let previous = streams[(index + streams.count - 1) % streams.count]
            for leftover in [previous, Array(previous.prefix(previous.count / 2))] {
                reused.reset()
                reused.feed(leftover)
                _ = HTTPDifferential.compare(leftover, chunks: [leftover.count / 3], reusing: pair)
                reused.reset()
                let fresh = HTTPDifferential.Decoder()
                for chunk in [Array(stream.prefix(7)), Array(stream.dropFirst(7))] {
                    reused.feed(chunk)
                    fresh.feed(chunk)
                }
                #expect(reused.requests == fresh.requests, "stream \(index) after \(leftover.count) bytes of the previous")
                #expect(reused.failedAt == fresh.failedAt, "stream \(index) after \(leftover.count) bytes of the previous")
                #expect(HTTPDifferential.compare(stream, chunks: [7], reusing: pair).map { "\($0)" } == HTTPDifferential.compare(stream, chunks: [7]).map { "\($0)" })
            }
        }
        // The streams that fail or stop early are among those read after a reset.
        #expect(streams.contains { stream in
            let decoder = HTTPDifferential.Decoder()
            decoder.feed(stream)
            return decoder.failedAt != nil
        })
    }
}
