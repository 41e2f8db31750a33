import Chat
import Cluster
import Foundation
import Presence
import SegmentLog

/// Where a node's local log stands in a cluster stream: the last message materialized and the local
/// log's end after it. Kept in `DATA/cluster-position` for the presence log and
/// `DATA/cluster-position-chat` for the messages log ("<sequence> <end offset>\n"), written now and
/// then: a local log is a cache of its stream, so a position that does not match the log at start (a
/// crash between the two) makes the node rebuild that log from the stream.
public struct ClusterPosition: Sendable, Equatable {
    public var sequence: UInt64
    public var endOffset: Int64

    static let presenceFile = "cluster-position"
    static let chatFile = "cluster-position-chat"

    static func read(data: String, _ file: String) -> ClusterPosition? {
        guard let text = try? DataDirectory.readSetting(data: data, file) else { return nil }
        let parts = text.split(separator: " ")
        guard parts.count == 2, let sequence = UInt64(parts[0]), let endOffset = Int64(parts[1]) else { return nil }
        return ClusterPosition(sequence: sequence, endOffset: endOffset)
    }
}

/// Cluster mode (`presence serve --cluster`): every write of the node is published to one of the
/// cluster's JetStream streams (`ReplicatedLog`): presence events to PRESENCE, conversations and
/// messages to CHAT. Every node materializes both whole streams, in stream order, into its local logs
/// through the same commits as a single node (so the same record has the same offset everywhere); a
/// request is answered once its own node has applied it.
extension PresenceNode {
    /// The stream every node of a cluster writes presence events to.
    public static let clusterStream = "PRESENCE"
    public static let clusterSubject = "presence.events"
    /// The stream of the messages log's records (conversations created, messages posted).
    public static let chatStream = "CHAT"
    public static let chatSubject = "chat.records"

    /// Before the local log `name` is opened in cluster mode: removes it (and `alsoRemove`) when it does not
    /// match its noted position in the stream, so that it is rebuilt from the stream; returns the
    /// position to go on from.
    static func checkLocalLog(_ name: String, in directory: DataDirectory, data: String, positionFile: String,
                              configuration: LogConfiguration, alsoRemove: [String] = [], report: (String) -> Void) throws -> ClusterPosition {
        let position = ClusterPosition.read(data: data, positionFile)
        let log = try directory.openLog(name, configuration: configuration, report: report)
        let endOffset = log.endOffset
        try log.close()
        if localLogMatches(position, endOffset: endOffset), let position { return position }
        if endOffset == 0 && position == nil { return ClusterPosition(sequence: 0, endOffset: 0) }
        report("cluster: the local log \(name) (end offset \(endOffset)) does not match its position in the stream (\(position.map { "\($0.sequence)/\($0.endOffset)" } ?? "none")): rebuilding it from the stream")
        try FileSystem.removeTree(try directory.logPath(name))
        for path in alsoRemove { try FileSystem.removeTree(path) }
        try FileSystem.remove(data + "/" + positionFile)
        return ClusterPosition(sequence: 0, endOffset: 0)
    }

    /// Whether a local log of `endOffset` records can go on from `position` (else it is rebuilt).
    static func localLogMatches(_ position: ClusterPosition?, endOffset: Int64) -> Bool {
        guard let position else { return endOffset == 0 }
        return position.endOffset == endOffset
    }

    /// Connects to the cluster, starts materializing both streams after the local logs' positions, and
    /// returns once this node has caught up with them (it serves only then).
    public func joinCluster(servers: [String], replicas: Int) async throws {
        let presence = ReplicatedLog<Result<EventsAck, LogError>>(
            configuration: .init(servers: servers, stream: Self.clusterStream, subject: Self.clusterSubject, replicas: replicas, node: node),
            logger: logger)
        let chat = ReplicatedLog<Result<[ConversationStore.Applied?], LogError>>(
            configuration: .init(servers: servers, stream: Self.chatStream, subject: Self.chatSubject, replicas: replicas, node: node),
            logger: logger)
        try await presence.connect()
        try await chat.connect()
        let (presenceStart, chatStart) = withLock { () -> (UInt64, UInt64) in
            replicated = presence
            replicatedChat = chat
            return (clusterPosition.sequence + 1, chatPosition.sequence + 1)
        }
        conversations.replicate = { records in try await chat.append(records).get() }
        logger.notice("cluster: materializing stream \(Self.clusterStream) from sequence \(presenceStart) (local log at offset \(nextOffset)), \(Self.chatStream) from \(chatStart)")
        pauseJournal()
        defer { resumeJournal() }
        let began = ContinuousClock.now, offsetBefore = nextOffset
        presence.start(from: presenceStart) { [unowned self] records, sequence, _ in await materialize(records, sequence: sequence) }
        chat.start(from: chatStart) { [unowned self] records, sequence, _ in await materializeChat(records, sequence: sequence) }
        await presence.waitUntilCaughtUp()
        await chat.waitUntilCaughtUp()
        let seconds = Double((ContinuousClock.now - began).components.attoseconds) / 1e18 + Double((ContinuousClock.now - began).components.seconds)
        let records = nextOffset - offsetBefore
        logger.notice("cluster: caught up at sequence \(presence.sequence) of \(Self.clusterStream) (local log at offset \(nextOffset)) and \(chat.sequence) of \(Self.chatStream): \(records) records in \(String(format: "%.2f", seconds)) s\(records > 0 && seconds > 0 ? String(format: " (%.0f a second)", Double(records) / seconds) : "")")
    }

    /// One message of the presence stream, on the materializer's task: its repeats decided against the
    /// ids the local log holds, the rest committed locally (the horizon decided there), the position
    /// noted. Every node decides alike, since every node materializes the same messages in the same order.
    func materialize(_ records: RecordBuffer, sequence: UInt64) async -> Result<EventsAck, LogError> {
        let outcome: Result<EventsAck, LogError>
        do {
            outcome = .success(try await commitDeduplicated(records, Self.identities(of: records)))
        } catch let conflict as EventIDConflict {
            outcome = .failure(LogError(.refused, conflict.reason, recordIndex: conflict.record))
        } catch let error as LogError {
            outcome = .failure(error)
        } catch {
            outcome = .failure(LogError(.io, "\(error)"))
        }
        notePosition(ClusterPosition(sequence: sequence, endOffset: nextOffset))
        return outcome
    }

    /// One message of the chat stream: committed to the local messages log and applied (a message's
    /// repeat of a client id decided there, alike on every node).
    func materializeChat(_ records: RecordBuffer, sequence: UInt64) async -> Result<[ConversationStore.Applied?], LogError> {
        let outcome: Result<[ConversationStore.Applied?], LogError>
        do {
            outcome = .success(try await conversations.commit(records))
        } catch let error as LogError {
            outcome = .failure(error)
        } catch {
            outcome = .failure(LogError(.io, "\(error)"))
        }
        let position = ClusterPosition(sequence: sequence, endOffset: conversations.writer.endOffset)
        let due = withLock { () -> Bool in
            chatPosition = position
            return Self.due(&chatPositionWrittenAt)
        }
        if due { writePosition(position, ClusterPosition.chatFile) }
        return outcome
    }

    /// Notes the presence log's position, writing it to disk at most every 200 ms (and at shutdown).
    func notePosition(_ position: ClusterPosition) {
        let due = withLock { () -> Bool in
            clusterPosition = position
            return Self.due(&positionWrittenAt)
        }
        if due { writePosition(position, ClusterPosition.presenceFile) }
    }

    /// Whether 200 ms have passed since `writtenAt` (then set to now).
    private static func due(_ writtenAt: inout UInt64) -> Bool {
        let now = DispatchTime.now().uptimeNanoseconds
        guard now >= writtenAt + 200_000_000 else { return false }
        writtenAt = now
        return true
    }

    func writePosition(_ position: ClusterPosition, _ file: String) {
        do {
            try directory.writeSetting(file, "\(position.sequence) \(position.endOffset)")
        } catch {
            logger.error("cluster: could not write the position \(position.sequence)/\(position.endOffset) to \(file): \(error)")
        }
    }

    /// Stops materializing (nothing is applied after the logs close) and closes the cluster connections.
    func leaveCluster() async {
        await replicated?.close()
        await replicatedChat?.close()
    }

    /// Writes both positions (at shutdown, after the local logs are closed).
    func writePositions() {
        guard replicated != nil else { return }
        writePosition(withLock { clusterPosition }, ClusterPosition.presenceFile)
        writePosition(withLock { chatPosition }, ClusterPosition.chatFile)
    }

    /// Health in cluster mode: the stream sequence applied and whether the node has caught up.
    public var clusterStatus: (sequence: UInt64, caughtUp: Bool)? {
        replicated.map { ($0.sequence, $0.isCaughtUp) }
    }
}
