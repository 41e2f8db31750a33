import Cluster
import Foundation
import Presence
import SegmentLog

/// Where a node's local log stands in the cluster's stream: the last message materialized and the
/// local log's end after it. Kept in `DATA/cluster-position` ("<sequence> <end offset>\n"), written
/// now and then: the local log is a cache of the stream, so a position that does not match the log at
/// start (a crash between the two) makes the node rebuild its log from the stream.
public struct ClusterPosition: Sendable, Equatable {
    public var sequence: UInt64
    public var endOffset: Int64

    static let file = "cluster-position"

    static func read(data: String) -> ClusterPosition? {
        guard let text = try? DataDirectory.readSetting(data: data, file) else { return nil }
        let parts = text.split(separator: " ")
        guard parts.count == 2, let sequence = UInt64(parts[0]), let endOffset = Int64(parts[1]) else { return nil }
        return ClusterPosition(sequence: sequence, endOffset: endOffset)
    }
}

/// Cluster mode (`presence serve --cluster`): every write of the node is published to the cluster's
/// JetStream stream (`ReplicatedLog`), and every node materializes the whole stream, in stream order,
/// into its local log through the same commit as a single node (so the same event has the same offset
/// everywhere); a request is answered once its own node has applied it.
extension PresenceNode {
    /// The stream every node of a cluster writes presence events to.
    public static let clusterStream = "PRESENCE"
    public static let clusterSubject = "presence.events"

    /// Whether a local log of `endOffset` records can go on from `position` (else it is rebuilt).
    static func localLogMatches(_ position: ClusterPosition?, endOffset: Int64) -> Bool {
        guard let position else { return endOffset == 0 }
        return position.endOffset == endOffset
    }

    /// Connects to the cluster, starts materializing the stream after the local log's position, and
    /// returns once this node has caught up with it (it serves only then).
    public func joinCluster(_ configuration: ReplicatedLog<Result<EventsAck, LogError>>.Configuration) async throws {
        let log = ReplicatedLog<Result<EventsAck, LogError>>(configuration: configuration, logger: logger)
        try await log.connect()
        replicated = log
        let start = clusterPosition.sequence + 1
        logger.notice("cluster: materializing stream \(configuration.stream) from sequence \(start) (local log at offset \(nextOffset))")
        log.start(from: start) { [unowned self] records, sequence, _ in await materialize(records, sequence: sequence) }
        await log.waitUntilCaughtUp()
        logger.notice("cluster: caught up at sequence \(log.sequence); local log at offset \(nextOffset)")
    }

    /// One message of the stream, on the materializer's task: its repeats decided against the ids the
    /// local log holds, the rest committed locally (the horizon decided there), the position noted.
    /// Every node decides alike, since every node materializes the same messages in the same order.
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

    /// Notes the position, writing it to disk at most every 200 ms (and at shutdown).
    func notePosition(_ position: ClusterPosition) {
        let due = withLock { () -> Bool in
            clusterPosition = position
            let now = DispatchTime.now().uptimeNanoseconds
            guard now >= positionWrittenAt + 200_000_000 else { return false }
            positionWrittenAt = now
            return true
        }
        if due { writePosition(position) }
    }

    func writePosition(_ position: ClusterPosition) {
        do {
            try directory.writeSetting(ClusterPosition.file, "\(position.sequence) \(position.endOffset)")
        } catch {
            logger.error("cluster: could not write the position \(position.sequence)/\(position.endOffset): \(error)")
        }
    }

    /// Health in cluster mode: the stream sequence applied and whether the node has caught up.
    public var clusterStatus: (sequence: UInt64, caughtUp: Bool)? {
        replicated.map { ($0.sequence, $0.isCaughtUp) }
    }
}
