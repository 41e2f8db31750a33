import Logging
import NIOCore
import ServiceLifecycle
import Synchronization
import UnixSignals

/// The connections the server has accepted and not yet closed, so that a stop can end those that
/// outlive its deadline. `FastPathChannel` adds each one as it is set up; it leaves when it closes.
final class OpenConnections: Sendable {
    private let channels = Mutex<[ObjectIdentifier: any Channel]>([:])

    /// Tracks `channel` until it closes.
    func add(_ channel: any Channel) {
        let key = ObjectIdentifier(channel)
        channels.withLock { $0[key] = channel }
        channel.closeFuture.whenComplete { [self] _ in
            _ = channels.withLock { $0.removeValue(forKey: key) }
        }
    }

    /// Closes every connection still open and returns how many there were. Each closes on its event
    /// loop; whatever serves it (a WebSocket session's reader) then sees its input end.
    func closeAll() -> Int {
        let open = channels.withLock { Array($0.values) }
        for channel in open { channel.close(promise: nil) }
        return open.count
    }
}

/// Runs the HTTP server as a service with a bound on its graceful shutdown.
///
/// On SIGTERM or SIGINT (the `ServiceGroup`'s graceful shutdown) the server stops accepting, sends
/// each WebSocket its close frame and waits for the connections to end, as Hummingbird does; a client
/// that never answers the close frame (its event loop blocked) would keep it waiting for ever. After
/// `timeout` — or at once on a second SIGTERM/SIGINT — the connections still open are closed here (a
/// NIO channel close). Each WebSocket session's reader then ends, so its handler appends the session's
/// disconnect and returns as on any other close; the server's `run` returns only once every handler
/// has, so nothing is appended, nor acknowledged, after the caller goes on to close the log.
struct BoundedShutdown<App: Service>: Service {
    let app: App
    let timeout: Duration
    let connections: OpenConnections
    let state: PresenceNode
    let logger: Logger

    func run() async throws {
        try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                try await app.run()
                return true
            }
            group.addTask {
                await enforceDeadline()
                return false
            }
            // The server's end ends the watch; the watch's end (deadline enforced) leaves the server to finish.
            while let serverEnded = try await group.next() {
                if serverEnded { group.cancelAll() }
            }
        }
    }

    /// Waits for the graceful shutdown, then for `timeout` or a second signal, and closes what is left.
    /// Returns early, doing nothing, when cancelled (the server ended first).
    private func enforceDeadline() async {
        do { try await gracefulShutdown() } catch { return }
        // Trapped here (after the first signal, which the service group took) so that a second one counts.
        let signals = await UnixSignalsSequence(trapping: .sigterm, .sigint)
        let started = ContinuousClock.now
        let cause: String? = await withTaskGroup(of: String?.self) { group in
            group.addTask {
                do { try await Task.sleep(for: timeout) } catch { return nil }
                return "the \(Self.describe(timeout)) shutdown deadline passed"
            }
            group.addTask {
                for await signal in signals { return "a second \(signal) came" }
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
        guard let cause, !Task.isCancelled else { return }
        let sessions = state.openSessionCount
        let closed = connections.closeAll()
        let waited = Self.describe(ContinuousClock.now - started)
        // The sessions are counted before the close: a connection may be a WebSocket whose client never
        // answered the close frame, or an HTTP request that never finished arriving.
        logger.notice("\(cause) (\(waited) after the stop began): closed the \(closed) connection\(closed == 1 ? "" : "s") still open, \(sessions) WebSocket session\(sessions == 1 ? "" : "s") among them (each appends its disconnect, as on a normal close)")
    }

    /// `duration` in seconds, to a millisecond: "2s", "0.25s".
    static func describe(_ duration: Duration) -> String {
        let milliseconds = duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
        return milliseconds % 1000 == 0 ? "\(milliseconds / 1000)s" : "\(Double(milliseconds) / 1000)s"
    }
}
