import Erasure
import Foundation
import Presence
import Projector
import SegmentLog

/// `POST /v1/admin/forget`: `presence forget` while the node serves. The same steps (`Erasure.run`),
/// with the logs held still instead of closed:
///
/// 1. the user's settings changes are held off (`PrivacyStore.holdingChanges`: each is made from the
///    settings in force, so one read before the erasure must not be written after it); the privacy
///    writer, then the presence writer, pause between two commits (`LogWriter.pause()`):
///    what was acknowledged before is applied, what comes meanwhile waits; each log's active segment is
///    sealed, so the user's records all lie in sealed segments (the writer goes on in a fresh one);
/// 2. `Erasure.run` rewrites those segments, the retention bases and the snapshots, and a projection
///    (and, completing an earlier request, an event-id index) is restored from the rewritten log (all
///    one at a time with a retention pass: `maintenance`);
/// 3. under `hubLock` and the node's lock, that projection replaces the live one, the ids of the user's
///    events and their settings are dropped, the resume journal starts again at the cut with the user
///    as never seen (a cursor from before the erasure gets a fresh view; one at the cut is told), the
///    user's watchers are pushed the user as never seen, and the user's own sessions end (close 4410,
///    no disconnect: their connects are gone);
/// 4. the writers resume; what waited is appended after the erasure, as new records.
///
/// A failure in step 2 leaves each segment old or new and the erasure unfinished (as a crash does):
/// the node keeps serving the state it had, and a second request finishes the erasure (also when only
/// the fold had failed: the files hold nothing of the user, the live state still does).
extension PresenceNode {
    /// What an online erasure did.
    public struct ErasureReport: Sendable {
        public let outcome: Erasure.Outcome
        /// The presence log's end offset when the writers paused: the user's records before it are gone.
        public let cut: Int64
        /// The user's WebSocket sessions ended.
        public let sessionsEnded: Int
    }

    /// Why an online erasure did not start.
    public struct ErasureRefusal: Error, CustomStringConvertible, Sendable {
        public enum Reason: Sendable { case busy, unsupported }
        public let reason: Reason
        public let description: String
    }

    /// Erases `user` from the node's data folder while it serves (see the extension's comment).
    public func forget(user: String) async throws -> ErasureReport {
        guard replicated == nil else {
            throw ErasureRefusal(reason: .unsupported, description: "this node is part of a cluster: the JetStream streams hold the same records and erasing them there is not built yet; nothing erased")
        }
        guard !erasing.exchange(true, ordering: .acquiringAndReleasing) else {
            throw ErasureRefusal(reason: .busy, description: "another erasure is running on this node; try again when it has finished")
        }
        defer { erasing.store(false, ordering: .releasing) }
        // A settings change of the user is made from the settings in force (`PrivacyStore.update`): one
        // read before the erasure and written after it would bring the erased settings back.
        return try await privacy.holdingChanges(of: user) { try await erase(user) }
    }

    /// `forget`'s steps, with the user's settings changes held off.
    private func erase(_ user: String) async throws -> ErasureReport {
        // 1. Both logs held still, their active segments sealed.
        let privacyLog = try await privacy.writer.pause()
        defer { privacyLog.resume() }
        let presenceLog = try await writer.pause()
        defer { presenceLog.resume() }
        let cut = presenceLog.log.endOffset
        assert(nextOffset == cut, "every acknowledged commit is applied before the writer pauses")

        // 2. The erasure, and the state and event-id index folded from what it left, off the cooperative
        // pool. All under `maintenance`: a retention pass removing segments while the fold reads them
        // would fail the fold after the erasure completed on disk.
        let idWindow = withLock { eventIDs.window }
        // The live state still holds the user though the files do not: an earlier request erased the files
        // and then failed (its fold); this one takes the state from the files.
        let stale = withLock { projection.state(of: user) != nil } || privacy.current.settings[user] != nil
        let (outcome, folded, ids) = try await Self.blocking { [self] () throws -> (Erasure.Outcome, HandedOver<PresenceProjection>, EventIDIndex?) in
            try presenceLog.log.sealActiveSegment()
            try privacyLog.log.sealActiveSegment()
            return try maintenance.withLock {
                let outcome: Erasure.Outcome
                do {
                    outcome = try Erasure.run(directory, user: user, horizon: horizon, now: Self.now(), logsAreOpen: true) {
                        logger.notice("erasure: \($0)")
                    }
                } catch let refusal as Erasure.Refusal where refusal.unknownUser && stale {
                    outcome = Erasure.Outcome(resumed: true)
                }
                let restored = try Replay.restore(data: data, logDirectory: presenceLog.log.directory, horizon: horizon, logEndOffset: cut)
                // Completing an earlier request, whose erased offsets this run does not list: the ids as a
                // restart reads them from the rewritten log (the window's records read again). Else the
                // ids of the offsets this run erased are dropped (step 3).
                let ids = outcome.resumed ? try EventIDIndex.rebuild(logDirectory: presenceLog.log.directory, window: idWindow,
                                                                     newest: presenceLog.log.maxTimestamp) : nil
                return (outcome, HandedOver(value: restored.projection), ids)
            }
        }
        let restored = folded.value
        guard restored.nextOffset == cut else {
            throw LogError(.corrupt, "the state folded after the erasure ends at offset \(restored.nextOffset), the log at \(cut); restart the node")
        }

        // 3. The live state replaced, and the sessions told.
        let (sent, ended) = withHub { () -> (Int, Int) in
            let (queued, frames) = withLock { () -> ([ShownChanges], [(PushSession, String)]) in
                let queued = feed.takePending()
                let before = projection.state(of: user)
                let settings = privacy.current
                projection.replaceState(with: restored)
                privacy.forget(user)
                if let ids { eventIDs = ids } else { eventIDs.remove(offsets: Set(outcome.presenceOffsets)) }
                feed.restartJournal(afterErasing: user, at: cut)
                return (queued, hub.erasureFrames(of: user, before: before, privacy: settings, offset: cut))
            }
            fanOut(queued)
            let sent = hub.send(frames)
            return (sent, hub.endSessions(of: user, erasingBefore: cut))
        }
        if sent > 0 { pushesSent.increment(by: sent) }
        openSockets.record(openSessionCount)
        // The user's id is not logged: the log would keep what the erasure removed.
        logger.notice("erasure of a user complete: \(outcome.presenceRecords) presence and \(outcome.privacyRecords) privacy record(s) removed, \(outcome.segmentsRewritten) segment(s) rewritten, \(ended) session(s) ended, writes resumed after offset \(cut)")
        return ErasureReport(outcome: outcome, cut: cut, sessionsEnded: ended)
    }

    /// A value made on one thread and used only by another afterwards (the projection folded by
    /// `blocking` work, which keeps no reference to it).
    struct HandedOver<Value>: @unchecked Sendable {
        let value: Value
    }

    /// Runs blocking work (file rewrites, a fold) on a GCD thread, off the cooperative pool.
    static func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global(qos: .utility).async {
                continuation.resume(with: Result { try body() })
            }
        }
    }
}
