import Chat
import Presence
import Projector
import SegmentLog
import Synchronization

/// Who watches whose presence: the sessions, the conversations each has open, and for every watched
/// user the sessions to tell; and the fan-out, which turns the commits' changes (`ShownChanges`, queued
/// by the commit thread in `PushFeed`) into frames. Not thread-safe: `PresenceNode` calls it under its
/// hub lock, which is taken before the node's lock when both are needed (an open, a privacy change), so
/// that registering interest, reading the state and the frames a session is sent follow the log.
struct PushHub {
    /// A session's watch of one user, through one or more of its open conversations.
    struct Watch {
        /// Through how many of the session's open conversations.
        var count: Int
        /// The projection's next offset when the watch began (its `opened` frame's cursor): older
        /// changes, still queued for the fan-out when it began, are in that frame and not pushed.
        var from: Int64
    }

    private var sessions: [Int: PushSession] = [:]
    /// Session → open conversation → the other members it watches through it.
    private var open: [Int: [String: [String]]] = [:]
    /// Watched user → session → its watch.
    private var watchers: [String: [Int: Watch]] = [:]
    /// The same users and counts, for the commit thread (`PushFeed`).
    let watched: WatchedUsers
    /// Conversation → the sessions that have it open.
    private var openers: [String: Set<Int>] = [:]
    /// Session → the cursor it resumed from: pushes of older offsets are not sent to it again (a node
    /// behind the client's old node applies them after the resume).
    private var floors: [Int: Int64] = [:]
    private var nextID = 1

    init(watched: WatchedUsers) {
        self.watched = watched
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

    /// Ends `user`'s sessions (their records before `offset` are being erased): each is removed as a
    /// closed one is (so no disconnect is appended for it when its socket closes: its connect is erased)
    /// and marked, so its socket closes with `PushSession.erasedCloseCode`. Returns how many.
    mutating func endSessions(of user: String, erasingBefore offset: Int64) -> Int {
        let ended = sessions.values.filter { $0.user == user }
        for session in ended {
            session.markErased(at: offset)
            remove(session)
        }
        return ended.count
    }

    /// Every session still here (at shutdown), removed.
    mutating func removeAll() -> [PushSession] {
        let all = Array(sessions.values)
        for session in all { remove(session) }
        return all
    }

    /// Watches the other `members` of `conversation` for `session` from offset `from` on (a member it
    /// already watched through another conversation stays watched as before); false if it was open
    /// already. Call with the node's lock held too: the commit thread hands on the members' changes from
    /// the next commit on.
    @discardableResult
    mutating func watch(_ session: PushSession, conversation: String, members: [String], from: Int64) -> Bool {
        guard sessions[session.id] != nil, !session.overflowed, open[session.id]?[conversation] == nil else { return false }
        let others = members.filter { $0 != session.user }
        open[session.id]?[conversation] = others
        openers[conversation, default: []].insert(session.id)
        for member in others { watchers[member, default: [:]][session.id, default: Watch(count: 0, from: from)].count += 1 }
        watched.add(others)
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
            let left = (watchers[member]?[session.id]?.count ?? 1) - 1
            if left > 0 { watchers[member]?[session.id]?.count = left } else { watchers[member]?[session.id] = nil }
            if watchers[member]?.isEmpty == true { watchers[member] = nil }
        }
        watched.remove(others)
        return true
    }

    // MARK: Pushing a commit's changes

    /// Pushes commits' changes (taken from `PushFeed`, oldest first), in log order, to each session
    /// watching the user as the settings in force at the commit let it see them (`Access`; a watcher shares the opened conversation with the
    /// user, so they are contacts): a change of a field hidden from a watcher pushes nothing to it.
    /// Sessions that fall behind are cut off. Returns the number of frames queued.
    mutating func fanOut(_ commits: [ShownChanges]) -> Int {
        var sent = 0
        for commit in commits { sent += fanOut(commit) }
        return sent
    }

    private mutating func fanOut(_ commit: ShownChanges) -> Int {
        var sent = 0
        var behind: [PushSession] = []
        for change in commit.changes {
            guard let sessionWatches = watchers[change.user] else { continue }
            var frames: [Visibility: String?] = [:]
            for (id, watch) in sessionWatches {
                guard change.offset >= watch.from, let session = sessions[id], change.offset >= floors[id] ?? 0 else { continue }
                let visibility = Access.visibility(of: change.user, to: session.user, subjectSettings: commit.privacy[change.user],
                                                   viewerSettings: commit.privacy[session.user], contacts: true)
                let frame: String?
                if let made = frames[visibility] {
                    frame = made
                } else {
                    // What the watcher was shown before, from what was shown to all (a last seen only while
                    // offline: a device leaving while others stay pushes nothing, to anyone).
                    let before = change.before
                    let was = ShownPresence(online: visibility.online && before.online, lastSeen: visibility.lastSeen ? before.lastSeen : nil)
                    let shown = visibility.apply(change.after)
                    frame = was == ShownPresence(shown) ? nil : Self.presenceFrame(user: change.user, shown, offset: change.offset)
                    frames[visibility] = frame
                }
                guard let frame else { continue }
                if session.send(frame) { sent += 1 } else { behind.append(session) }
            }
        }
        for session in behind { cutOff(session) }
        return sent
    }

    /// After `user`'s settings changed from `before` to `after` (tables of everyone's settings): the
    /// frames to send to every session that watches someone whose shown presence the change reveals or
    /// hides, that person's presence as now shown. Those are the watchers of `user`, and `user`'s own
    /// sessions (reciprocity: the settings also decide what `user` sees). The frame carries `offset`, the
    /// projection's next offset: the change takes effect between the events before it and those after.
    /// Made under the node's lock (the projection is read); sent with `send` once it is released.
    func privacyChangeFrames(of user: String, before: PrivacyTable, after: PrivacyTable, offset: Int64,
                             projection: PresenceProjection) -> [(PushSession, String)] {
        // (session, subject) pairs, each once however many conversations join them.
        var pairs: [(session: Int, subject: String)] = []
        for id in (watchers[user] ?? [:]).keys.sorted() { pairs.append((id, user)) }
        for (id, session) in sessions.sorted(by: { $0.key < $1.key }) where session.user == user {
            var subjects = Set<String>()
            for members in (open[id] ?? [:]).values { subjects.formUnion(members) }
            for subject in subjects.sorted() { pairs.append((id, subject)) }
        }
        var frames: [(PushSession, String)] = []
        for (id, subject) in pairs {
            guard let session = sessions[id] else { continue }
            let state = projection.state(of: subject)
            func shown(_ table: PrivacyTable) -> PresenceProjection.UserState? {
                Access.visibility(of: subject, to: session.user, subjectSettings: table[subject], viewerSettings: table[session.user],
                                  contacts: true).apply(state)
            }
            let was = shown(before), now = shown(after)
            guard ShownPresence(was) != ShownPresence(now) else { continue }
            frames.append((session, Self.presenceFrame(user: subject, now, offset: offset)))
        }
        return frames
    }

    /// After `user` was erased: the frames to send to every session that watches them and was shown
    /// something of them (`before`, their state until then, as the settings in `privacy` showed it):
    /// `user` as a user never seen (offline, no last seen), at `offset`, the projection's next offset.
    /// Made under the node's lock; sent with `send` once it is released.
    func erasureFrames(of user: String, before state: PresenceProjection.UserState?, privacy: PrivacyTable,
                       offset: Int64) -> [(PushSession, String)] {
        var frames: [(PushSession, String)] = []
        for id in (watchers[user] ?? [:]).keys.sorted() {
            guard let session = sessions[id] else { continue }
            let was = Access.visibility(of: user, to: session.user, subjectSettings: privacy[user], viewerSettings: privacy[session.user],
                                        contacts: true).apply(state)
            guard ShownPresence(was) != ShownPresence(nil) else { continue }
            frames.append((session, Self.presenceFrame(user: user, nil, offset: offset)))
        }
        return frames
    }

    /// Queues each frame for its session, in order; cuts off the sessions that fell behind. Returns
    /// the number queued.
    mutating func send(_ frames: [(PushSession, String)]) -> Int {
        var sent = 0
        for (session, frame) in frames {
            if session.send(frame) { sent += 1 } else { cutOff(session) }
        }
        return sent
    }

    /// For a session that resumed from `cursor`: from now on no push older than the cursor reaches it.
    mutating func raiseFloor(_ session: PushSession, to cursor: Int64) {
        guard sessions[session.id] != nil else { return }
        floors[session.id] = max(floors[session.id] ?? 0, cursor)
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
