import Chat
import Foundation
import Presence
import Projector

/// The node's WebSocket sessions: opening and closing them, the conversations they watch, and the
/// fan-out of the commits' changes to them. The ordering rules are invariant 3 of `PresenceNode`.
extension PresenceNode {
    /// Starts a session for `user`: appends a `connect` (gateway: this node, conn: a fresh id) and,
    /// once it is durable, queues `{"type":"ready","user":..,"conn":..,"offset":N}` as its first frame.
    public func openSession(user: String) async throws -> PushSession {
        let conn = "ws-" + String(UInt64.random(in: 0...UInt64.max), radix: 16)
        let session = withHub { hub.add(user: user, conn: conn, queueLimit: pushQueueLimit) }
        do {
            let ack = try await append(own: [PresenceEvent(kind: .connect, user: user, conn: conn, gateway: node, timestamp: Self.now())])
            var out: [UInt8] = Array("{\"type\":\"ready\",\"user\":".utf8)
            EventJSON.appendString(user, to: &out)
            out.append(contentsOf: ",\"conn\":\"\(conn)\",\"offset\":\(ack.offsets.lowerBound)}".utf8)
            let open = withHub { () -> Bool in
                guard hub.contains(session) else { return false }
                hub.reply(session, String(decoding: out, as: UTF8.self))
                return true
            }
            // An erasure of the user ended the session while its connect was on its way. A connect that
            // landed after the erasure's cut is ended here, or the user would stay online; one before it
            // was erased with the rest.
            if !open, let cut = session.erasedAt, ack.offsets.lowerBound >= cut {
                try await append(own: [PresenceEvent(kind: .disconnect, user: user, conn: conn, gateway: node, timestamp: Self.now())])
            }
        } catch {
            withHub { hub.remove(session) }
            throw error
        }
        openSockets.record(withHub { hub.sessionCount })
        return session
    }

    /// The WebSocket sessions open now.
    public var openSessionCount: Int { withHub { hub.sessionCount } }

    /// Ends a session: stops its pushes and appends its `disconnect` (unless shutdown already did).
    public func closeSession(_ session: PushSession) async {
        let wasOpen = withHub { () -> Bool in
            guard hub.contains(session) else { return false }
            hub.remove(session)
            return true
        }
        openSockets.record(withHub { hub.sessionCount })
        guard wasOpen else { return }
        do {
            try await append(own: [PresenceEvent(kind: .disconnect, user: session.user, conn: session.conn, gateway: node, timestamp: Self.now())])
        } catch {
            logger.error("could not append the disconnect of \(session.user)/\(session.conn): \(error)")
        }
    }

    /// Opens `conversation` for `session`: from now on, every change of another member's shown
    /// presence, and every new message, is pushed. Queues
    /// `{"type":"opened","conversation":..,"presence":{..},"presence_cursor":N,"last_seq":S}`, read under
    /// the lock the commits are applied under, behind the pushes of every change before N: the presence
    /// pushes that follow carry offsets ≥ N, none missing, and every message after seq S is pushed (one
    /// at S or below may come too).
    ///
    /// With `resumeFrom` (the cursor a client had reached, on this node or another of the cluster), the
    /// presence changes of the members at or after it are queued first, oldest first, each once, and the
    /// `opened` frame says `"resumed":true`; `"resumed":false` when they are no longer all known (the
    /// client then takes the frame's presence as a fresh view). No later push older than the cursor is sent.
    public func watch(_ session: PushSession, conversation: String, members: [String], resumeFrom cursor: Int64? = nil) {
        withHub {
            var frames: [String] = []
            var floor: Int64?
            let queued = withLock { () -> [ShownChanges] in
                let queued = feed.takePending()
                let at = projection.nextOffset
                hub.watch(session, conversation: conversation, members: members, from: at)
                var resumed: Bool?
                if let cursor {
                    var missed: [ShownChangeJournal.Change]?
                    if cursor <= at {
                        floor = cursor
                        missed = feed.journal.changes(from: cursor, of: Set(members.filter { $0 != session.user }))
                    }
                    // More than the client's queue holds would cut it off again on every resume (a slow consumer
                    // cut off with 4008 has missed at least that much): it gets a fresh view instead.
                    if let changes = missed, changes.count >= session.queueLimit { missed = nil }
                    // Each missed change as the settings in force show it (nothing of a user hidden from the client).
                    let access = self.access
                    for change in missed ?? [] {
                        let visibility = access.visibility(of: change.user, to: session.user, contacts: true)
                        guard visibility != .none else { continue }
                        frames.append(PushHub.presenceFrame(user: change.user, visibility.apply(change.state), offset: change.offset))
                    }
                    resumed = missed != nil
                }
                var out: [UInt8] = Array("{\"type\":\"opened\",\"conversation\":".utf8)
                EventJSON.appendString(conversation, to: &out)
                out.append(contentsOf: ",\"presence\":".utf8)
                PresenceHTTPServer.appendPresence(of: members, to: session.user, projection, access, to: &out)
                out.append(contentsOf: ",\"presence_cursor\":\(at),\"last_seq\":\(conversations.lastSeq(of: conversation))".utf8)
                if let resumed { out.append(contentsOf: ",\"resumed\":\(resumed)".utf8) }
                out.append(125)
                frames.append(String(decoding: out, as: UTF8.self))
                return queued
            }
            // The changes before the cursor go first (the new watch starts at the cursor, so they reach
            // only those who watched before), then the resumed ones and the `opened` frame.
            fanOut(queued)
            if let floor { hub.raiseFloor(session, to: floor) }
            for frame in frames { hub.reply(session, frame) }
        }
    }

    /// Waits (up to `timeout`) until the projection has applied everything before `offset`: a client
    /// resuming on a node of the cluster that is a moment behind the one it came from. False on timeout.
    public func waitUntilApplied(through offset: Int64, timeout: Duration = .seconds(5)) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while nextOffset < offset {
            guard ContinuousClock.now < deadline else { return false }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return true
    }

    /// Pushes a new message to the sessions that have its conversation open:
    /// `{"type":"message","conversation":..,"seq":..,"sender":..,"content":..,"ts":..}`.
    func pushMessage(_ message: ConversationStore.Message, in conversation: String) {
        var out: [UInt8] = Array("{\"type\":\"message\",\"conversation\":".utf8)
        EventJSON.appendString(conversation, to: &out)
        out.append(44)
        out.append(contentsOf: message.json.dropFirst())
        let frame = String(decoding: out, as: UTF8.self)
        let sent = withHub { hub.push(frame, toOpenersOf: conversation) }
        if sent > 0 { pushesSent.increment(by: sent) }
    }

    /// Closes `conversation` for `session`; queues `{"type":"closed","conversation":..}`.
    public func unwatch(_ session: PushSession, conversation: String) {
        withHub {
            hub.unwatch(session, conversation: conversation)
            var out: [UInt8] = Array("{\"type\":\"closed\",\"conversation\":".utf8)
            EventJSON.appendString(conversation, to: &out)
            out.append(125)
            hub.reply(session, String(decoding: out, as: UTF8.self))
        }
    }

    /// Pauses the resume journal (a node catching up with its cluster before it serves) and resumes it
    /// from the projection's next offset.
    func pauseJournal() { withLock { feed.pauseJournal() } }
    func resumeJournal() { withLock { feed.resumeJournal(completeFrom: projection.nextOffset) } }

    /// Queues a frame for `session` behind the pushes already queued.
    public func reply(_ session: PushSession, _ frame: String) {
        withHub { hub.reply(session, frame) }
    }

    // MARK: The fan-out

    /// Fans out every commit queued so far: on the push queue (`scheduled`), or on the commit thread
    /// when the queue is full. Takes `hubLock`, then `lock` only to take the queue.
    func fanOutQueued(scheduled: Bool) {
        withHub {
            let queued = withLock { () -> [ShownChanges] in
                if scheduled { feed.scheduledDrainStarted() }
                return feed.takePending()
            }
            fanOut(queued)
        }
    }

    /// Sends `queued` (under `hubLock`), counting the frames and the time taken.
    func fanOut(_ queued: [ShownChanges]) {
        guard !queued.isEmpty else { return }
        let started = DispatchTime.now()
        let sent = hub.fanOut(queued)
        fanOutLatency.recordInterval(since: started)
        if sent > 0 { pushesSent.increment(by: sent) }
    }

    func withHub<T>(_ body: () throws -> T) rethrows -> T {
        hubLock.lock()
        defer { hubLock.unlock() }
        return try body()
    }
}
