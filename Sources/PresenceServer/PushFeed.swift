import Chat
import Presence
import Projector
import SegmentLog
import Synchronization

/// One commit's changes of shown presence, as the commit thread saw them: what the fan-out (`PushHub`)
/// turns into frames later, on its own thread, without the projection. Each change carries the state
/// after it and the privacy settings in force at the commit, so a frame says what the server would
/// have said at that offset however far the projection has moved on since.
struct ShownChanges {
    struct Change {
        var user: String
        /// What was shown of the user to everyone before the commit.
        var before: ShownPresence
        var after: PresenceProjection.UserState?
        /// The offset of the user's last record in the commit.
        var offset: Int64
    }

    var changes: [Change]
    var privacy: PrivacyTable
}

/// The users some session watches, each with how many (session, conversation) pairs watch them: what
/// the commit thread asks to know whose changes to hand on. Its own small lock, so that the hub can
/// change it without the node's lock and the commit thread can read it without the hub's. It may say a
/// user is watched a moment after nobody does (a little wasted work), never the reverse: a watch is
/// counted under the node's lock in the same hold that reads its `opened` frame's cursor, so every
/// commit after the cursor sees it.
final class WatchedUsers: Sendable {
    private let counts = Mutex<[String: Int]>([:])

    var isEmpty: Bool { counts.withLock { $0.isEmpty } }

    /// How many pairs watch `user` (0: nobody).
    func count(of user: String) -> Int { counts.withLock { $0[user] ?? 0 } }

    func add(_ users: [String]) {
        counts.withLock { counts in for user in users { counts[user, default: 0] += 1 } }
    }

    func remove(_ users: [String]) {
        counts.withLock { counts in
            for user in users {
                let left = (counts[user] ?? 1) - 1
                counts[user] = left > 0 ? left : nil
            }
        }
    }

    /// Runs `body` with the counts held still (one lock for a whole commit's lookups).
    func withCounts<T>(_ body: ([String: Int]) -> T) -> T { counts.withLock { body($0) } }
}

/// The commit thread's side of pushes, kept under the node's lock: reads the shown presence of the
/// users a commit touches before and after it is applied, notes the changes in the resume journal, and
/// queues them for the fan-out. The fan-out (`PushHub`, under its own lock) makes and sends the frames
/// after the node's lock is released, so a commit's hold on that lock (which every snapshot, open and
/// ingest waits behind) no longer grows with the number of watchers.
struct PushFeed {
    /// Every user's shown changes of the newest commits: what a resuming client missed.
    private(set) var journal: ShownChangeJournal
    let watched: WatchedUsers
    /// Commits' changes not yet fanned out, in log order.
    private var pending: [ShownChanges] = []
    /// At most how many frames (an upper bound: pairs watching a changed user) may wait in `pending`
    /// before the commit thread fans them out itself: the fan-out's lag and memory stay bounded, and a
    /// flood of watchers slows ingest rather than delaying pushes without end.
    var pendingFrameLimit: Int
    private var pendingFrames = 0
    private var drainScheduled = false

    init(journal: ShownChangeJournal, watched: WatchedUsers, pendingFrameLimit: Int = 65_536) {
        self.journal = journal
        self.watched = watched
        self.pendingFrameLimit = pendingFrameLimit
    }

    /// Whether commits must be looked at: someone watches, or the journal keeps changes.
    var isWatching: Bool { journaling || !watched.isEmpty }
    private var journaling: Bool { journal.capacity > 0 && journal.isRecording }

    /// Pauses the journal while the node catches up with its cluster, and resumes it from `offset`.
    mutating func pauseJournal() { journal.pause() }
    mutating func resumeJournal(completeFrom offset: Int64) { journal.resume(completeFrom: offset) }

    /// After an erasure of `user` whose cut is `offset`: the journal starts again there, with the user's
    /// change to never seen as its first entry, so a client resuming from the cut itself (its last
    /// `opened` cursor, the erasure's push lost with its socket) is told, as the sessions then open were.
    mutating func restartJournal(afterErasing user: String, at offset: Int64) {
        journal.resume(completeFrom: offset)
        if journaling { journal.record(.init(offset: offset, user: user, state: nil)) }
    }

    /// The users a commit may change, each with what was shown of them before it and the offset to report.
    struct CommitWatch {
        var users: [(user: String, before: ShownPresence, offset: Int64)] = []
    }

    /// Before a commit is applied: the users of its records (only the watched ones when no journal is
    /// kept) and, for a `gateway_down`, those with a connection open on that gateway, with their current
    /// state. A user's offset is that of their last record in the commit (one change a commit).
    func beforeCommit(_ records: UnsafeBufferPointer<RecordView>, in projection: PresenceProjection) -> CommitWatch {
        let everyone = journaling
        return watched.withCounts { counts in
            // Users in the order of their first record; a user's entry takes the offset of their last one.
            var index: [String: Int] = [:]
            var watch = CommitWatch()
            var reordered = false
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
                    if everyone || counts[user] != nil { note(user, record.offset) { projection.shown(ofUser: key) } }
                } else if let value = record.value, let view = try? EventCodec.view(value), view.kind == .gatewayDown {
                    let gateway = String(decoding: view.gateway, as: UTF8.self)
                    for user in projection.usersOnline(onGateway: gateway) where everyone || counts[user] != nil {
                        note(user, record.offset) { ShownPresence(online: true, lastSeen: nil) }
                    }
                }
            }
            // Log order: a user's change is reported at their last record's offset.
            if reordered { watch.users.sort { $0.offset < $1.offset } }
            return watch
        }
    }

    /// What the commit thread does once a commit is applied.
    enum Drain {
        /// Nothing: no change to push, or a fan-out is already on its way.
        case none
        /// Schedule a fan-out on the push queue.
        case later
        /// Fan out now, on the commit thread, once the node's lock is released: `pending` is full.
        case now
    }

    /// After the commit is applied: notes each user whose shown state changed in the journal, and queues
    /// the changes of watched users, with the privacy settings in force, for the fan-out.
    mutating func afterCommit(_ watch: CommitWatch, from projection: PresenceProjection, privacy: PrivacyTable) -> Drain {
        var changes: [ShownChanges.Change] = []
        var frames = 0
        for (user, before, offset) in watch.users {
            var name = user
            let shownAfter = name.withUTF8 { projection.shown(ofUser: UnsafeRawBufferPointer($0)) }
            guard before != shownAfter else { continue }
            let after = projection.state(of: user)
            if journaling { journal.record(.init(offset: offset, user: user, state: after)) }
            let watchers = watched.count(of: user)
            guard watchers > 0 else { continue }
            changes.append(.init(user: user, before: before, after: after, offset: offset))
            frames += watchers
        }
        guard !changes.isEmpty else { return .none }
        pending.append(ShownChanges(changes: changes, privacy: privacy))
        pendingFrames += frames
        if pendingFrames > pendingFrameLimit { return .now }
        if drainScheduled { return .none }
        drainScheduled = true
        return .later
    }

    /// Hands every queued commit to the caller (the fan-out, or an open or privacy change that must
    /// send them before its own frames), oldest first.
    mutating func takePending() -> [ShownChanges] {
        defer {
            pending = []
            pendingFrames = 0
        }
        return pending
    }

    /// Called by the scheduled fan-out as it takes the queue: the next commit schedules another.
    mutating func scheduledDrainStarted() { drainScheduled = false }
}
