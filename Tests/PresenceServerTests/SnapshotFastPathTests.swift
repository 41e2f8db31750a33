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

        init(maxBodyBytes: Int = 1024, take: @escaping SnapshotFastPath.Taker = { _, _, _, _ in false }) throws {
            let counter = Counter()
            fastPath = SnapshotFastPath(maxBodyBytes: maxBodyBytes, answer: { head, _, allocator in
                guard head.snapshot != nil else { return nil }
                var buffer = allocator.buffer(capacity: 64)
                buffer.writeString("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                return buffer
            }, take: take, served: { counter.value += 1 })
            self.counter = counter
            try channel.pipeline.syncOperations.addHandler(reads)
            try channel.pipeline.syncOperations.addHandler(fastPath)
            try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes)))
            try channel.pipeline.syncOperations.addHandler(quiesces)
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        }

        final class Counter { var value = 0 }
        let counter: Counter

        /// Counts the reads the handlers pass on toward the socket.
        final class Reads: ChannelOutboundHandler {
            typealias OutboundIn = ByteBuffer
            var count = 0
            func read(context: ChannelHandlerContext) {
                count += 1
                context.read()
            }
        }
        let reads = Reads()

        /// Counts the stop's quiesce events that reach the HTTP handlers' place.
        final class Quiesces: ChannelInboundHandler {
            typealias InboundIn = HTTPServerRequestPart
            typealias InboundOut = HTTPServerRequestPart
            var count = 0
            func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
                if event is ChannelShouldQuiesceEvent { count += 1 }
                context.fireUserInboundEventTriggered(event)
            }
        }
        let quiesces = Quiesces()

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

    /// Posts the taker holds until the test replies, as the server's are held until they are durable.
    final class HeldPosts: @unchecked Sendable {
        var replies: [@Sendable (SnapshotFastPath.LateAnswer) -> Void] = []
        var bodies: [String] = []
    }

    @Test func aTakenPostHoldsTheRequestsAfterItAndTheSocketUntilItsAnswerIsWritten() throws {
        let held = HeldPosts()
        let connection = try Connection(take: { head, _, body, reply in
            guard head.postMessageTo == "conv_1" else { return false }
            held.replies.append(reply)
            held.bodies.append(String(buffer: body))
            return true
        })
        try connection.send(Self.post + Self.get + Self.post)
        #expect(held.bodies == ["{\"content\":\"x\"}"], "one post taken, with its body")
        #expect(try connection.forwarded().isEmpty && (try connection.written()).isEmpty, "nothing after the post is answered or forwarded")
        connection.channel.read()
        #expect(connection.reads.count == 0, "the socket is not read while the post waits")
        connection.channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        #expect(connection.quiesces.count == 0, "a stop waits for the taken post's answer")

        held.replies[0](("201 Created", ByteBuffer(string: "{\"seq\":1}")))
        connection.channel.embeddedEventLoop.run()
        let written = try connection.written()
        #expect(written.count == 2)
        #expect(written.first?.hasPrefix("HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 9\r\n") == true)
        #expect(written.first?.hasSuffix("\r\n\r\n{\"seq\":1}") == true)
        #expect(written.last == "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "then the snapshot behind it")
        #expect(held.replies.count == 2, "then the next post is taken, and waits")
        #expect(connection.quiesces.count == 0, "the stop still waits, for the second post")
        #expect(connection.reads.count == 0, "still held for the second post")
        held.replies[1](("400 Bad Request", ByteBuffer(string: "{}")))
        connection.channel.embeddedEventLoop.run()
        #expect(try connection.written().first?.hasPrefix("HTTP/1.1 400 Bad Request\r\n") == true)
        #expect(connection.reads.count == 1, "the held read goes on once nothing waits")
        #expect(connection.quiesces.count == 1, "and the stop reaches the HTTP handlers")
        #expect(try connection.forwarded().isEmpty)
    }

    @Test func aPostTheTakerDeclinesGoesToTheCodec() throws {
        let connection = try Connection(take: { _, _, _, _ in false })
        try connection.send(Self.post + Self.get)
        #expect(try connection.forwarded() == ["POST /v1/conversations/conv_1/messages", "body 15", "end", "GET /v1/conversations/conv_1", "end"])
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
