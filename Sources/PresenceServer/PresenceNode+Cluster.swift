import Chat
import Cluster
import Foundation
import Presence
import SegmentLog

/// Where a node's local log stands in a cluster stream: the last message materialized and the local
/// log's end after it. Noted after every message in `DATA/cluster-presence.positions` and
/// `DATA/cluster-chat.positions` and `DATA/cluster-privacy.positions` (`StreamPositions`); at start the local log's end is looked up there,
/// and a log whose end matches no entry is rebuilt from the stream (a local log is a cache of it).
public struct ClusterPosition: Sendable, Equatable {
    public var sequence: UInt64
    public var endOffset: Int64

    static let presenceFile = "cluster-presence.positions"
    static let chatFile = "cluster-chat.positions"
    static let privacyFile = "cluster-privacy.positions"
}

/// Cluster mode (`presence serve --cluster`): every write of the node is published to one of the
/// cluster's JetStream streams (`ReplicatedLog`): presence events to PRESENCE, conversations and
/// messages to CHAT, privacy settings changes to PRIVACY. Every node materializes the three whole streams, in stream order, into its local logs
/// through the same commits as a single node (so the same record has the same offset everywhere); a
/// request is answered once its own node has applied it.
extension PresenceNode {
    /// The stream every node of a cluster writes presence events to.
    public static let clusterStream = "PRESENCE"
    public static let clusterSubject = "presence.events"
    /// The stream of the messages log's records (conversations created, messages posted).
    public static let chatStream = "CHAT"
    public static let chatSubject = "chat.records"
    /// The stream of privacy settings updates (each node writes the settings after each to its privacy log).
    public static let privacyStream = "PRIVACY"
    public static let privacySubject = "privacy.updates"

    /// Before the local log `name` is opened in cluster mode: the position its end stands at in the
    /// stream; when no noted position matches, removes it (and `alsoRemove`) so that it is rebuilt.
    static func checkLocalLog(_ name: String, in directory: DataDirectory, data: String, positionFile: String,
                              configuration: LogConfiguration, alsoRemove: [String] = [], report: (String) -> Void) throws -> ClusterPosition {
        let log = try directory.openLog(name, configuration: configuration, report: report)
        let endOffset = log.endOffset
        try log.close()
        let path = data + "/" + positionFile
        if let sequence = try StreamPositions.sequence(at: endOffset, path: path) {
            return ClusterPosition(sequence: sequence, endOffset: endOffset)
        }
        report("cluster: the local log \(name) ends at offset \(endOffset), which no position noted in \(positionFile) matches: rebuilding it from the stream")
        try FileSystem.removeTree(try directory.logPath(name))
        for path in alsoRemove { try FileSystem.removeTree(path) }
        try FileSystem.remove(path)
        return ClusterPosition(sequence: 0, endOffset: 0)
    }

    /// Connects to the cluster, starts materializing the streams after the local logs' positions, and
    /// returns once this node has caught up with them (it serves only then).
    public func joinCluster(servers: [String], replicas: Int) async throws {
        let presence = ReplicatedLog<Result<EventsAck, LogError>>(
            configuration: .init(servers: servers, stream: Self.clusterStream, subject: Self.clusterSubject, replicas: replicas, node: node),
            logger: logger)
        let chat = ReplicatedLog<Result<[ConversationStore.Applied?], LogError>>(
            configuration: .init(servers: servers, stream: Self.chatStream, subject: Self.chatSubject, replicas: replicas, node: node),
            logger: logger)
        let privacyLog = ReplicatedLog<Result<[PrivacySettings?], LogError>>(
            configuration: .init(servers: servers, stream: Self.privacyStream, subject: Self.privacySubject, replicas: replicas, node: node),
            logger: logger)
        try await presence.connect()
        try await chat.connect()
        try await privacyLog.connect()
        let presencePositions = try StreamPositions(path: data + "/" + ClusterPosition.presenceFile)
        let chatPositions = try StreamPositions(path: data + "/" + ClusterPosition.chatFile)
        let privacyPositions = try StreamPositions(path: data + "/" + ClusterPosition.privacyFile)
        let (presenceStart, chatStart, privacyStart) = withLock { () -> (UInt64, UInt64, UInt64) in
            replicated = presence
            replicatedChat = chat
            replicatedPrivacy = privacyLog
            return (clusterPosition.sequence + 1, chatPosition.sequence + 1, privacyPosition.sequence + 1)
        }
        conversations.replicate = { records in try await chat.append(records).get() }
        privacy.replicate = { records in try await privacyLog.append(records).get() }
        logger.notice("cluster: materializing stream \(Self.clusterStream) from sequence \(presenceStart) (local log at offset \(nextOffset)), \(Self.chatStream) from \(chatStart), \(Self.privacyStream) from \(privacyStart)")
        pauseJournal()
        defer { resumeJournal() }
        let began = ContinuousClock.now, offsetBefore = nextOffset
        presence.start(from: presenceStart) { [unowned self] deliveries in
            await materialize(deliveries, positions: presencePositions)
        }
        chat.start(from: chatStart) { [unowned self] deliveries in
            await Self.oneByOne(deliveries) { await materializeChat($0.records, sequence: $0.sequence, positions: chatPositions) }
        }
        privacyLog.start(from: privacyStart) { [unowned self] deliveries in
            await Self.oneByOne(deliveries) { await materializePrivacy($0.records, sequence: $0.sequence, positions: privacyPositions) }
        }
        await presence.waitUntilCaughtUp()
        await chat.waitUntilCaughtUp()
        await privacyLog.waitUntilCaughtUp()
        let seconds = Double((ContinuousClock.now - began).components.attoseconds) / 1e18 + Double((ContinuousClock.now - began).components.seconds)
        let records = nextOffset - offsetBefore
        logger.notice("cluster: caught up at sequence \(presence.sequence) of \(Self.clusterStream) (local log at offset \(nextOffset)), \(chat.sequence) of \(Self.chatStream) and \(privacyLog.sequence) of \(Self.privacyStream): \(records) records in \(String(format: "%.2f", seconds)) s\(records > 0 && seconds > 0 ? String(format: " (%.0f a second)", Double(records) / seconds) : "")")
    }

    /// Applies `deliveries` one after the other, up to the first one `apply` could not apply.
    static func oneByOne<T>(_ deliveries: [ReplicatedLog<T>.Delivery], _ apply: (ReplicatedLog<T>.Delivery) async -> T?) async -> [T] {
        var outcomes: [T] = []
        for delivery in deliveries {
            guard let outcome = await apply(delivery) else { break }
            outcomes.append(outcome)
        }
        return outcomes
    }

    /// Messages of the presence stream, on the materializer's task, in order. A run of messages whose
    /// events carry no id (so no repeat to decide against the ones before) is committed together, each
    /// message still admitted and answered on its own (the late-arrival horizon refuses one message, not
    /// its neighbours, so every node decides alike however it grouped them); the rest one by one.
    func materialize(_ deliveries: [ReplicatedLog<Result<EventsAck, LogError>>.Delivery],
                     positions: StreamPositions) async -> [Result<EventsAck, LogError>] {
        var outcomes: [Result<EventsAck, LogError>] = []
        // Each message's event ids, read once: they decide both the runs and each message's repeats.
        let identities = deliveries.map { Self.identities(of: $0.records) }
        var index = 0
        while index < deliveries.count {
            var run: [(RecordBuffer, EncodedBatches)] = []
            while index + run.count < deliveries.count, let batches = deliveries[index + run.count].batches,
                  identities[index + run.count].isEmpty {
                run.append((deliveries[index + run.count].records, batches))
            }
            if run.count < 2 {
                let delivery = deliveries[index]
                guard let outcome = await materialize(delivery.records, identities: identities[index], batches: delivery.batches,
                                                      sequence: delivery.sequence, positions: positions) else {
                    return outcomes
                }
                outcomes.append(outcome)
                index += 1
                continue
            }
            var end = nextOffset
            for (delivery, result) in zip(deliveries[index...], await commit(group: run)) {
                let outcome: Result<EventsAck, LogError>
                switch result {
                case .success(let ack):
                    outcome = .success(EventsAck(offsets: Array(ack.offsets), repeats: []))
                    end = ack.offsets.upperBound + 1
                case .failure(let refusal) where refusal.code == .refused:
                    outcome = .failure(refusal)
                case .failure(let error):
                    logger.error("cluster: message \(delivery.sequence) of \(Self.clusterStream) was not applied here (\(error)); trying it again in a second")
                    return outcomes
                }
                let position = ClusterPosition(sequence: delivery.sequence, endOffset: end)
                withLock { clusterPosition = position }
                note(position, in: positions)
                outcomes.append(outcome)
            }
            index += run.count
        }
        return outcomes
    }

    /// One message of the presence stream, on the materializer's task: its repeats decided against the
    /// ids the local log holds, the rest committed locally (the horizon decided there), the position
    /// noted. Every node decides alike, since every node materializes the same messages in the same order.
    /// `identities`: the records' event ids (`identities(of:)`); `batches`: the records as the stream
    /// carried them, written as they are when none is a repeat.
    func materialize(_ records: RecordBuffer, identities: [(key: EventIDIndex.Key, fingerprint: UInt64)?], batches: EncodedBatches?,
                     sequence: UInt64, positions: StreamPositions) async -> Result<EventsAck, LogError>? {
        await materialize(sequence: sequence, stream: Self.clusterStream, positions: positions, endOffset: { nextOffset },
                          note: { position in withLock { clusterPosition = position } }) {
            do {
                return try await commitDeduplicated(records, identities, encoded: batches)
            } catch let conflict as EventIDConflict {
                throw LogError(.refused, conflict.reason, recordIndex: conflict.record)
            }
        }
    }

    /// One message of the chat stream: committed to the local messages log and applied (a message's
    /// repeat of a client id decided there, alike on every node).
    func materializeChat(_ records: RecordBuffer, sequence: UInt64, positions: StreamPositions) async -> Result<[ConversationStore.Applied?], LogError>? {
        await materialize(sequence: sequence, stream: Self.chatStream, positions: positions, endOffset: { conversations.writer.endOffset },
                          note: { position in withLock { chatPosition = position } }) {
            try await conversations.commit(records)
        }
    }

    /// One message of the privacy stream: each update applied to the settings in force, in stream order,
    /// and the settings after it committed to the local privacy log and installed (pushes follow).
    func materializePrivacy(_ records: RecordBuffer, sequence: UInt64, positions: StreamPositions) async -> Result<[PrivacySettings?], LogError>? {
        await materialize(sequence: sequence, stream: Self.privacyStream, positions: positions, endOffset: { privacy.writer.endOffset },
                          note: { position in withLock { privacyPosition = position } }) {
            try await privacy.commitUpdates(records)
        }
    }

    /// What every stream's materializer does with a message: `commit` it to the local log; a refusal
    /// (`LogError.refused`: decided alike on every node, as the late-arrival horizon is) is an outcome
    /// and passed on like a success, the position after it noted (`note` in memory, `positions` on
    /// disk). Any other failure: nil, `notApplied`.
    private func materialize<T>(sequence: UInt64, stream: String, positions: StreamPositions, endOffset: () -> Int64,
                                note notePosition: (ClusterPosition) -> Void,
                                commit: () async throws -> T) async -> Result<T, LogError>? {
        let outcome: Result<T, LogError>
        do {
            outcome = .success(try await commit())
        } catch let refusal as LogError where refusal.code == .refused {
            outcome = .failure(refusal)
        } catch {
            return notApplied(error, sequence: sequence, stream: stream)
        }
        let position = ClusterPosition(sequence: sequence, endOffset: endOffset())
        notePosition(position)
        note(position, in: positions)
        return outcome
    }

    /// A message this node's local log did not take (a full disk, a failed log): never passed over, or
    /// this node's logs would differ from the others' from there on. The materializer reads it again a
    /// second later (`ReplicatedLog.Materialize` returning nil); the caller, if it was this node's, waits.
    private func notApplied<T>(_ error: any Error, sequence: UInt64, stream: String) -> T? {
        logger.error("cluster: message \(sequence) of \(stream) was not applied here (\(error)); trying it again in a second")
        return nil
    }

    /// Notes a stream position after a message (on that stream's materializer task).
    private func note(_ position: ClusterPosition, in positions: StreamPositions) {
        do {
            try positions.note(sequence: position.sequence, endOffset: position.endOffset)
        } catch {
            logger.error("cluster: could not note the position \(position.sequence)/\(position.endOffset) in \(positions.path): \(error); the local log will be rebuilt at the next start")
        }
    }

    /// Stops materializing (nothing is applied after the logs close) and closes the cluster connections.
    func leaveCluster() async {
        await replicated?.close()
        await replicatedChat?.close()
        await replicatedPrivacy?.close()
    }

    /// Health in cluster mode: the stream sequence applied and whether the node has caught up.
    public var clusterStatus: (sequence: UInt64, caughtUp: Bool)? {
        replicated.map { ($0.sequence, $0.isCaughtUp) }
    }
}
