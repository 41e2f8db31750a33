import Chat
import Cluster
import Foundation
import Logging
import Metrics
import Presence
import Projector
import SegmentLog
import Synchronization

/// A presence node: what `presence serve` runs. It wires the presence log's writer, the projection
/// folded from it, the chat store, the WebSocket sessions' pushes and the node's leases; the rules it
/// follows live in the domain modules (`ConnectionRules`, `LeasePolicy`, `ShownPresence`, `Access`,
/// `ChatRules`, `EventIDIndex`) and it only wires them.
///
/// Its ordering invariants, each checked where it is kept:
/// 1. **Acknowledged means applied, in log order.** Appends go through the `LogWriter` (group commit,
///    fsync before the acknowledgement); the commit thread applies each committed request to the
///    projection, in log order (asserted: the projection's next offset is the commit's first), under
///    `lock`, before the caller is answered, so a reader that sees an acknowledgement sees its effect.
/// 2. **Written means applied.** The writer's admission check (`LateArrivalAdmission`) refuses, on the
///    commit thread and in log order, exactly what the fold would skip (asserted after each apply).
/// 3. **Pushes follow the log.** The watched users' shown presence is read before and after each apply
///    under the same lock, and the changes are queued (`PushFeed`) in log order after the fsync; the
///    fan-out (`PushHub`, under `hubLock`, off the commit thread) turns them into frames in that order.
///    An open takes `hubLock`, then `lock`: it takes the changes still queued, reads its `opened` frame's
///    cursor and registers its watch from that cursor, and sends the queued changes before the `opened`
///    frame. So a session gets every shown change before the cursor of the members it already watched
///    ahead of the frame (those of members it starts watching are in the frame, not pushed), and every
///    change after the cursor behind it, once. `hubLock` is never taken while `lock` is held.
/// 4. **Retries are decided one after another.** Requests carrying one event id (or a pair's
///    conversation, or a message's client id) hold it from their check to their commit (`InFlightClaims`).
public final class PresenceNode: @unchecked Sendable {
    // @unchecked: `projection` and `feed` are touched only under `lock`, `hub` only under `hubLock`
    // (taken first when both are); `writer` is itself thread-safe;
    // `publishedNextOffset` is atomic. (Internal rather than private for the extensions in
    // `PresenceNode+Privacy.swift`, which keep to the same rule.)
    let lock = NSLock()
    let projection: PresenceProjection
    /// The projection's next offset, published after each apply: the snapshot's hot path reads it
    /// without taking `lock`.
    private let publishedNextOffset = Atomic<Int64>(0)
    let writer: LogWriter
    let data: String
    /// Conversations and messages, in their own log.
    public let conversations: ConversationStore
    /// Users' privacy settings, in their own log.
    public let privacy: PrivacyStore
    /// Who may see what (`Access`, with the settings in force): asked by every route, the fast path,
    /// WebSocket opens and pushes.
    public var access: Access { Access(chat: conversations, privacy: privacy.current) }

    /// This node's gateway name: its sockets' connects and disconnects and its heartbeats carry it.
    public let node: String
    /// The late-arrival horizon the log is written with (ms).
    public let horizon: Int64
    /// Where the node says what it did (recovery, checkpoints, leases) and what went wrong.
    let logger: Logger

    /// Frames that may wait for a WebSocket client before it is cut off (close 4008).
    let pushQueueLimit: Int

    /// Opens the data directory (taking its writer lock), loads the newest checkpoint and replays the
    /// log after it, then starts the writer. `horizon`: the one asked for; nil takes the data
    /// directory's stored horizon (else the default). `logger` receives recovery and checkpoint notes.
    ///
    /// With `clusterMode`, the local log is a cache of the cluster's stream (`joinCluster` follows): it
    /// is written without fsync (the stream holds the durability), and when its end matches no position
    /// noted in `DATA/cluster-*.positions` (`StreamPositions`) it is removed and rebuilt from the stream.
    public init(data: String, configuration: LogConfiguration, horizon: Int64?, idWindow: Int64? = nil, node: String = "presence-node",
                pushQueueLimit: Int = PushSession.defaultQueueLimit, resumeWindow: Int = PresenceNode.defaultResumeWindow,
                chat: ConversationStore.Options = .init(), clusterMode: Bool = false, logger: Logger) throws {
        self.data = data
        self.node = node
        self.pushQueueLimit = pushQueueLimit
        self.logger = logger
        let report: (String) -> Void = { logger.notice("\($0)") }
        let directory = try DataDirectory(path: data)
        self.directory = directory
        let horizon = try StoredHorizon.forWriting(directory, requested: horizon)
        self.horizon = horizon
        var configuration = configuration
        if clusterMode {
            configuration.durability = .interval(milliseconds: 1_000)
            // One materializer appends, one stream message at a time, each already a batch: a window
            // waiting for more appends would only add its length to every message.
            configuration.commitWindowMicroseconds = 0
        }
        if clusterMode {
            clusterPosition = try Self.checkLocalLog(presenceLogName, in: directory, data: data, positionFile: ClusterPosition.presenceFile,
                                                     configuration: configuration, alsoRemove: [Checkpoint.directory(data: data)], report: report)
            privacyPosition = try Self.checkLocalLog(PrivacyStore.logName, in: directory, data: data, positionFile: ClusterPosition.privacyFile,
                                                     configuration: configuration, report: report)
            chatPosition = try Self.checkLocalLog(ConversationStore.logName, in: directory, data: data, positionFile: ClusterPosition.chatFile,
                                                  configuration: configuration, report: report)
        }
        let log = try directory.openLog(presenceLogName, configuration: configuration, report: report)
        let restored = try Replay.restore(data: data, logDirectory: log.directory, horizon: horizon, logEndOffset: log.endOffset)
        for skipped in restored.checkpoint.skipped { report("checkpoint skipped: \(skipped)") }
        if let used = restored.checkpoint.used { report("loaded \(used)") }
        let projection = restored.projection, summary = restored.summary
        report(projection.nextOffset == 0 ? "the log is empty"
               : "replayed \(summary.events) events after the checkpoint; state through offset \(projection.nextOffset - 1)")
        self.projection = projection
        let watched = WatchedUsers()
        hub = PushHub(watched: watched)
        feed = PushFeed(journal: ShownChangeJournal(capacity: resumeWindow, completeFrom: projection.nextOffset), watched: watched)
        publishedNextOffset.store(projection.nextOffset, ordering: .releasing)
        eventIDs = try EventIDIndex.rebuild(logDirectory: log.directory, window: idWindow ?? horizon, newest: log.maxTimestamp)
        // The horizon is decided on the commit thread against what the log holds (`LateArrivalAdmission`):
        // what the writer acknowledges, the projection applies.
        var lateArrivals = LateArrivalGuard(horizon: horizon, newest: projection.maxTimestamp == Int64.min ? nil : projection.maxTimestamp)
        lateArrivals.refuser = .server
        self.writer = LogWriter(log: log, admission: LateArrivalAdmission(lateArrivals))
        self.conversations = try ConversationStore(directory: directory, configuration: configuration, options: chat, report: report)
        self.privacy = try PrivacyStore(directory: directory, configuration: configuration, report: report)
        conversations.messageObserver = { [unowned self] conversation, message in pushMessage(message, in: conversation) }
        privacy.applyHook = { [unowned self] user, install in applyPrivacyChange(of: user, install) }
    }

    let directory: DataDirectory
    /// Held by a retention pass and by an erasure while it changes segments: one at a time.
    let maintenance = NSLock()
    /// Whether an erasure is running (`forget`): a second is refused, not queued.
    let erasing = Atomic<Bool>(false)

    /// The log offset the projection has applied up to (its next offset), without taking the lock.
    public var nextOffset: Int64 { publishedNextOffset.load(ordering: .acquiring) }

    /// Reads the projection under the lock.
    public func read<T>(_ body: (PresenceProjection) throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body(projection)
    }

    private let eventsAppended = Counter(label: "presence_events_appended_total")
    private let commitLatency = Timer(label: "presence_commit_seconds")
    /// How long each commit holds `lock` on the commit thread (the apply, and reading the watched users'
    /// changes): what snapshots, opens and the next commit wait behind.
    private let applyLatency = Timer(label: "presence_apply_seconds")

    /// Appends `records` durably, applies them to the projection, pushes the changes watchers see, and
    /// returns their offsets: through the cluster's stream in cluster mode, else to the local log.
    public func append(_ records: RecordBuffer) async throws -> AppendResult {
        guard let replicated else { return try await commit(records) }
        let ack = try await replicated.append(records).get()
        return AppendResult(offsets: (ack.offsets.min() ?? 0)...(ack.offsets.max() ?? 0), durableEndOffset: nextOffset)
    }

    /// Appends `records` to the local log (group commit; fsync under `Durability.always`), then applies
    /// them and pushes, on the commit thread, in log order (invariant 1). `encoded`: the records already
    /// encoded as batches (cluster mode), written as they are.
    func commit(_ records: RecordBuffer, encoded: EncodedBatches? = nil) async throws -> AppendResult {
        let started = DispatchTime.now()
        defer { commitLatency.recordInterval(since: started) }
        let result: Result<AppendResult, LogError> = await withCheckedContinuation { continuation in
            writer.append(records, encoded: encoded) { [self] result in
                applyCommitted(records, result)
                continuation.resume(returning: result)
            }
        }
        return try result.get()
    }

    /// Commits several requests together (each admitted, refused and answered on its own: a cluster
    /// node catching up), applies each one written as `commit` does, and returns what became of each.
    func commit(group: [(RecordBuffer, EncodedBatches)]) async -> [Result<AppendResult, LogError>] {
        let results = GroupResults(count: group.count)
        return await withCheckedContinuation { continuation in
            writer.append(group: group.map { (records: $0.0, encoded: $0.1) }) { [self] index, result in
                applyCommitted(group[index].0, result)
                if let all = results.set(index, result) { continuation.resume(returning: all) }
            }
        }
    }

    /// On the commit thread, once `records` are written (or failed): applies them to the projection,
    /// notes their event ids, and queues the changes watchers see (under `lock`).
    private func applyCommitted(_ records: RecordBuffer, _ result: Result<AppendResult, LogError>) {
        guard case .success(let ack) = result else { return }
        eventsAppended.increment(by: records.count)
        lock.lock()
        let locked = DispatchTime.now()
        var drain = PushFeed.Drain.none
        records.withRecordViews(firstOffset: ack.offsets.lowerBound) { views in
            assert(projection.nextOffset == ack.offsets.lowerBound, "commits are applied in log order")
            let watch = feed.isWatching ? feed.beforeCommit(views, in: projection) : nil
            let refusedBefore = projection.refusedEvents
            do { try projection.apply(batch: views) } catch {
                // The records were validated before the append; a failure here is a bug, not input.
                assertionFailure("a committed record did not apply: \(error)")
            }
            // The writer's admission check refuses what the fold would: none is skipped here.
            assert(projection.refusedEvents == refusedBefore, "a committed event was refused by the projection")
            eventIDs.record(views: views)
            if let watch, !watch.users.isEmpty {
                drain = feed.afterCommit(watch, from: projection, privacy: privacy.current)
            }
        }
        publishedNextOffset.store(projection.nextOffset, ordering: .releasing)
        lock.unlock()
        applyLatency.recordInterval(since: locked)
        switch drain {
        case .none: break
        case .later: pushQueue.async { [self] in fanOutQueued(scheduled: true) }
        case .now: fanOutQueued(scheduled: false)
        }
    }

    /// The event ids written within the window (`EventIDIndex`), kept under `lock` on the commit thread.
    var eventIDs: EventIDIndex
    /// The event ids of requests between their check and their commit.
    let idClaims = InFlightClaims<EventIDIndex.Key>()
    /// The cluster's replicated log, in cluster mode (`PresenceNode+Cluster`).
    var replicated: ReplicatedLog<Result<EventsAck, LogError>>?
    /// Where the local log stands in the cluster's stream (cluster mode), and when it was last written.
    var clusterPosition = ClusterPosition(sequence: 0, endOffset: 0)
    /// The same for the chat stream and the messages log.
    var replicatedChat: ReplicatedLog<Result<[ConversationStore.Applied?], LogError>>?
    var chatPosition = ClusterPosition(sequence: 0, endOffset: 0)
    var replicatedPrivacy: ReplicatedLog<Result<[PrivacySettings?], LogError>>?
    var privacyPosition = ClusterPosition(sequence: 0, endOffset: 0)

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

    // MARK: WebSocket sessions (`PresenceNode+Sessions.swift`)

    /// Who watches whom, and the fan-out: touched only under `hubLock`.
    var hub: PushHub
    /// Taken before `lock` when both are needed; never while `lock` is held.
    let hubLock = NSLock()
    /// The commit thread's side of pushes: touched only under `lock`.
    var feed: PushFeed
    /// Where queued changes are fanned out, one drain after another.
    let pushQueue = DispatchQueue(label: "presence.push-fan-out")
    /// Shown changes kept for clients that resume (`presence serve --resume-window`): about 50 bytes each.
    public static let defaultResumeWindow = 262_144
    let pushesSent = Counter(label: "presence_pushes_sent_total")
    /// How long each fan-out of queued commits holds `hubLock`.
    let fanOutLatency = Timer(label: "presence_fan_out_seconds")
    let openSockets = Gauge(label: "presence_websockets_open")

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

    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }

    /// Ends the sessions still open with their disconnects, flushes and closes the logs cleanly, and
    /// writes a checkpoint.
    public func shutdown() async throws {
        // The changes still queued for the fan-out go out first: they were acknowledged before the stop.
        let left = withHub { () -> [PushSession] in
            fanOut(withLock { feed.takePending() })
            return hub.removeAll()
        }
        if !left.isEmpty {
            let now = Self.now()
            do {
                try await append(own: left.map { PresenceEvent(kind: .disconnect, user: $0.user, conn: $0.conn, gateway: node, timestamp: now) })
                logger.notice("ended \(left.count) open WebSocket session\(left.count == 1 ? "" : "s") with disconnects")
            } catch {
                logger.error("could not append the disconnects of \(left.count) open sessions: \(error)")
            }
        }
        // In cluster mode the materializer stops first: nothing is applied after the log is closed.
        await leaveCluster()
        try conversations.close()
        try privacy.writer.close()
        try writer.close()
        let written = try read { try Checkpoint.write($0, to: Checkpoint.directory(data: data)) }
        let next = read { $0.nextOffset }
        logger.notice("checkpoint \(written.path) \(next == 0 ? "(the log is empty)" : "through offset \(next - 1)")")
        withExtendedLifetime(directory) {}
    }
}

/// The results of a group of requests, filled in as the commit thread answers each.
private final class GroupResults: @unchecked Sendable {
    // @unchecked: `results` and `left` are touched only under `lock`.
    private let lock = NSLock()
    private var results: [Result<AppendResult, LogError>?]
    private var left: Int

    init(count: Int) {
        results = Array(repeating: nil, count: count)
        left = count
    }

    /// Notes request `index`'s result; every result once the last is in.
    func set(_ index: Int, _ result: Result<AppendResult, LogError>) -> [Result<AppendResult, LogError>]? {
        lock.withLock {
            results[index] = result
            left -= 1
            return left == 0 ? results.compactMap { $0 } : nil
        }
    }
}
