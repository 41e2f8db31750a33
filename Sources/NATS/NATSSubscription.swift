/// The messages of one subscription, in the order the server sent them. Ends when unsubscribed or when the
/// connection closes (with the connection's error when it gave up).
public struct NATSSubscription: AsyncSequence, Sendable {
    public typealias Element = NATSMessage

    let connection: NATSConnection
    /// The subscription id sent in SUB.
    public let sid: UInt64
    /// The subject subscribed to.
    public let subject: String
    let stream: AsyncThrowingStream<NATSMessage, any Error>

    public func makeAsyncIterator() -> AsyncThrowingStream<NATSMessage, any Error>.AsyncIterator {
        stream.makeAsyncIterator()
    }

    /// Stops the subscription (UNSUB) and ends its sequence.
    public func unsubscribe() {
        connection.unsubscribe(sid: sid)
    }
}
