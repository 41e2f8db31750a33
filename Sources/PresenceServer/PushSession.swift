import Synchronization

/// One WebSocket client: a user's connection to this node, and the frames on their way to it.
///
/// Frames are queued in log order by whoever holds the node's hub lock (`PushHub`) and written to the
/// socket by the session's own task. A client that falls `queueLimit` frames behind is cut off (its
/// queue is closed and `overflowed` set): it reconnects and takes a fresh snapshot, which is better
/// than a gap it cannot see.
public final class PushSession: Sendable {
    /// How many frames may wait for a client by default (`presence serve --push-queue-limit`).
    public static let defaultQueueLimit = 4096

    let id: Int
    /// The user the token speaks for.
    public let user: String
    /// The connection id of the `connect` this session appended.
    public let conn: String
    /// How many frames may wait for the client before it is cut off.
    let queueLimit: Int
    /// The frames to write, in order.
    public let frames: AsyncStream<String>
    private let continuation: AsyncStream<String>.Continuation
    private let overflow = Atomic<Bool>(false)
    /// The log offset at which an erasure of the user ended the session; -1 while it was not.
    private let erasure = Atomic<Int64>(-1)

    init(id: Int, user: String, conn: String, queueLimit: Int) {
        self.id = id
        self.user = user
        self.conn = conn
        self.queueLimit = queueLimit
        (frames, continuation) = AsyncStream.makeStream(of: String.self, bufferingPolicy: .bufferingOldest(queueLimit))
    }

    /// True when the session was cut off for falling behind.
    public var overflowed: Bool { overflow.load(ordering: .acquiring) }

    /// True when the session was ended because its user was erased (`PresenceNode.forget`).
    public var erased: Bool { erasedAt != nil }

    /// The presence log's end offset when an erasure of the user ended the session: records of the
    /// user before it are gone, those from it on are new.
    public var erasedAt: Int64? {
        let offset = erasure.load(ordering: .acquiring)
        return offset < 0 ? nil : offset
    }

    /// The WebSocket close code for a session ended because its user was erased: their records are
    /// gone (as HTTP's 410), and the socket's own connect with them.
    public static let erasedCloseCode: UInt16 = 4410

    /// Queues a frame; false (and the queue closed) when the client has fallen too far behind.
    @discardableResult
    func send(_ frame: String) -> Bool {
        switch continuation.yield(frame) {
        case .enqueued: return true
        case .dropped:
            overflow.store(true, ordering: .releasing)
            continuation.finish()
            return false
        case .terminated: return false
        @unknown default: return false
        }
    }

    /// Marks the session ended by an erasure of the records before `offset`; `finish()` follows.
    func markErased(at offset: Int64) {
        erasure.store(offset, ordering: .releasing)
    }

    /// Closes the queue: the writer drains what is in it, then stops.
    func finish() {
        continuation.finish()
    }
}
