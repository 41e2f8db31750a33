// The ceiling of an HTTP/1.1 server on SwiftNIO on this machine: every request, whatever it asks,
// gets the same response of a chosen size, written straight from a ready ByteBuffer. No HTTP parser
// (requests are counted by their blank line), no routing, no JSON. `tools/load-snapshot.sh` measures
// it in the same run as the snapshot endpoint, so that the snapshot's figure can be read against what
// NIO alone reaches here (issue 4).
//
// Usage: presence-http-ceiling [PORT] [BODY_BYTES] [codec]   (defaults 0 = any free port, 2279);
// prints "listening on 127.0.0.1:PORT". With `codec`, requests go through NIO's HTTP/1 codec
// (`configureHTTPServerPipeline`, as Hummingbird's) and a handler that answers each request head:
// the difference between the two is what the HTTP parser and encoder cost.
import NIOCore
import NIOHTTP1
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

final class FixedResponder: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let response: ByteBuffer
    /// How many bytes of "\r\n\r\n" the end of the previous read matched.
    private var matched = 0

    init(response: ByteBuffer) { self.response = response }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        var requests = 0
        bytes.withUnsafeReadableBytes { raw in
            for byte in raw {
                let expected: UInt8 = matched % 2 == 0 ? 13 : 10
                if byte == expected {
                    matched += 1
                    if matched == 4 { requests += 1; matched = 0 }
                } else {
                    matched = byte == 13 ? 1 : 0
                }
            }
        }
        for _ in 0..<requests { context.write(wrapOutboundOut(response), promise: nil) }
    }

    func channelReadComplete(context: ChannelHandlerContext) { context.flush() }

    func errorCaught(context: ChannelHandlerContext, error: Error) { context.close(promise: nil) }
}

/// Answers each request with the same head and body, through NIO's HTTP/1 codec.
final class CodecResponder: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let head: HTTPResponseHead
    private let body: ByteBuffer

    init(bodyBytes: Int) {
        head = HTTPResponseHead(version: .http1_1, status: .ok,
                                headers: ["Content-Type": "application/json", "Content-Length": "\(bodyBytes)"])
        var body = ByteBuffer()
        body.writeRepeatingByte(UInt8(ascii: "x"), count: bodyBytes)
        self.body = body
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .end = unwrapInboundIn(data) else { return }
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        context.write(wrapOutboundOut(.end(nil)), promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) { context.flush() }

    func errorCaught(context: ChannelHandlerContext, error: Error) { context.close(promise: nil) }
}

let arguments = CommandLine.arguments.dropFirst()
let port = arguments.first.flatMap { Int($0) } ?? 0
let bodyBytes = arguments.dropFirst().first.flatMap { Int($0) } ?? 2279
var response = ByteBuffer()
response.writeString("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: \(bodyBytes)\r\n\r\n")
response.writeRepeatingByte(UInt8(ascii: "x"), count: bodyBytes)
let fixed = response
let throughCodec = arguments.dropFirst(2).first == "codec"

let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
let channel = try ServerBootstrap(group: group)
    .serverChannelOption(.backlog, value: 256)
    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
    .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
    .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
            if throughCodec {
                try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                try channel.pipeline.syncOperations.addHandler(CodecResponder(bodyBytes: bodyBytes))
            } else {
                try channel.pipeline.syncOperations.addHandler(FixedResponder(response: fixed))
            }
        }
    }
    .bind(host: "127.0.0.1", port: port)
    .wait()
print("listening on 127.0.0.1:\(channel.localAddress?.port ?? port)")
fflush(nil)  // every output stream: the line must reach a redirected stdout now
try channel.closeFuture.wait()
