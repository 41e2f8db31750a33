import Foundation
import NATS
import NIOCore
import Synchronization

extension PullConsumer {
    /// Messages as they come, with no round trip per batch (as nats.go's `Consume`): pull requests for
    /// up to `batch` messages stay open at the server, each for `expires`, and more are asked for once
    /// half have come; while the server has nothing it sends a heartbeat every `heartbeat`.
    ///
    /// The sequence ends with an error when the consumer is gone (status 409 other than a leadership
    /// change) or when nothing, not even a heartbeat, came for three heartbeats (the server or the
    /// consumer's leader went away, and the pull requests with it): make the consumer afresh then.
    /// Acknowledging is the caller's (`JetStreamMessage.ack`).
    public func consume(batch: Int = 256, expires: Duration = .seconds(10), heartbeat: Duration = .seconds(2)) throws
        -> AsyncThrowingStream<JetStreamMessage, any Error> {
        precondition(batch >= 2 && expires > heartbeat * 2, "a pull of two or more, expiring after two heartbeats")
        let connection = jetStream.connection
        let inbox = "_INBOX.consume." + String(UInt64.random(in: 0...UInt64.max), radix: 36)
        let subscription = try connection.subscribe(to: inbox)
        let subject = "\(jetStream.apiPrefix).CONSUMER.MSG.NEXT.\(stream).\(consumer)"
        let request = #"{"expires":\#(Self.nanoseconds(expires)),"idle_heartbeat":\#(Self.nanoseconds(heartbeat)),"batch":"#
        let lastHeard = LastHeard()
        let (messages, continuation) = AsyncThrowingStream<JetStreamMessage, any Error>.makeStream()

        let reader = Task {
            // Messages asked for and not yet delivered, over every open pull request.
            var outstanding = 0
            func pull() throws {
                let more = batch - outstanding
                try connection.publish(ByteBuffer(string: request + "\(more)}"), to: subject, replyTo: inbox)
                outstanding = batch
            }
            do {
                try pull()
                for try await message in subscription {
                    lastHeard.now()
                    switch message.status {
                    case nil:
                        outstanding -= 1
                        continuation.yield(JetStreamMessage(message: message, connection: connection))
                    case 100:
                        continue  // a heartbeat
                    case 404, 408:
                        // A pull request ended (expired, or nothing now): what it still owed will not come.
                        let unfilled = message.headers?["Nats-Pending-Messages"].flatMap(Int.init) ?? outstanding
                        outstanding = max(0, outstanding - unfilled)
                    case 409:
                        let text = message.headers?.statusDescription ?? "conflict"
                        guard text.localizedCaseInsensitiveContains("leadership change") else {
                            throw JetStreamError(code: 409, errorCode: nil, description: "pull refused: \(text)", subject: subject)
                        }
                        outstanding = 0  // the requests went with the old leader
                    case let status?:
                        throw JetStreamError(code: status, errorCode: nil, description: "unexpected status \(status) in a pull", subject: subject)
                    }
                    if outstanding <= batch / 2 { try pull() }
                }
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
            subscription.unsubscribe()
        }
        // Silence for three heartbeats: the pull requests are lost (a reconnect, a dead server).
        let watchdog = Task {
            let limit = UInt64(Self.nanoseconds(heartbeat)) * 3
            while !Task.isCancelled {
                try? await Task.sleep(for: heartbeat)
                if DispatchTime.now().uptimeNanoseconds - lastHeard.time > limit {
                    continuation.finish(throwing: NATSError(.timeout, "nothing from the consumer \(consumer) for three heartbeats", subject: subject))
                    subscription.unsubscribe()
                    return
                }
            }
        }
        continuation.onTermination = { _ in
            reader.cancel()
            watchdog.cancel()
            subscription.unsubscribe()
        }
        return messages
    }

    static func nanoseconds(_ duration: Duration) -> Int64 {
        duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000
    }
}

/// When the server was last heard from on a consume's inbox.
private final class LastHeard: Sendable {
    private let nanoseconds = Atomic<UInt64>(DispatchTime.now().uptimeNanoseconds)
    var time: UInt64 { nanoseconds.load(ordering: .relaxed) }
    func now() { nanoseconds.store(DispatchTime.now().uptimeNanoseconds, ordering: .relaxed) }
}
