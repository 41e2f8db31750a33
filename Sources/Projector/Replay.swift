import Dispatch
import Presence
import SegmentLog

/// Rebuilds a projection from a log.
public enum Replay {
    /// What a replay did.
    public struct Summary: Sendable {
        /// Records read and applied.
        public var events = 0
        /// Records read but not applied because their event time is after `at`.
        public var skippedAfterTime = 0
        /// The offset after the last record read.
        public var endOffset: Int64 = 0
        /// Bytes at the end of the log that were not read (a write in progress, or torn by a crash).
        public var tornTail: LogReader.TornTail?
    }

    /// Events read before the connection table is sized for the whole replay.
    static let sampleEvents = 1 << 20

    /// Applies the records of the log in `logDirectory` to `projection`, from the projection's
    /// `nextOffset` on: those with an offset below `untilOffset` and, with `at`, only those whose event time
    /// is at or before it (rule 6). `progress` is called every million records with the count so far.
    ///
    /// With `readAhead` (the default) two threads share the work: a reader reads, checks (CRC,
    /// framing) and decodes each batch into a `PreparedBatch` (`ProjectionState.prepare`: the event
    /// values decoded, the bytes the fold needs copied, the hashes computed), and the calling thread
    /// applies them in log order, a few batches behind (`Handoff`). The fold stays on one thread;
    /// what it no longer does is the reading and decoding. Without, the calling thread does both.
    public static func run(logDirectory: String, into projection: PresenceProjection, untilOffset: Int64? = nil,
                           at time: Int64? = nil, readAhead: Bool = true, progress: @escaping (Int) -> Void = { _ in }) throws -> Summary {
        let reader = UnsafeSendable(try LogReader(directory: logDirectory))
        let limit = untilOffset ?? .max
        let firstOffset = projection.nextOffset
        var fold = Fold(projection: projection, limit: limit, progress: progress)
        if readAhead {
            let handoff = Handoff()
            DispatchQueue.global(qos: .userInitiated).async {
                defer { handoff.readerFinished() }
                readBatches(reader.value, from: firstOffset, limit: limit, at: time, logDirectory: logDirectory, outlivingBatch: true,
                            next: handoff.nextFree, publish: handoff.publish)
            }
            var more = true
            while more {
                more = fold.take(handoff.nextReady())
                handoff.release()  // every slot goes back, the last too: libdispatch traps on a semaphore freed below its start
            }
            handoff.waitForReader()
        } else {
            let slot = Handoff.Slot()
            readBatches(reader.value, from: firstOffset, limit: limit, at: time, logDirectory: logDirectory, outlivingBatch: false,
                        next: { slot.end = nil; return slot }, publish: { _ = fold.take(slot) })
        }
        if let failure = fold.failure { throw failure }
        return fold.summary
    }

    /// The applying side of `run`: takes prepared batches in order, then the slot that ends the read.
    private struct Fold {
        let projection: PresenceProjection
        let limit: Int64
        let progress: (Int) -> Void
        var summary = Summary()
        var failure: (any Error)?
        /// Records taken so far (before the time filter).
        var read = 0
        /// After the first million events, the connection table is sized for the connections the rest
        /// of the log will bring at the rate seen so far: no doubling (and placing every connection
        /// again) on the way. Over-estimating costs slots (8 bytes each, reported as connection
        /// memory). Shorter replays (a restart's tail) never look.
        let connectionsBefore: Int

        init(projection: PresenceProjection, limit: Int64, progress: @escaping (Int) -> Void) {
            self.projection = projection
            self.limit = limit
            self.progress = progress
            self.connectionsBefore = projection.connectionCount
        }

        /// Applies `slot`; false once it is the end of the read.
        mutating func take(_ slot: Handoff.Slot) -> Bool {
            if let end = slot.end {
                switch end {
                case .finished(let result):
                    summary.endOffset = min(result.endOffset, limit)
                    summary.tornTail = result.tornTail
                case .failed(let error):
                    failure = error
                }
                return false
            }
            projection.apply(prepared: slot.batch)
            summary.events += slot.records - slot.skipped
            summary.skippedAfterTime += slot.skipped
            let before = read
            read += slot.records
            if read >> 20 != before >> 20 { progress(read) }
            if let total = slot.projectedTotal {
                let seen = projection.connectionCount - connectionsBefore
                if seen > 0 && total > read {
                    projection.reserveConnections(connectionsBefore + Int(Double(seen) * Double(total) / Double(read) * 1.05))
                }
            }
            return true
        }
    }

    /// The reading side of `run`: every batch from `firstOffset` to `limit`, prepared into the slots
    /// `next` gives and handed on with `publish`, then a slot that ends the read (with the read's
    /// summary, or the error).
    /// `outlivingBatch`: whether the prepared batches must outlive the read's buffers (they do when another
    /// thread applies them; on this thread each is applied within `publish`).
    private static func readBatches(_ reader: LogReader, from firstOffset: Int64, limit: Int64, at time: Int64?,
                                    logDirectory: String, outlivingBatch: Bool, next: () -> Handoff.Slot, publish: () -> Void) {
        var produced = 0
        var sampled = false
        var kept: [RecordView] = []
        let cutoff = time ?? .max
        do {
            let result = try reader.forEachRecordBatch(from: .offset(firstOffset)) { batch, batchEnd in
                // Most batches are applied whole; the last one before a limit, or any with later events, is filtered.
                var records = batch
                var more = true
                if let last = batch.last, last.offset >= limit {
                    more = false
                    records = UnsafeBufferPointer(rebasing: batch[..<(batch.firstIndex { $0.offset >= limit } ?? batch.count)])
                }
                let slot = next()
                slot.records = records.count
                slot.skipped = 0
                slot.projectedTotal = nil
                do throws(PresenceProjection.ApplyError) {
                    if time == nil || records.allSatisfy({ $0.timestamp <= cutoff }) {
                        try ProjectionState.prepare(records, into: slot.batch, outlivingBatch: outlivingBatch)
                    } else {
                        kept.removeAll(keepingCapacity: true)
                        for record in records where record.timestamp <= cutoff { kept.append(record) }
                        slot.skipped = records.count - kept.count
                        try kept.withUnsafeBufferPointer { (kept) throws(PresenceProjection.ApplyError) in
                            try ProjectionState.prepare(kept, into: slot.batch, outlivingBatch: outlivingBatch)
                        }
                    }
                } catch {
                    slot.end = .failed(LogError(.corrupt, "\(logDirectory): \(error.description)"))
                    publish()
                    throw Stopped()
                }
                // The fold's next offset is the batch's end, not its last record's: an erasure may have
                // emptied a batch's end (or all of it), and those offsets are gaps the fold has passed.
                if slot.skipped == 0 { slot.batch.endOffset = min(batchEnd, limit) }
                if batchEnd >= limit { more = false }
                produced += records.count
                if !sampled && produced >= Self.sampleEvents {
                    sampled = true
                    slot.projectedTotal = min((try? reader.endOffsetFromHeaders()) ?? 0, limit) - firstOffset
                }
                publish()
                return more
            }
            let slot = next()
            slot.end = .finished(result)
            publish()
        } catch is Stopped {
            // The slot that stopped the read carries the error.
        } catch {
            let slot = next()
            slot.end = .failed(error)
            publish()
        }
    }

    /// Thrown inside the read to stop it once a slot carries the error.
    private struct Stopped: Error {}
}

/// Prepared batches on their way from the reading thread to the applying one: a ring of slots, each
/// owned by the reader from `nextFree` to `publish` and by the applier from `nextReady` to `release`.
/// The semaphores order those hand-overs, so a slot's fields need no lock.
private final class Handoff: @unchecked Sendable {
    // @unchecked: see above; `readIndex` belongs to the applier, `writeIndex` to the reader.
    final class Slot {
        let batch = PreparedBatch()
        /// Records the batch held before the time filter, and how many that filter dropped.
        var records = 0
        var skipped = 0
        /// Set in the slot where the reader passed `Replay.sampleEvents`: the records the whole replay will read.
        var projectedTotal: Int64?
        /// Set in the last slot: how the read ended.
        var end: End?
    }

    enum End {
        case finished(LogReader.ReadSummary)
        case failed(any Error)
    }

    private static let depth = 4
    private let slots = (0..<Handoff.depth).map { _ in Slot() }
    private let ready = DispatchSemaphore(value: 0)
    private let free = DispatchSemaphore(value: Handoff.depth)
    private let finished = DispatchSemaphore(value: 0)
    private var writeIndex = 0
    private var readIndex = 0

    /// Reader: waits for a free slot and returns it (cleared of any end).
    func nextFree() -> Slot {
        free.wait()
        let slot = slots[writeIndex % Self.depth]
        slot.end = nil
        return slot
    }

    /// Reader: hands the slot `nextFree` returned to the applier.
    func publish() {
        writeIndex += 1
        ready.signal()
    }

    /// Reader: no slot will follow.
    func readerFinished() { finished.signal() }

    /// Applier: waits for the next published slot, in order.
    func nextReady() -> Slot {
        ready.wait()
        return slots[readIndex % Self.depth]
    }

    /// Applier: gives the slot `nextReady` returned back to the reader.
    func release() {
        readIndex += 1
        free.signal()
    }

    /// Applier: waits until the reading thread has returned.
    func waitForReader() { finished.wait() }
}

extension Replay {
    /// What `restore` did: the checkpoint it started from (and the ones it skipped), then the replay.
    public struct Restored {
        public let projection: PresenceProjection
        public let checkpoint: Checkpoint.LoadReport
        public let summary: Summary
    }

    /// The one way to a current state: the newest checkpoint in `DATA/checkpoints` that fits (the log
    /// holds what it covers, the same horizon, nothing after `at`), then the log's records after it, up
    /// to `untilOffset` and, with `at`, only those at or before that time (rule 6). Without
    /// `fromCheckpoint`, the whole log. Used by `presence serve`, `replay --resume` and `state`.
    /// `logEndOffset`: the log's end, when the caller has it open (else read from the segments' headers).
    public static func restore(data: String, logDirectory: String, horizon: Int64, fromCheckpoint: Bool = true,
                               logEndOffset: Int64? = nil, untilOffset: Int64? = nil, at time: Int64? = nil,
                               readAhead: Bool = true, progress: @escaping (Int) -> Void = { _ in }) throws -> Restored {
        // After retention (`Retention`): nothing before the cut is answered, and no fold starts before
        // the first retained offset (the base checkpoint is the oldest state there is).
        let retained = try Retention.read(data: data)
        try Retention.check(retained, at: time, untilOffset: untilOffset)
        var projection = PresenceProjection(horizon: horizon)
        var report = Checkpoint.LoadReport()
        if fromCheckpoint {
            let end = try logEndOffset ?? LogReader(directory: logDirectory).endOffsetFromHeaders()
            if let (loaded, loadReport) = Checkpoint.loadNewest(from: Checkpoint.directory(data: data), logEndOffset: min(end, untilOffset ?? .max),
                                                                notAfter: time ?? .max, horizon: horizon) {
                report = loadReport
                if loadReport.used != nil { projection = loaded }
            }
        }
        if let retained, projection.nextOffset < retained.firstOffset {
            let base = try Retention.loadBase(data: data, retained)
            projection = base.projection
            report.used = base.path
        }
        let summary = try run(logDirectory: logDirectory, into: projection, untilOffset: untilOffset, at: time, readAhead: readAhead, progress: progress)
        return Restored(projection: projection, checkpoint: report, summary: summary)
    }
}
