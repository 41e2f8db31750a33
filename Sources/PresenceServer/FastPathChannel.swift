import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1

/// Hummingbird's HTTP/1 (+ WebSocket upgrade) child channel with `SnapshotFastPath` at the front of
/// each connection's pipeline, ahead of the HTTP codec, from the connection's first byte.
struct FastPathChannel<Base: ServerChildChannel>: ServerChildChannel {
    typealias Value = Base.Value

    let base: Base
    /// Every connection, tracked until it closes: what a stop past its deadline closes (`BoundedShutdown`).
    let connections: OpenConnections
    let makeFastPath: @Sendable () -> SnapshotFastPath

    /// Every connection's kernel send buffer (SO_SNDBUF; Linux keeps twice this for its bookkeeping).
    /// Left to autotuning, a client that stops reading lets the kernel hold up to `tcp_wmem`'s largest
    /// (4 MiB) of frames for it before its push queue (--push-queue-limit) sees any: 3.7 MiB each were
    /// measured, so 1,000 such clients pass a 2 GiB `tcp_mem`. Fixed, a slow client costs this and its queue.
    static var sendBufferBytes: Int { 64 * 1024 }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        connections.add(channel)
        do {
            try channel.syncOptions?.setOption(ChannelOptions.socketOption(.so_sndbuf), value: Self.sendBufferBytes)
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
        // Switched off (PRESENCE_SNAPSHOT_FAST_PATH=off, for measuring it), the connection is the base's.
        guard SnapshotFastPath.isEnabled else { return base.setup(channel: channel, logger: logger) }
        do {
            try channel.pipeline.syncOperations.addHandler(makeFastPath())
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
        return base.setup(channel: channel, logger: logger).flatMapThrowing { value in
            // After the codec: its errors on any request of the connection end in a 400 (the handlers
            // the base adds once a request is in go after this one).
            try channel.pipeline.syncOperations.addHandler(SnapshotFastPath.MalformedRequests())
            return value
        }
    }

    func handle(value: Value, logger: Logger) async {
        var logger = logger
        logger.handler = ClientMistakesAtDebug(base: logger.handler)
        await base.handle(value: value, logger: logger)
    }
}

/// Logs as `base` does, except the line HummingbirdWebSocket writes at error level when a connection's
/// first request could not be read ("Error handling upgrade result": garbage, bare-LF line ends, a
/// connection closed before or while its request came): a client's mistake, answered with a 400 by
/// `SnapshotFastPath`, is not a server error, so it is logged at debug level.
struct ClientMistakesAtDebug: LogHandler {
    var base: any LogHandler

    var logLevel: Logger.Level {
        get { base.logLevel }
        set { base.logLevel = newValue }
    }

    var metadata: Logger.Metadata {
        get { base.metadata }
        set { base.metadata = newValue }
    }

    var metadataProvider: Logger.MetadataProvider? {
        get { base.metadataProvider }
        set { base.metadataProvider = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { base[metadataKey: key] }
        set { base[metadataKey: key] = newValue }
    }

    func log(event: LogEvent) {
        guard event.level >= .error, event.message.description == "Error handling upgrade result" else { return base.log(event: event) }
        guard base.logLevel <= .debug else { return }
        var event = event
        event.level = .debug
        base.log(event: event)
    }
}
