import Presence
import Projector
import SegmentLog
import Synchronization

/// One WebSocket client: a user's connection to this node, and the frames on their way to it.
///
/// Frames are queued in log order by whoever holds `PresenceNode`'s lock and written to the socket by the
/// session's own task. A client that falls `queueLimit` frames behind is cut off (its
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
    /// The frames to write, in order.
    public let frames: AsyncStream<String>
    private let continuation: AsyncStream<String>.Continuation
    private let overflow = Atomic<Bool>(false)

    init(id: Int, user: String, conn: String, queueLimit: Int) {
        self.id = id
        self.user = user
        self.conn = conn
        (frames, continuation) = AsyncStream.makeStream(of: String.self, bufferingPolicy: .bufferingOldest(queueLimit))
    }

    /// True when the session was cut off for falling behind.
    public var overflowed: Bool { overflow.load(ordering: .acquiring) }

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

    /// Closes the queue: the writer drains what is in it, then stops.
    func finish() {
        continuation.finish()
    }
}

/// Who watches whose presence: the sessions, the conversations each has open, and for every watched
/// user the sessions to tell. Not thread-safe: `PresenceNode` calls it under its lock, the same lock
/// under which the commit thread applies events, so that registering interest, reading the state and
/// pushing changes are ordered with the log.
struct PushHub {
    private var sessions: [Int: PushSession] = [:]
    /// Session → open conversation → the other members it watches through it.
    private var open: [Int: [String: [String]]] = [:]
    /// Watched user → session → how many of the session's open conversations include the user.
    private var watchers: [String: [Int: Int]] = [:]
    /// Conversation → the sessions that have it open.
    private var openers: [String: Set<Int>] = [:]
    private var nextID = 1

    var sessionCount: Int { sessions.count }
    var isWatching: Bool { !watchers.isEmpty }

    func contains(_ session: PushSession) -> Bool { sessions[session.id] != nil }

    mutating func add(user: String, conn: String, queueLimit: Int) -> PushSession {
        let session = PushSession(id: nextID, user: user, conn: conn, queueLimit: queueLimit)
        nextID += 1
        sessions[session.id] = session
        open[session.id] = [:]
        return session
    }

    /// Forgets a session and everything it watched; closes its queue.
    mutating func remove(_ session: PushSession) {
        cutOff(session)
        open[session.id] = nil
        sessions[session.id] = nil
    }

    /// Stops pushing to a session that fell behind, and closes its queue; it stays listed until its
    /// socket closes, so that its disconnect is still appended once.
    mutating func cutOff(_ session: PushSession) {
        for conversation in open[session.id]?.keys.map({ $0 }) ?? [] { unwatch(session, conversation: conversation) }
        session.finish()
    }

    /// Every session still here (at shutdown), removed.
    mutating func removeAll() -> [PushSession] {
        let all = Array(sessions.values)
        for session in all { remove(session) }
        return all
    }

    /// Watches the other `members` of `conversation` for `session`; false if it was open already.
    @discardableResult
    mutating func watch(_ session: PushSession, conversation: String, members: [String]) -> Bool {
        guard sessions[session.id] != nil, !session.overflowed, open[session.id]?[conversation] == nil else { return false }
        let others = members.filter { $0 != session.user }
        open[session.id]?[conversation] = others
        openers[conversation, default: []].insert(session.id)
        for member in others { watchers[member, default: [:]][session.id, default: 0] += 1 }
        return true
    }

    /// Stops watching through `conversation`; false if it was not open.
    @discardableResult
    mutating func unwatch(_ session: PushSession, conversation: String) -> Bool {
        guard let others = open[session.id]?[conversation] else { return false }
        open[session.id]?[conversation] = nil
        openers[conversation]?.remove(session.id)
        if openers[conversation]?.isEmpty == true { openers[conversation] = nil }
        for member in others {
            let left = (watchers[member]?[session.id] ?? 1) - 1
            watchers[member]?[session.id] = left > 0 ? left : nil
            if watchers[member]?.isEmpty == true { watchers[member] = nil }
        }
        return true
    }

    // MARK: Pushing a commit's changes

    /// The watched users a commit may change, each with their state before it and the offset to report.
    struct CommitWatch {
        var users: [(user: String, before: PresenceProjection.UserState?, offset: Int64)] = []
    }

    /// Before a commit is applied: the watched users among its records (all of them when it holds a
    /// `gateway_down`, which can end anyone's connections), with their current state.
    func beforeCommit(_ records: UnsafeBufferPointer<RecordView>, in projection: PresenceProjection) -> CommitWatch {
        var offsets: [String: Int64] = [:]
        var gatewayDown: Int64?
        for record in records {
            if let key = record.key {
                let user = String(decoding: key, as: UTF8.self)
                if watchers[user] != nil { offsets[user] = record.offset }
            } else if let value = record.value, (try? EventCodec.view(value))?.kind == .gatewayDown {
                gatewayDown = record.offset
            }
        }
        if let gatewayDown {
            for user in watchers.keys where offsets[user] == nil { offsets[user] = gatewayDown }
        }
        var watch = CommitWatch()
        for (user, offset) in offsets { watch.users.append((user, projection.state(of: user), offset)) }
        watch.users.sort { $0.offset < $1.offset }
        return watch
    }

    /// After the commit is applied: pushes each watched user whose shown state changed, in log order.
    /// Returns the number of frames queued.
    mutating func push(_ watch: CommitWatch, from projection: PresenceProjection) -> Int {
        var sent = 0
        var behind: [PushSession] = []
        for (user, before, offset) in watch.users {
            let after = projection.state(of: user)
            guard ShownPresence(before) != ShownPresence(after), let sessionIDs = watchers[user] else { continue }
            let frame = Self.presenceFrame(user: user, after, offset: offset)
            for id in sessionIDs.keys {
                guard let session = sessions[id] else { continue }
                if session.send(frame) { sent += 1 } else { behind.append(session) }
            }
        }
        for session in behind { cutOff(session) }
        return sent
    }

    /// Queues `frame` for every session that has `conversation` open; returns how many.
    mutating func push(_ frame: String, toOpenersOf conversation: String) -> Int {
        var sent = 0
        for id in openers[conversation] ?? [] {
            guard let session = sessions[id] else { continue }
            if session.send(frame) { sent += 1 } else { cutOff(session) }
        }
        return sent
    }

    /// Queues `frame` for `session` (a reply to the client), keeping it behind earlier pushes.
    mutating func reply(_ session: PushSession, _ frame: String) {
        if !session.send(frame) { cutOff(session) }
    }

    /// `{"type":"presence","user":..,"online":true,"offset":N}`, or with `"online":false,"last_seen":..`.
    static func presenceFrame(user: String, _ state: PresenceProjection.UserState?, offset: Int64) -> String {
        var out: [UInt8] = Array("{\"type\":\"presence\",\"user\":".utf8)
        EventJSON.appendString(user, to: &out)
        if let state, state.online {
            out.append(contentsOf: ",\"online\":true".utf8)
        } else {
            out.append(contentsOf: ",\"online\":false,\"last_seen\":".utf8)
            Timestamp.appendJSON(state?.lastSeen, to: &out)
        }
        out.append(contentsOf: ",\"offset\":\(offset)}".utf8)
        return String(decoding: out, as: UTF8.self)
    }
}
