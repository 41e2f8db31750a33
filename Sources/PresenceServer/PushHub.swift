import Chat
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
    /// How many frames may wait for the client before it is cut off.
    let queueLimit: Int
    /// The frames to write, in order.
    public let frames: AsyncStream<String>
    private let continuation: AsyncStream<String>.Continuation
    private let overflow = Atomic<Bool>(false)

    init(id: Int, user: String, conn: String, queueLimit: Int) {
        self.id = id
        self.user = user
        self.conn = conn
        self.queueLimit = queueLimit
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
    /// Session → the cursor it resumed from: pushes of older offsets are not sent to it again (a node
    /// behind the client's old node applies them after the resume).
    private var floors: [Int: Int64] = [:]
    private var nextID = 1
    /// Every user's shown changes of the newest commits: what a resuming client missed.
    private(set) var journal: ShownChangeJournal

    init(journal: ShownChangeJournal) {
        self.journal = journal
    }

    var sessionCount: Int { sessions.count }

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
        floors[session.id] = nil
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

    /// Whether commits must be looked at: someone watches, or the journal keeps changes.
    var isWatching: Bool { !watchers.isEmpty || journaling }
    private var journaling: Bool { journal.capacity > 0 && journal.isRecording }

    /// Pauses the journal while the node catches up with its cluster, and resumes it from `offset`.
    mutating func pauseJournal() { journal.pause() }
    mutating func resumeJournal(completeFrom offset: Int64) { journal.resume(completeFrom: offset) }

    /// The users a commit may change, each with what was shown of them before it and the offset to report.
    struct CommitWatch {
        var users: [(user: String, before: ShownPresence, offset: Int64)] = []
    }

    /// Before a commit is applied: the users of its records (only the watched ones when no journal is
    /// kept) and, for a `gateway_down`, those with a connection open on that gateway, with their current
    /// state. A user's offset is that of their last record in the commit (one change a commit).
    func beforeCommit(_ records: UnsafeBufferPointer<RecordView>, in projection: PresenceProjection) -> CommitWatch {
        // Users in the order of their first record; a user's entry takes the offset of their last one.
        var index: [String: Int] = [:]
        var watch = CommitWatch()
        var reordered = false
        let everyone = journaling
        func note(_ user: String, _ offset: Int64, _ before: () -> ShownPresence) {
            if let at = index[user] {
                watch.users[at].offset = max(watch.users[at].offset, offset)
                reordered = true
            } else {
                index[user] = watch.users.count
                watch.users.append((user, before(), offset))
            }
        }
        for record in records {
            if let key = record.key {
                let user = String(decoding: key, as: UTF8.self)
                if everyone || watchers[user] != nil { note(user, record.offset) { projection.shown(ofUser: key) } }
            } else if let value = record.value, let view = try? EventCodec.view(value), view.kind == .gatewayDown {
                let gateway = String(decoding: view.gateway, as: UTF8.self)
                for user in projection.usersOnline(onGateway: gateway) where everyone || watchers[user] != nil {
                    note(user, record.offset) { ShownPresence(online: true, lastSeen: nil) }
                }
            }
        }
        // Log order: a user's change is reported at their last record's offset.
        if reordered { watch.users.sort { $0.offset < $1.offset } }
        return watch
    }

    /// After the commit is applied: notes each user whose shown state changed in the journal and pushes
    /// it, in log order, to each session watching them as the settings in force let it see the user
    /// (`Access`; a watcher shares the opened conversation with the user, so they are contacts): a change
    /// of a field hidden from a watcher pushes nothing to it. Returns the number of frames queued.
    mutating func push(_ watch: CommitWatch, from projection: PresenceProjection, privacy: PrivacyTable) -> Int {
        var sent = 0
        var behind: [PushSession] = []
        for (user, before, offset) in watch.users {
            var name = user
            let shownAfter = name.withUTF8 { projection.shown(ofUser: UnsafeRawBufferPointer($0)) }
            guard before != shownAfter else { continue }
            let after = projection.state(of: user)
            if journaling { journal.record(.init(offset: offset, user: user, state: after)) }
            guard let sessionIDs = watchers[user] else { continue }
            var frames: [Visibility: String?] = [:]
            for id in sessionIDs.keys {
                guard let session = sessions[id], offset >= floors[id] ?? 0 else { continue }
                let visibility = Access.visibility(of: user, to: session.user, subjectSettings: privacy[user],
                                                   viewerSettings: privacy[session.user], contacts: true)
                let frame: String?
                if let made = frames[visibility] {
                    frame = made
                } else {
                    // What the watcher was shown before, from what was shown to all (a last seen only while
                    // offline: a device leaving while others stay pushes nothing, to anyone).
                    let was = ShownPresence(online: visibility.online && before.online, lastSeen: visibility.lastSeen ? before.lastSeen : nil)
                    let shown = visibility.apply(after)
                    frame = was == ShownPresence(shown) ? nil : Self.presenceFrame(user: user, shown, offset: offset)
                    frames[visibility] = frame
                }
                guard let frame else { continue }
                if session.send(frame) { sent += 1 } else { behind.append(session) }
            }
        }
        for session in behind { cutOff(session) }
        return sent
    }

    /// After `user`'s settings changed from `before` to `after` (tables of everyone's settings): pushes,
    /// to every session that watches someone whose shown presence the change reveals or hides, that
    /// person's presence as now shown. Those are the watchers of `user`, and `user`'s own sessions
    /// (reciprocity: the settings also decide what `user` sees). The frame carries `offset`, the
    /// projection's next offset: the change takes effect between the events before it and those after.
    mutating func pushPrivacyChange(of user: String, before: PrivacyTable, after: PrivacyTable, offset: Int64,
                                    projection: PresenceProjection) -> Int {
        // (session, subject) pairs, each once however many conversations join them.
        var pairs: [(session: Int, subject: String)] = []
        for id in (watchers[user] ?? [:]).keys.sorted() { pairs.append((id, user)) }
        for (id, session) in sessions.sorted(by: { $0.key < $1.key }) where session.user == user {
            var subjects = Set<String>()
            for members in (open[id] ?? [:]).values { subjects.formUnion(members) }
            for subject in subjects.sorted() { pairs.append((id, subject)) }
        }
        var sent = 0
        var behind: [PushSession] = []
        for (id, subject) in pairs {
            guard let session = sessions[id] else { continue }
            let state = projection.state(of: subject)
            func shown(_ table: PrivacyTable) -> PresenceProjection.UserState? {
                Access.visibility(of: subject, to: session.user, subjectSettings: table[subject], viewerSettings: table[session.user],
                                  contacts: true).apply(state)
            }
            let was = shown(before), now = shown(after)
            guard ShownPresence(was) != ShownPresence(now) else { continue }
            if session.send(Self.presenceFrame(user: subject, now, offset: offset)) { sent += 1 } else { behind.append(session) }
        }
        for session in behind { cutOff(session) }
        return sent
    }

    /// For a session that resumes from `cursor`: the changes of `members` it missed since (oldest first,
    /// each once), or nil when the journal no longer holds them all; from now on no push older than the
    /// cursor reaches it.
    mutating func resume(_ session: PushSession, from cursor: Int64, members: [String]) -> [ShownChangeJournal.Change]? {
        floors[session.id] = max(floors[session.id] ?? 0, cursor)
        return journal.changes(from: cursor, of: Set(members.filter { $0 != session.user }))
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
