import Chat
import Foundation
import Logging
import Metrics
import Presence
import Projector
import SegmentLog

/// The server's state: the presence log's writer and the projection folded from it, kept in step.
///
/// Appends go through the `LogWriter` (group commit, fsync before the acknowledgement); the commit
/// thread applies each committed request to the projection, in log order, before the caller is
/// answered, so a reader that sees an acknowledgement also sees its effect.
public final class LiveState: @unchecked Sendable {
    // @unchecked: `projection` is touched only under `lock`; `writer` is itself thread-safe.
    private let lock = NSLock()
    private let projection: PresenceProjection
    let writer: LogWriter
    let data: String
    /// Conversations and messages, in their own log.
    public let conversations: ConversationStore
    /// Who may see what (`Access`): asked by every route, the fast path, WebSocket opens and pushes.
    public var access: Access { Access(chat: conversations) }

    /// This node's gateway name: its sockets' connects and disconnects and its heartbeats carry it.
    public let node: String
    /// The late-arrival horizon the log is written with (ms).
    public let horizon: Int64
    /// Where the node says what it did (recovery, checkpoints, leases) and what went wrong.
    private let logger: Logger

    /// Frames that may wait for a WebSocket client before it is cut off (close 4008).
    let pushQueueLimit: Int

    /// Opens the data directory (taking its writer lock), loads the newest checkpoint and replays the
    /// log after it, then starts the writer. `horizon`: the one asked for; nil takes the data
    /// directory's stored horizon (else the default). `logger` receives recovery and checkpoint notes.
    public init(data: String, configuration: LogConfiguration, horizon: Int64?, idWindow: Int64? = nil, node: String = "presence-node",
                pushQueueLimit: Int = PushSession.defaultQueueLimit, chat: ConversationStore.Options = .init(), logger: Logger) throws {
        self.data = data
        self.node = node
        self.pushQueueLimit = pushQueueLimit
        self.logger = logger
        let report: (String) -> Void = { logger.notice("\($0)") }
        let directory = try DataDirectory(path: data)
        self.directory = directory
        let horizon = try StoredHorizon.forWriting(directory, requested: horizon)
        self.horizon = horizon
        let log = try directory.openLog(presenceLogName, configuration: configuration, report: report)
        let restored = try Replay.restore(data: data, logDirectory: log.directory, horizon: horizon, logEndOffset: log.endOffset)
        for skipped in restored.checkpoint.skipped { report("checkpoint skipped: \(skipped)") }
        if let used = restored.checkpoint.used { report("loaded \(used)") }
        let projection = restored.projection, summary = restored.summary
        report(projection.nextOffset == 0 ? "the log is empty"
               : "replayed \(summary.events) events after the checkpoint; state through offset \(projection.nextOffset - 1)")
        self.projection = projection
        eventIDs = try EventIDIndex.rebuild(logDirectory: log.directory, window: idWindow ?? horizon, newest: log.maxTimestamp)
        // The horizon is decided on the commit thread against what the log holds (`LateArrivalAdmission`):
        // what the writer acknowledges, the projection applies.
        var lateArrivals = LateArrivalGuard(horizon: horizon, newest: projection.maxTimestamp == Int64.min ? nil : projection.maxTimestamp)
        lateArrivals.refuser = .server
        self.writer = LogWriter(log: log, admission: LateArrivalAdmission(lateArrivals))
        self.conversations = try ConversationStore(directory: directory, configuration: configuration, options: chat, report: report)
        conversations.messageObserver = { [unowned self] conversation, message in pushMessage(message, in: conversation) }
    }

    private let directory: DataDirectory

    /// Reads the projection under the lock.
    public func read<T>(_ body: (PresenceProjection) throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body(projection)
    }

    private let eventsAppended = Counter(label: "presence_events_appended_total")
    private let commitLatency = Timer(label: "presence_commit_seconds")

    /// Appends `records` durably, applies them to the projection, pushes the changes watchers see, and
    /// returns their offsets.
    public func append(_ records: RecordBuffer) async throws -> AppendResult {
        let started = DispatchTime.now()
        defer { commitLatency.recordInterval(since: started) }
        let result: Result<AppendResult, LogError> = await withCheckedContinuation { continuation in
            writer.append(records) { [self] result in
                if case .success(let ack) = result {
                    eventsAppended.increment(by: records.count)
                    lock.lock()
                    records.withRecordViews(firstOffset: ack.offsets.lowerBound) { views in
                        let watch = hub.isWatching ? hub.beforeCommit(views, in: projection) : nil
                        let refusedBefore = projection.refusedEvents
                        do { try projection.apply(batch: views) } catch {
                            // The records were validated before the append; a failure here is a bug, not input.
                            assertionFailure("a committed record did not apply: \(error)")
                        }
                        // The writer's admission check refuses what the fold would: none is skipped here.
                        assert(projection.refusedEvents == refusedBefore, "a committed event was refused by the projection")
                        eventIDs.record(records, firstOffset: ack.offsets.lowerBound)
                        if let watch, !watch.users.isEmpty { pushesSent.increment(by: hub.push(watch, from: projection)) }
                    }
                    lock.unlock()
                }
                continuation.resume(returning: result)
            }
        }
        return try result.get()
    }

    /// The event ids written within the window (`EventIDIndex`), kept under `lock` on the commit thread.
    private var eventIDs: EventIDIndex
    /// The event ids of requests between their check and their commit.
    private let idClaims = InFlightClaims<EventIDIndex.Key>()

    /// What `appendEvents` did: each record's offset (a repeat's is its first writing's) and which records
    /// were repeats, not written again.
    public struct EventsAck: Sendable {
        public var offsets: [Int64]
        public var repeats: [Int]
    }

    /// A record whose event id the log holds for another event.
    public struct EventIDConflict: Error, Sendable {
        public let record: Int
        public let reason: String
    }

    /// Appends gateway events, de-duplicated by their event ids (`EventIDIndex`): a record whose id the
    /// log already holds for the same event is not written again and is acknowledged with the first
    /// offset; one that holds it for another event refuses the request (`EventIDConflict`, nothing
    /// written). Requests carrying the same id are decided one after the other (`InFlightClaims`), so a
    /// retry racing its original is still a repeat.
    public func appendEvents(_ records: RecordBuffer) async throws -> EventsAck {
        var identities: [(key: EventIDIndex.Key, fingerprint: UInt64)?] = []
        identities.reserveCapacity(records.count)
        for index in 0..<records.count {
            let timestamp = records.timestamp(at: index)
            identities.append(records.withRecord(at: index) { EventIDIndex.identify(key: $0, value: $1, timestamp: timestamp) })
        }
        let keys = Set(identities.compactMap { $0?.key })
        if keys.isEmpty {
            let ack = try await append(records)
            return EventsAck(offsets: (0..<records.count).map { ack.offsets.lowerBound + Int64($0) }, repeats: [])
        }
        return try await idClaims.holding(keys) {
            // Each record: new (written, its offset known after the commit), or the repeat of an earlier
            // writing, or of a record earlier in this request.
            enum Fate { case fresh(Int), earlier(Int64), sameAs(Int) }
            var fates: [Fate] = []
            var fresh: [Int] = []
            try withLock {
                var inRequest: [EventIDIndex.Key: (record: Int, fingerprint: UInt64)] = [:]
                for (index, identity) in identities.enumerated() {
                    guard let identity else {
                        fates.append(.fresh(fresh.count))
                        fresh.append(index)
                        continue
                    }
                    let earlier = eventIDs.earlier(identity.key).map { (Int64?.some($0.offset), $0.fingerprint) }
                        ?? inRequest[identity.key].map { (Int64?.none, $0.fingerprint) }
                    if let (offset, fingerprint) = earlier {
                        guard fingerprint == identity.fingerprint else {
                            let at = offset.map { "at offset \($0)" } ?? "by an earlier line of this request"
                            throw EventIDConflict(record: index, reason: "event id \"\(identity.key.id)\" was used \(at) for another event of this gateway; refused")
                        }
                        if let offset { fates.append(.earlier(offset)) } else if let first = inRequest[identity.key] { fates.append(.sameAs(first.record)) }
                        continue
                    }
                    inRequest[identity.key] = (index, identity.fingerprint)
                    fates.append(.fresh(fresh.count))
                    fresh.append(index)
                }
            }
            var first: Int64 = 0
            if !fresh.isEmpty {
                first = try await append(fresh.count == records.count ? records : records.subset(fresh)).offsets.lowerBound
            }
            var offsets: [Int64] = []
            var repeats: [Int] = []
            for (index, fate) in fates.enumerated() {
                switch fate {
                case .fresh(let position): offsets.append(first + Int64(position))
                case .earlier(let offset): offsets.append(offset); repeats.append(index)
                case .sameAs(let record): offsets.append(offsets[record]); repeats.append(index)
                }
            }
            return EventsAck(offsets: offsets, repeats: repeats)
        }
    }

    /// The late-arrival test as of now: the log's horizon and the projection's newest event time.
    public func lateArrivalGuard() -> LateArrivalGuard {
        LateArrivalGuard(horizon: horizon, newest: read { $0.maxTimestamp == Int64.min ? nil : $0.maxTimestamp })
    }

    /// Appends events this node makes itself (its sockets' connects and disconnects, heartbeats,
    /// gateway_downs), refusing, as ingest does, one older than the late-arrival horizon allows.
    @discardableResult
    public func append(own events: [PresenceEvent]) async throws -> AppendResult {
        var records = RecordBuffer()
        var lateArrivals = lateArrivalGuard()
        for event in events {
            do throws(EventParseError) { try lateArrivals.admit(event.timestamp) } catch {
                throw LogError(.invalidArgument, "\(event.kind.name) at \(Timestamp.format(event.timestamp)): \(error.reason)")
            }
            EventCodec.append(event, to: &records)
        }
        return try await append(records)
    }

    // MARK: WebSocket sessions

    private var hub = PushHub()
    private let pushesSent = Counter(label: "presence_pushes_sent_total")
    private let openSockets = Gauge(label: "presence_websockets_open")

    /// Starts a session for `user`: appends a `connect` (gateway: this node, conn: a fresh id) and,
    /// once it is durable, queues `{"type":"ready","user":..,"conn":..,"offset":N}` as its first frame.
    public func openSession(user: String) async throws -> PushSession {
        let conn = "ws-" + String(UInt64.random(in: 0...UInt64.max), radix: 16)
        let session = withLock { hub.add(user: user, conn: conn, queueLimit: pushQueueLimit) }
        do {
            let ack = try await append(own: [PresenceEvent(kind: .connect, user: user, conn: conn, gateway: node, timestamp: Self.now())])
            var out: [UInt8] = Array("{\"type\":\"ready\",\"user\":".utf8)
            EventJSON.appendString(user, to: &out)
            out.append(contentsOf: ",\"conn\":\"\(conn)\",\"offset\":\(ack.offsets.lowerBound)}".utf8)
            withLock { hub.reply(session, String(decoding: out, as: UTF8.self)) }
        } catch {
            withLock { hub.remove(session) }
            throw error
        }
        openSockets.record(withLock { hub.sessionCount })
        return session
    }

    /// Ends a session: stops its pushes and appends its `disconnect` (unless shutdown already did).
    public func closeSession(_ session: PushSession) async {
        let wasOpen = withLock { () -> Bool in
            guard hub.contains(session) else { return false }
            hub.remove(session)
            return true
        }
        openSockets.record(withLock { hub.sessionCount })
        guard wasOpen else { return }
        do {
            try await append(own: [PresenceEvent(kind: .disconnect, user: session.user, conn: session.conn, gateway: node, timestamp: Self.now())])
        } catch {
            logger.error("could not append the disconnect of \(session.user)/\(session.conn): \(error)")
        }
    }

    /// Opens `conversation` for `session`: from now on, every change of another member's shown
    /// presence, and every new message, is pushed. Queues
    /// `{"type":"opened","conversation":..,"presence":{..},"presence_cursor":N,"last_seq":S}` read under
    /// the same lock the pushes are made under, so the presence pushes that follow carry offsets ≥ N,
    /// none missing, and every message after seq S is pushed (one at S or below may come too).
    public func watch(_ session: PushSession, conversation: String, members: [String]) {
        withLock {
            hub.watch(session, conversation: conversation, members: members)
            var out: [UInt8] = Array("{\"type\":\"opened\",\"conversation\":".utf8)
            EventJSON.appendString(conversation, to: &out)
            out.append(contentsOf: ",\"presence\":".utf8)
            PresenceHTTPServer.appendPresence(of: members, except: session.user, projection, to: &out)
            out.append(contentsOf: ",\"presence_cursor\":\(projection.nextOffset),\"last_seq\":\(conversations.lastSeq(of: conversation))}".utf8)
            hub.reply(session, String(decoding: out, as: UTF8.self))
        }
    }

    /// Pushes a new message to the sessions that have its conversation open:
    /// `{"type":"message","conversation":..,"seq":..,"sender":..,"content":..,"ts":..}`.
    private func pushMessage(_ message: ConversationStore.Message, in conversation: String) {
        var out: [UInt8] = Array("{\"type\":\"message\",\"conversation\":".utf8)
        EventJSON.appendString(conversation, to: &out)
        out.append(44)
        out.append(contentsOf: message.json.dropFirst())
        let frame = String(decoding: out, as: UTF8.self)
        let sent = withLock { hub.push(frame, toOpenersOf: conversation) }
        if sent > 0 { pushesSent.increment(by: sent) }
    }

    /// Closes `conversation` for `session`; queues `{"type":"closed","conversation":..}`.
    public func unwatch(_ session: PushSession, conversation: String) {
        withLock {
            hub.unwatch(session, conversation: conversation)
            var out: [UInt8] = Array("{\"type\":\"closed\",\"conversation\":".utf8)
            EventJSON.appendString(conversation, to: &out)
            out.append(125)
            hub.reply(session, String(decoding: out, as: UTF8.self))
        }
    }

    /// Queues a frame for `session` behind the pushes already queued.
    public func reply(_ session: PushSession, _ frame: String) {
        withLock { hub.reply(session, frame) }
    }

    // MARK: The node's own liveness

    /// Ends, with a `gateway_down` at this node's last logged time, the connections a previous run of
    /// this node left open (it was killed, or the machine died): nobody stays online after a kill -9.
    public func endPreviousRun() async throws {
        guard let (event, open) = read({ LeasePolicy(node: node, lease: 0).restart(projection: $0) }) else { return }
        let ack = try await append(own: [event])
        logger.notice("ended \(open) connection\(open == 1 ? "" : "s") left open by this node's previous run: gateway_down at \(Timestamp.format(event.timestamp)), offset \(ack.offsets.lowerBound)")
    }

    /// Until cancelled: every `interval`, what the lease rules say (`LeasePolicy.tick`): this node's
    /// heartbeat, and a `gateway_down` (at its last heartbeat) for every other gateway whose heartbeats
    /// stopped more than `lease` ago by the log's clock.
    public func keepAlive(interval: Duration, lease: Int64) async {
        let policy = LeasePolicy(node: node, lease: lease)
        while !Task.isCancelled {
            do { try await Task.sleep(for: interval) } catch { return }
            do {
                let now = Self.now()
                let (heartbeat, downs) = read { policy.tick(now: now, projection: $0) }
                try await append(own: [heartbeat])
                if !downs.isEmpty {
                    try await append(own: downs)
                    for down in downs {
                        logger.notice("lease expired: gateway \(down.gateway) silent since \(Timestamp.format(down.timestamp)); appended gateway_down")
                    }
                }
            } catch {
                logger.error("keep-alive: \(error)")
            }
        }
    }

    static func now() -> Int64 {
        Int64((Date().timeIntervalSince1970 * 1000).rounded(.down))
    }

    private func withLock<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }

    /// Ends the sessions still open with their disconnects, flushes and closes the logs cleanly, and
    /// writes a checkpoint.
    public func shutdown() async throws {
        let left = withLock { hub.removeAll() }
        if !left.isEmpty {
            let now = Self.now()
            do {
                try await append(own: left.map { PresenceEvent(kind: .disconnect, user: $0.user, conn: $0.conn, gateway: node, timestamp: now) })
                logger.notice("ended \(left.count) open WebSocket session\(left.count == 1 ? "" : "s") with disconnects")
            } catch {
                logger.error("could not append the disconnects of \(left.count) open sessions: \(error)")
            }
        }
        try conversations.close()
        try writer.close()
        let written = try read { try Checkpoint.write($0, to: Checkpoint.directory(data: data)) }
        let next = read { $0.nextOffset }
        logger.notice("checkpoint \(written.path) \(next == 0 ? "(the log is empty)" : "through offset \(next - 1)")")
        withExtendedLifetime(directory) {}
    }
}
