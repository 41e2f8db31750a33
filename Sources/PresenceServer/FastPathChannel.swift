import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1

/// Hummingbird's HTTP/1 (+ WebSocket upgrade) child channel with `SnapshotFastPath` at the front of
/// each connection's pipeline, ahead of the HTTP codec, from the connection's first byte.
struct FastPathChannel<Base: ServerChildChannel>: ServerChildChannel {
    typealias Value = Base.Value

    let base: Base
    let makeFastPath: @Sendable () -> SnapshotFastPath

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
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
        await base.handle(value: value, logger: logger)
    }
}
