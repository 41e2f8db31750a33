import NIOCore

/// The pipeline's end of one TCP connection: feeds what the socket reads to a ``NATSParser`` and hands each
/// operation to the ``NATSConnection``, tagged with the attempt that opened the socket (so that a late
/// callback from an old socket is told apart from the current one).
final class NATSChannelHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let connection: NATSConnection
    private let attempt: UInt64
    private var parser = NATSParser()
    private var failed = false

    init(connection: NATSConnection, attempt: UInt64) {
        self.connection = connection
        self.attempt = attempt
    }

    func channelActive(context: ChannelHandlerContext) {
        connection.channelActive(context.channel, attempt: attempt)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !failed else { return }
        let buffer = unwrapInboundIn(data)
        let channel = context.channel
        do {
            try parser.parse(buffer) { op in
                connection.receive(op, attempt: attempt, channel: channel)
            }
        } catch {
            failed = true
            connection.recordFailure("\(error)", attempt: attempt)
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        connection.channelClosed(attempt: attempt)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        connection.recordFailure("\(error)", attempt: attempt)
        context.close(promise: nil)
    }
}
