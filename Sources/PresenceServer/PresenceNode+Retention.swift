import Foundation
import Presence
import Projector

/// `serve --retention`: the node removes presence history older than the retention itself, with the
/// same pass as `presence retain` (`Retention.run`: whole sealed segments, after the base checkpoint
/// at their end). The writer only appends to the active segment, so sealed ones may go while it runs,
/// those ending before what the node has applied: an append in progress that rolled and then failed
/// for want of space makes the segment it started in active again. The projection is untouched (it is
/// past them).
extension PresenceNode {
    /// Until cancelled: a pass at once, then every `interval`, removing what is older than `retention` (ms) before now.
    public func retain(keeping retention: Int64, every interval: Duration) async {
        while !Task.isCancelled {
            let cut = Self.now() - retention
            let data = self.data, horizon = self.horizon, applied = withLock { nextOffset }
            do {
                // On a GCD thread: the pass waits for an erasure's `maintenance` lock and reads the log,
                // which would hold one of the cooperative pool's few threads.
                let pass = try await Self.blocking { [self] in
                    try maintenance.withLock {
                        try Retention.run(directory, logDirectory: try directory.logPath(presenceLogName), before: cut, horizon: horizon,
                                          appliedBelow: applied)
                    }
                }
                if let pass {
                    logger.notice("retention: removed \(pass.segments) segment\(pass.segments == 1 ? "" : "s") (\(pass.bytes) bytes) of \(data): the log is retained from offset \(pass.range.firstOffset), history before \(Timestamp.format(pass.range.cut)) is gone")
                }
            } catch {
                logger.error("retention: \(error)")
            }
            do { try await Task.sleep(for: interval) } catch { return }
        }
    }
}
