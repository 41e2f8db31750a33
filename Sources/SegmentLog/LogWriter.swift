import Foundation
import Synchronization

/// The offsets a commit gave to one append request.
public struct AppendResult: Sendable, Equatable {
    /// Offsets of the request's first and last record.
    public let offsets: ClosedRange<Int64>
    /// Records below this offset were durable when the request was acknowledged. Under
    /// `Durability.always` it is past `offsets.upperBound`.
    public let durableEndOffset: Int64
    /// Every batch the commit wrote, in offset order (shared by the commit's requests; a request's records
    /// lie in the batches that overlap `offsets`).
    public var batches: [WrittenBatch] = []

    public init(offsets: ClosedRange<Int64>, durableEndOffset: Int64, batches: [WrittenBatch] = []) {
        self.offsets = offsets
        self.durableEndOffset = durableEndOffset
        self.batches = batches
    }
}

/// A check each append request must pass on the commit thread, in log order, just before it is
/// written: for a rule whose answer depends on everything written before the request (the presence
/// log's late-arrival horizon, which moves with the newest event time written), so that what the
/// writer acknowledges and what a reader of the log later decides agree. Called on the commit thread
/// only, one request at a time: an implementation keeps its state without a lock.
public protocol AppendAdmission: AnyObject {
    /// nil to admit `records` (the check then counts them as written), or the refusal: the index of the
    /// first record refused and why. A refused request leaves the check's state as it was.
    func admit(_ records: RecordBuffer) -> (record: Int, reason: String)?
    /// Called before a commit's first `admit`, and, when the commit's write then failed (nothing of it
    /// is in the log), `abandonCommit`: the check forgets what it admitted since `beginCommit`.
    func beginCommit()
    func abandonCommit()
}

/// Group commit in front of a `Log`: any number of producers append concurrently; one commit thread
/// gathers what is pending into batches, writes them, fsyncs once (under `Durability.always`) and then
/// acknowledges every request of the commit, in order.
///
/// A commit starts when `commitMaxRecords` records or `commitMaxBytes` bytes are pending, or when the
/// oldest pending request has waited `commitWindowMicroseconds`. While one commit writes and fsyncs,
/// the next gathers, so throughput grows with the number of producers.
///
/// The `Log` belongs to the commit thread from `init` until `close` returns.
public final class LogWriter: @unchecked Sendable {
    // @unchecked: `queue`, the counters and `state` are guarded by `condition`; `log` is touched only by
    // the commit thread between `init` and the end of `close`.
    private let condition = NSCondition()
    private var queue: [Queued] = []
    /// Pauses in `queue`.
    private var queuedPauses = 0
    private var queuedRecords = 0
    private var queuedBytes = 0
    private var oldestPending: UInt64 = 0
    private var state = State.running
    private var publishedEnd: Int64
    private var publishedDurableEnd: Int64
    private var lastSync: UInt64 = 0

    private let log: Log
    private let configuration: LogConfiguration
    /// Checked for every request on the commit thread (see `AppendAdmission`).
    private let admission: (any AppendAdmission)?
    private let finished = DispatchSemaphore(value: 0)
    /// The commit thread's buffer for merging requests.
    private var combined = RecordBuffer()

    private enum State { case running, closing, closed }

    private struct Pending {
        let records: RecordBuffer
        /// The records already encoded (cluster mode: as the stream carried them), written as they are
        /// when the request is committed alone.
        let encoded: EncodedBatches?
        let completion: @Sendable (Result<AppendResult, LogError>) -> Void
    }

    /// What the commit thread takes from the queue: requests to commit, or a pause (`pause()`), which
    /// is never committed together with the requests around it.
    private enum Queued {
        case append(Pending)
        case pause(PausedLog, @Sendable (Result<Void, LogError>) -> Void)
    }

    /// Starts the commit thread for `log`, which the writer owns from now on. `admission`, if given,
    /// decides on the commit thread, in log order, which requests are written; a refused one fails with
    /// `LogError.Code.refused` and nothing of it is written.
    public init(log: Log, admission: (any AppendAdmission)? = nil) {
        self.log = log
        self.configuration = log.configuration
        self.admission = admission
        self.publishedEnd = log.endOffset
        self.publishedDurableEnd = log.durableEndOffset
        let thread = Thread { [self] in
            commitLoop()
            finished.signal()
        }
        thread.name = "presencelog-commit"
        thread.start()
    }

    /// The offset the next appended record gets.
    public var endOffset: Int64 {
        condition.lock(); defer { condition.unlock() }
        return publishedEnd
    }

    /// Records below this offset are durable.
    public var durableEndOffset: Int64 {
        condition.lock(); defer { condition.unlock() }
        return publishedDurableEnd
    }

    /// Queues `records` for the next commit; `completion` runs on the commit thread once they are written
    /// (and, under `Durability.always`, durable), or failed. Completions of written requests run in log
    /// order; a request the admission check refuses is answered when its commit starts.
    /// `encoded`: the records already encoded as batches (`EncodedBatches`), written as they are unless
    /// the commit takes other requests too.
    public func append(_ records: RecordBuffer, encoded: EncodedBatches? = nil,
                       completion: @escaping @Sendable (Result<AppendResult, LogError>) -> Void) {
        guard !records.isEmpty else {
            completion(.failure(LogError(.invalidArgument, "nothing to append")))
            return
        }
        if let encoded, encoded.recordCount != records.count {
            completion(.failure(LogError(.invalidArgument, "the encoded batches hold \(encoded.recordCount) records, not the \(records.count) appended")))
            return
        }
        condition.lock()
        guard state == .running else {
            condition.unlock()
            completion(.failure(LogError(.closed, "\(log.directory): the log writer is closed")))
            return
        }
        if queue.isEmpty { oldestPending = DispatchTime.now().uptimeNanoseconds }
        queue.append(.append(Pending(records: records, encoded: encoded, completion: completion)))
        queuedRecords += records.count
        queuedBytes += records.payloadBytes
        condition.signal()
        condition.unlock()
    }

    /// Queues several requests at once, so that they are committed together (each admitted, refused and
    /// answered on its own, as requests that met in one commit are): `completion` is called for each,
    /// with its index. Requests that all come encoded are written as their batches are.
    public func append(group: [(records: RecordBuffer, encoded: EncodedBatches?)],
                       completion: @escaping @Sendable (Int, Result<AppendResult, LogError>) -> Void) {
        condition.lock()
        guard state == .running else {
            condition.unlock()
            for index in group.indices { completion(index, .failure(LogError(.closed, "\(log.directory): the log writer is closed"))) }
            return
        }
        if queue.isEmpty { oldestPending = DispatchTime.now().uptimeNanoseconds }
        var empty: [Int] = []
        for (index, request) in group.enumerated() {
            guard !request.records.isEmpty, request.encoded.map({ $0.recordCount == request.records.count }) ?? true else {
                empty.append(index)
                continue
            }
            queue.append(.append(Pending(records: request.records, encoded: request.encoded) { completion(index, $0) }))
            queuedRecords += request.records.count
            queuedBytes += request.records.payloadBytes
        }
        condition.signal()
        condition.unlock()
        for index in empty { completion(index, .failure(LogError(.invalidArgument, "nothing to append, or batches that do not hold the records"))) }
    }

    /// Appends `records` and returns once they are committed.
    public func append(_ records: RecordBuffer) async throws(LogError) -> AppendResult {
        let result: Result<AppendResult, LogError> = await withCheckedContinuation { continuation in
            append(records) { continuation.resume(returning: $0) }
        }
        return try result.get()
    }

    /// Stops the commit thread between two commits, once every request queued before this call is
    /// committed and answered, and hands the `Log` to the caller until `PausedLog.resume()`; requests
    /// queued meanwhile wait, and are committed after it. For work that must own the log while the
    /// writer stays open (an online erasure rolls the active segment and rewrites sealed ones).
    /// `resume()` must be called, or the writer never commits (nor closes) again.
    public func pause() async throws(LogError) -> PausedLog {
        let paused = PausedLog(log: log)
        let result: Result<Void, LogError> = await withCheckedContinuation { continuation in
            condition.lock()
            guard state == .running else {
                condition.unlock()
                continuation.resume(returning: .failure(LogError(.closed, "\(log.directory): the log writer is closed")))
                return
            }
            if queue.isEmpty { oldestPending = DispatchTime.now().uptimeNanoseconds }
            queue.append(.pause(paused, { continuation.resume(returning: $0) }))
            queuedPauses += 1
            condition.signal()
            condition.unlock()
        }
        try result.get()
        return paused
    }

    /// Commits what is pending, stops the commit thread and closes the log cleanly.
    public func close() throws(LogError) {
        condition.lock()
        if state != .running {
            condition.unlock()
            return
        }
        state = .closing
        condition.signal()
        condition.unlock()
        finished.wait()
        condition.lock()
        state = .closed
        condition.unlock()
        try log.close()
    }

    // MARK: The commit thread

    private func commitLoop() {
        while let work = nextCommit() {
            switch work {
            case .commit(let requests):
                commit(requests)
            case .pause(let paused, let started):
                // The log belongs to the pauser until it resumes; what it wrote is durable when it does.
                started(.success(()))
                paused.waitUntilResumed()
                condition.lock()
                publishedEnd = log.endOffset
                publishedDurableEnd = log.durableEndOffset
                condition.unlock()
            }
            lastCommitEnded = DispatchTime.now().uptimeNanoseconds
        }
    }

    private enum Work {
        case commit([Pending])
        case pause(PausedLog, @Sendable (Result<Void, LogError>) -> Void)
    }

    /// When the last commit finished (commit thread only).
    private var lastCommitEnded: UInt64 = 0

    /// Waits for work and returns the requests of the next commit (those queued before the first pause),
    /// or that pause when it comes first; nil once closing with nothing left.
    private func nextCommit() -> Work? {
        condition.lock()
        defer { condition.unlock() }
        while queue.isEmpty {
            if state != .running { return nil }
            if case .interval(let ms) = configuration.durability, publishedDurableEnd < publishedEnd {
                let deadline = lastSync + UInt64(ms) * 1_000_000
                if DispatchTime.now().uptimeNanoseconds >= deadline {
                    return .commit([])  // an empty commit: time to fsync
                }
                _ = condition.wait(until: Date(timeIntervalSinceNow: Double(deadline - DispatchTime.now().uptimeNanoseconds) / 1e9))
            } else {
                condition.wait()
            }
        }
        // A writer idle for a whole window commits at once: waiting would only add latency to a lone
        // request (a socket's connect, a heartbeat). Under load commits follow one another, and each
        // gathers what arrived during the last and within the window.
        if case .pause(let paused, let started) = queue[0] {
            queue.removeFirst()
            queuedPauses -= 1
            return .pause(paused, started)
        }
        let window = UInt64(configuration.commitWindowMicroseconds) * 1_000
        let idle = DispatchTime.now().uptimeNanoseconds - lastCommitEnded >= window
        while !idle && state == .running && queuedPauses == 0 && queuedRecords < configuration.commitMaxRecords && queuedBytes < configuration.commitMaxBytes {
            let now = DispatchTime.now().uptimeNanoseconds
            let deadline = oldestPending + window
            if now >= deadline { break }
            _ = condition.wait(until: Date(timeIntervalSinceNow: Double(deadline - now) / 1e9))
        }
        var taken: [Pending] = []
        taken.reserveCapacity(queue.count)
        var end = 0
        for item in queue {
            guard case .append(let pending) = item else { break }
            taken.append(pending)
            queuedRecords -= pending.records.count
            queuedBytes -= pending.records.payloadBytes
            end += 1
        }
        if end == queue.count {
            queue.removeAll(keepingCapacity: true)
        } else {
            queue.removeFirst(end)
            oldestPending = DispatchTime.now().uptimeNanoseconds
        }
        return .commit(taken)
    }

    private func commit(_ requests: [Pending]) {
        var requests = requests
        if let admission {
            admission.beginCommit()
            // Refused requests are answered at once and left out of the commit.
            requests.removeAll { request in
                guard let refusal = admission.admit(request.records) else { return false }
                request.completion(.failure(LogError(.refused, refusal.reason, recordIndex: refusal.record)))
                return true
            }
        }
        var ranges: [ClosedRange<Int64>] = []
        ranges.reserveCapacity(requests.count)
        var failure: LogError?
        var batches: [WrittenBatch] = []
        do {
            // All requests of a commit go into the same batches: one buffer, offsets handed out by count.
            var first = log.endOffset
            if !requests.isEmpty, requests.allSatisfy({ $0.encoded != nil }) {
                try log.append(encoded: requests.compactMap(\.encoded))
            } else if requests.count == 1 {
                try log.append(requests[0].records)
            } else if !requests.isEmpty {
                combined.removeAll()
                for request in requests { combined.append(contentsOf: request.records) }
                try log.append(combined)
            }
            if !requests.isEmpty { batches = log.lastAppendBatches }
            for request in requests {
                ranges.append(first...(first + Int64(request.records.count) - 1))
                first += Int64(request.records.count)
            }
            let now = DispatchTime.now().uptimeNanoseconds
            switch configuration.durability {
            case .always:
                try log.sync()
                lastSync = now
            case .interval(let ms):
                if now >= lastSync + UInt64(ms) * 1_000_000 {
                    try log.sync()
                    lastSync = now
                }
            case .never:
                break
            }
        } catch {
            failure = error
            // Written or not, these records were not acknowledged: a full disk leaves nothing of them in
            // the log; any other failure stops the log. Either way the admission forgets them.
            admission?.abandonCommit()
        }
        condition.lock()
        publishedEnd = log.endOffset
        publishedDurableEnd = log.durableEndOffset
        let durable = publishedDurableEnd
        condition.unlock()
        for (index, request) in requests.enumerated() {
            if let failure {
                request.completion(.failure(failure))
            } else {
                request.completion(.success(AppendResult(offsets: ranges[index], durableEndOffset: durable, batches: batches)))
            }
        }
    }
}

/// A `LogWriter` stopped between two commits (`LogWriter.pause()`): its log is the holder's until
/// `resume()`.
public final class PausedLog: @unchecked Sendable {
    // @unchecked: `log` is used by the holder only while the commit thread waits in `waitUntilResumed`.
    /// The writer's log, for the holder to use until it resumes.
    public let log: Log
    private let resumed = DispatchSemaphore(value: 0)
    private let isResumed = Atomic<Bool>(false)

    init(log: Log) {
        self.log = log
    }

    /// Lets the writer commit again (once; later calls do nothing). Whatever the holder appended must
    /// be synced by then (`Log.sync()`).
    public func resume() {
        guard !isResumed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        resumed.signal()
    }

    func waitUntilResumed() {
        resumed.wait()
    }
}
