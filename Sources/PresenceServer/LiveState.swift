import Foundation
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

    /// Opens the data directory (taking its writer lock), loads the newest checkpoint and replays the
    /// log after it, then starts the writer. `report` receives recovery and checkpoint notes.
    public init(data: String, configuration: LogConfiguration, horizon: Int64, report: (String) -> Void) throws {
        self.data = data
        let directory = try DataDirectory(path: data)
        self.directory = directory
        let log = try directory.openLog(presenceLogName, configuration: configuration, report: report)
        var projection = PresenceProjection(horizon: horizon)
        if let (loaded, loadReport) = Checkpoint.loadNewest(from: Checkpoint.directory(data: data), logEndOffset: log.endOffset, horizon: horizon) {
            for skipped in loadReport.skipped { report("checkpoint skipped: \(skipped)") }
            if let used = loadReport.used {
                projection = loaded
                report("loaded \(used)")
            }
        }
        let summary = try Replay.run(logDirectory: log.directory, into: projection)
        report(projection.nextOffset == 0 ? "the log is empty"
               : "replayed \(summary.events) events after the checkpoint; state through offset \(projection.nextOffset - 1)")
        self.projection = projection
        self.writer = LogWriter(log: log)
        self.conversations = try ConversationStore(directory: directory, configuration: configuration, report: report)
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

    /// Appends `records` durably, applies them to the projection, and returns their offsets.
    public func append(_ records: RecordBuffer) async throws -> AppendResult {
        let started = DispatchTime.now()
        defer { commitLatency.recordInterval(since: started) }
        let result: Result<AppendResult, LogError> = await withCheckedContinuation { continuation in
            writer.append(records) { [self] result in
                if case .success(let ack) = result {
                    eventsAppended.increment(by: records.count)
                    lock.lock()
                    records.withRecordViews(firstOffset: ack.offsets.lowerBound) { views in
                        do { try projection.apply(batch: views) } catch {
                            // The records were validated before the append; a failure here is a bug, not input.
                            assertionFailure("a committed record did not apply: \(error)")
                        }
                    }
                    lock.unlock()
                }
                continuation.resume(returning: result)
            }
        }
        return try result.get()
    }

    /// Flushes and closes the log cleanly and writes a checkpoint.
    public func shutdown(report: (String) -> Void) throws {
        try conversations.writer.close()
        try writer.close()
        let written = try read { try Checkpoint.write($0, to: Checkpoint.directory(data: data)) }
        report("checkpoint \(written.path) through offset \(read { $0.nextOffset } - 1)")
        withExtendedLifetime(directory) {}
    }
}
