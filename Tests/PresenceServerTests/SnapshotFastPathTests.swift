import ClientInput
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing
@testable import PresenceServer

/// `SnapshotFastPath` in an `EmbeddedChannel`, in front of NIO's request decoder as in the server: what
/// it answers itself, what it hands to the codec and in which order, and how it refuses. The answers
/// come from a stub that answers every snapshot request (the server's come from `SnapshotAnswers`).
@Suite struct SnapshotFastPathTests {
    static let get = "GET /v1/conversations/conv_1 HTTP/1.1\r\nAuthorization: Bearer tok\r\n\r\n"
    static let post = "POST /v1/conversations/conv_1/messages HTTP/1.1\r\nContent-Length: 15\r\n\r\n{\"content\":\"x\"}"

    final class Connection {
        let channel = EmbeddedChannel()
        let fastPath: SnapshotFastPath

        init(maxBodyBytes: Int = 1024) throws {
            let counter = Counter()
            fastPath = SnapshotFastPath(maxBodyBytes: maxBodyBytes, answer: { head, _, allocator in
                guard head.snapshot != nil else { return nil }
                var buffer = allocator.buffer(capacity: 64)
                buffer.writeString("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                return buffer
            }, served: { counter.value += 1 })
            self.counter = counter
            try channel.pipeline.syncOperations.addHandler(fastPath)
            try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes)))
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        }

        final class Counter { var value = 0 }
        let counter: Counter

        func send(_ text: String) throws { try channel.writeInbound(ByteBuffer(string: text)) }

        /// What the codec was given, as request lines and body sizes, in order.
        func forwarded() throws -> [String] {
            var parts: [String] = []
            while let part = try channel.readInbound(as: HTTPServerRequestPart.self) {
                switch part {
                case .head(let head): parts.append("\(head.method) \(head.uri)")
                case .body(let body): parts.append("body \(body.readableBytes)")
                case .end: parts.append("end")
                }
            }
            return parts
        }

        /// What the fast path wrote, in order.
        func written() throws -> [String] {
            var out: [String] = []
            while let buffer = try channel.readOutbound(as: ByteBuffer.self) { out.append(String(buffer: buffer)) }
            return out
        }
    }

    @Test func aSnapshotRequestIsAnsweredAtOnceAndNeverReachesTheCodec() throws {
        let connection = try Connection()
        try connection.send(Self.get + Self.get)
        #expect(try connection.forwarded().isEmpty)
        #expect(try connection.written().count == 2)
        #expect(connection.counter.value == 2)
    }

    @Test func aRequestBehindOneWaitingForTheCodecGoesToTheCodecInOrder() throws {
        let connection = try Connection()
        try connection.send(Self.post + Self.get)
        #expect(try connection.forwarded() == ["POST /v1/conversations/conv_1/messages", "body 15", "end", "GET /v1/conversations/conv_1", "end"])
        #expect(try connection.written().isEmpty)
        // Once the codec's answers have ended, the next snapshot is the fast path's again.
        connection.fastPath.responseEnded()
        try connection.send(Self.get)
        #expect(try connection.written().isEmpty, "a forwarded request's answer is still on its way")
        #expect(try connection.forwarded() == ["GET /v1/conversations/conv_1", "end"])
        connection.fastPath.responseEnded()
        connection.fastPath.responseEnded()
        try connection.send(Self.get)
        #expect(try connection.written().count == 1)
        #expect(try connection.forwarded().isEmpty)
    }

    @Test func aRequestSentAByteAtATimeIsReadOnce() throws {
        let connection = try Connection()
        for byte in (Self.post + Self.get).utf8 { try connection.send(String(decoding: [byte], as: UTF8.self)) }
        #expect(try connection.forwarded() == ["POST /v1/conversations/conv_1/messages", "body 1", "body 1", "body 1", "body 1", "body 1",
                                               "body 1", "body 1", "body 1", "body 1", "body 1", "body 1", "body 1", "body 1", "body 1",
                                               "body 1", "end", "GET /v1/conversations/conv_1", "end"])
    }

    @Test func aRequestItCannotDelimitGivesTheConnectionToTheCodecForGood() throws {
        let connection = try Connection()
        try connection.send("POST /v1/events HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + Self.get)
        try connection.send(Self.get)
        #expect(try connection.written().isEmpty)
        #expect(try connection.forwarded() == ["POST /v1/events", "end", "GET /v1/conversations/conv_1", "end", "GET /v1/conversations/conv_1", "end"])
    }

    @Test func aBodyOverTheLimitIsRefusedFromItsHeadAndNothingAfterItIsRead() throws {
        let connection = try Connection(maxBodyBytes: 10)
        try connection.send("POST /v1/events HTTP/1.1\r\nContent-Length: 11\r\n\r\n" + Self.get)
        try connection.send(Self.get)
        let written = try connection.written()
        #expect(written.count == 1)
        #expect(written.first?.hasPrefix("HTTP/1.1 413 Content Too Large\r\n") == true)
        #expect(written.first?.contains("Connection: close\r\n") == true)
        #expect(written.first?.contains("\"code\":\"body_too_large\"") == true)
        #expect(try connection.forwarded().isEmpty)
    }

    @Test func aRefusalWaitsForTheAnswersToEarlierRequests() throws {
        let connection = try Connection()
        try connection.send(Self.post + "GET /v1/ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 8\r\n\r\n")
        #expect(try connection.forwarded().count == 3)
        #expect(try connection.written().isEmpty)
        connection.fastPath.responseEnded()
        let written = try connection.written()
        #expect(written.first?.hasPrefix("HTTP/1.1 426 Upgrade Required\r\n") == true)
        #expect(written.first?.contains("Sec-WebSocket-Version: 13\r\n") == true)
    }

    @Test func anHTTP10RequestIsTheConnectionsLastAnswer() throws {
        let connection = try Connection()
        try connection.send("GET /v1/conversations/conv_1 HTTP/1.0\r\nAuthorization: Bearer tok\r\n\r\n")
        #expect(try connection.forwarded() == ["GET /v1/conversations/conv_1", "end"])
        #expect(connection.fastPath.closesAfterCurrentAnswer)
        #expect(connection.fastPath.responseEnded())
    }

    /// Found by the differential test: a keep-alive HTTP/1.0 head arriving in two reads was taken for
    /// the connection's last request from its first line.
    @Test func anHTTP10KeepAliveHeadInPiecesKeepsTheConnection() throws {
        let connection = try Connection()
        try connection.send("GET /v1/conversations/conv_1 HTTP/1.0\r\n")
        try connection.send("Connection: keep-alive\r\n\r\n")
        #expect(try connection.forwarded() == ["GET /v1/conversations/conv_1", "end"])
        #expect(!connection.fastPath.closesAfterCurrentAnswer)
        #expect(!connection.fastPath.responseEnded())
    }

    @Test func aMalformedFirstRequestIsAnswered400() throws {
        let connection = try Connection()
        #expect(throws: HTTPParserError.self) { try connection.send("FOO / HTTP/1.1\r\n\r\n") }
        connection.fastPath.requestWasMalformed("invalid request line")
        let written = try connection.written()
        #expect(written.first?.hasPrefix("HTTP/1.1 400 Bad Request\r\n") == true)
        #expect(written.first?.contains("malformed HTTP request: invalid request line") == true)
    }
}
