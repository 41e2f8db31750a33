import ArgumentParser
import Foundation
import Presence
import SegmentLog

struct IngestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ingest",
        abstract: "Append NDJSON presence events to the log.",
        discussion: """
            Reads one event per line from FILE (or standard input, '-'), for example (one line in the file):

              {"type":"connect","user":"bob","conn":"bob-phone-7f3a","gateway":"gw-1",
               "ts":"2024-01-15T09:41:03.120Z"}

            Good lines are appended; each bad line is reported on standard error with its number and the \
            reason, and the command exits 2. With --strict nothing is written if any line is bad.

            Under --fsync always (the default) an event is acknowledged only once it is on disk; \
            --report-acks prints each acknowledgement as a JSON line on standard output.
            """
    )

    @Option(name: .long, help: ArgumentHelp("The data directory (created if missing).", valueName: "dir"))
    var data: String

    @Argument(help: ArgumentHelp("NDJSON input file, or '-' for standard input.", valueName: "file"))
    var input: String = "-"

    @Flag(help: "Validate every line first; write nothing if any line is bad (buffers the input in memory).")
    var strict = false

    @Option(help: ArgumentHelp("When to fsync: always (before acknowledging), interval:MS, or never.", valueName: "policy"))
    var fsync: FsyncArgument = .always

    @Option(help: ArgumentHelp("Roll to a new segment at this size (e.g. 64MiB).", valueName: "size"))
    var segmentBytes = SizeArgument(default: "64MiB")

    @Option(help: ArgumentHelp("Roll to a new segment when event time spans this long (e.g. 1h).", valueName: "duration"))
    var segmentAge = DurationArgument(default: "1h")

    @Option(parsing: .unconditional, help: ArgumentHelp("How long a commit waits for more appends, in milliseconds.", valueName: "ms"))
    var commitWindow: Double = 2

    @Option(parsing: .unconditional, help: ArgumentHelp("0 for LZ4's fast compressor, 1-12 for LZ4 HC at that level (smaller, slower to write, as fast to read).", valueName: "level"))
    var compressionLevel: Int = LogConfiguration().compressionLevel

    @OptionGroup var horizon: HorizonOption

    @Option(parsing: .unconditional, help: ArgumentHelp("Tuning: the most records in one batch.", valueName: "n"))
    var batchRecords: Int = LogConfiguration().maxBatchRecords

    @Option(parsing: .unconditional, help: ArgumentHelp("Tuning: the most event-time milliseconds one batch spans.", valueName: "ms"))
    var batchSpan: Int64 = LogConfiguration().maxBatchTimestampSpan

    @Flag(help: "Print each durable acknowledgement as {\"first_offset\":…,\"last_offset\":…,\"durable_end_offset\":…}.")
    var reportAcks = false

    @Option(help: ArgumentHelp("How far back in event time an event's \"id\" is remembered: a line whose id (from the same gateway) the log holds within it is a repeat and is not written again (default: the late-arrival horizon).", valueName: "duration"))
    var idWindow: DurationArgument?

    @Flag(help: "No progress line, even on a terminal.")
    var quiet = false

    func run() throws {
        do {
            try ingest()
        } catch let exit as ExitCode {
            throw exit
        } catch {
            throw fail(error)
        }
    }

    private func ingest() throws {
        let durability = fsync.durability
        var configuration = LogConfiguration()
        configuration.durability = durability
        configuration.segmentBytes = segmentBytes.bytes
        configuration.segmentMilliseconds = segmentAge.milliseconds
        configuration.commitWindowMicroseconds = Int(commitWindow * 1000)
        configuration.compressionLevel = compressionLevel
        configuration.maxBatchRecords = batchRecords
        configuration.maxBatchTimestampSpan = batchSpan
        try configuration.validate()
        let requestedHorizon = horizon.requested

        let inputFD: Int32
        if input == "-" {
            inputFD = 0
        } else {
            inputFD = open(input, O_RDONLY | O_CLOEXEC)
            guard inputFD >= 0 else { throw CommandFailure("cannot open input '\(input)': \(String(cString: strerror(errno)))") }
            var info = stat()
            if fstat(inputFD, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR {
                throw CommandFailure("input '\(input)' is a directory")
            }
        }
        defer { if inputFD != 0 { close(inputFD) } }

        let directory = try DataDirectory(path: data)
        let horizonMilliseconds = try StoredHorizon.forWriting(directory, requested: requestedHorizon)
        let log = try directory.openLog(presenceLogName, configuration: configuration) { printError("recovery: \($0)") }
        let bytesBefore = logBytesOnDisk(log.directory)
        let firstOffset = log.endOffset
        var lateArrivals = LateArrivalGuard(horizon: horizonMilliseconds, newest: log.maxTimestamp)
        // The ids the log already holds within the window, and those of this run as they are parsed: the
        // writer writes in the order of submission, so each record's offset is known here.
        let window = idWindow?.milliseconds ?? horizonMilliseconds
        var ids = try EventIDIndex.rebuild(logDirectory: log.directory, window: window, newest: log.maxTimestamp)
        var nextOffset = firstOffset
        var repeats = 0
        let writer = LogWriter(log: log)
        let acks = AckTracker(report: reportAcks)

        let started = now()
        let progress = Progress(enabled: !quiet && isatty(2) == 1, started: started)
        let parser = NDJSONEventParser()
        var pending = RecordBuffer()
        var held: [RecordBuffer] = []  // --strict: everything, written only if no line is bad
        var rejected = 0
        var accepted = 0
        let chunkRecords = 16_384
        pending.reserve(records: chunkRecords, bytes: chunkRecords * 40)

        func submit() {
            guard !pending.isEmpty else { return }
            if strict {
                held.append(pending)
            } else {
                acks.submit(pending, to: writer)
            }
            pending = RecordBuffer()
            pending.reserve(records: chunkRecords, bytes: chunkRecords * 40)
        }

        let reader = LineReader(fd: inputFD, maxLine: PresenceEvent.Limits.lineBytes)
        try reader.forEachLine { number, line, overlong in
            if overlong {
                rejected += 1
                printError("line \(number): line is longer than \(PresenceEvent.Limits.lineBytes) bytes; the limit is \(PresenceEvent.Limits.lineBytes)")
                return acks.failure == nil
            }
            if NDJSONLines.isBlank(line) { return true }
            do throws(EventParseError) {
                try parser.append(line, to: &pending, admittedBy: &lateArrivals)
                let last = pending.count - 1, timestamp = pending.timestamp(at: last)
                let identity = pending.withRecord(at: last) { EventIDIndex.identify(key: $0, value: $1, timestamp: timestamp) }
                if let identity, let earlier = ids.earlier(identity.key) {
                    pending.removeLast()
                    guard earlier.fingerprint == identity.fingerprint else {
                        throw EventParseError("event id \"\(identity.key.id)\" was used at offset \(earlier.offset) for another event of this gateway; refused")
                    }
                    repeats += 1
                    printError("line \(number): a repeat of event id \"\(identity.key.id)\", written at offset \(earlier.offset); not written again")
                } else {
                    ids.record(identity?.key, fingerprint: identity?.fingerprint ?? 0, offset: nextOffset, timestamp: timestamp)
                    nextOffset += 1
                    accepted += 1
                }
            } catch {
                rejected += 1
                printError("line \(number): \(error.reason)")
            }
            if pending.count >= chunkRecords {
                submit()
                progress.update(events: accepted, bytesRead: reader.bytesRead)
            }
            return acks.failure == nil
        }
        if strict && rejected > 0 {
            try writer.close()
            progress.finish()
            printError("--strict: \(rejected) bad line\(rejected == 1 ? "" : "s"); nothing was written")
            throw ExitCode(2)
        }
        submit()
        for buffer in held { acks.submit(buffer, to: writer) }
        acks.waitForAll()
        if let failure = acks.failure {
            // Say what the log holds of this input, so the operator knows where to go on from.
            try? writer.close()
            progress.finish()
            let written = writer.endOffset - firstOffset
            throw CommandFailure("\(failure.message)\ningest stopped: \(counted(Int(written), "event")) of this input are in the log"
                                 + (written > 0 ? " (offsets \(firstOffset)-\(writer.endOffset - 1), durable through \(writer.durableEndOffset - 1))" : "")
                                 + "; lines with an \"id\" can be ingested again safely (repeats are skipped)")
        }
        try writer.close()
        progress.finish()

        let elapsed = max(now() - started, 1e-9)
        let bytesAfter = logBytesOnDisk(log.directory)
        let added = bytesAfter - bytesBefore
        let endOffset = writer.endOffset
        var summary = "ingested \(counted(accepted, "event"))"
        if repeats > 0 { summary += ", skipped \(counted(repeats, "repeated event id")) (already in the log)" }
        if rejected > 0 { summary += ", rejected \(counted(rejected, "line"))" }
        summary += " in \(fixed(elapsed, 2)) s (\(rateText(Double(accepted) / elapsed)) events/s)"
        if accepted > 0 {
            summary += "; offsets \(firstOffset)-\(endOffset - 1), durable through \(writer.durableEndOffset - 1) (fsync \(durability))"
            summary += "; \(bytesText(added)) added on disk, \(fixed(Double(added) / Double(accepted), 1)) bytes/event"
        }
        summary += "; log holds \(counted(Int(endOffset), "event")) in \(bytesText(bytesAfter))"
        printError(summary)
        if rejected > 0 { throw ExitCode(2) }
    }
}

/// Hands record buffers to the writer with a bounded number in flight, and collects the acknowledgements.
final class AckTracker: @unchecked Sendable {
    // @unchecked: every field is guarded by `lock`.
    private let lock = NSCondition()
    private var inFlight = 0
    private var firstFailure: LogError?
    private let report: Bool
    private let maxInFlight = 32

    init(report: Bool) { self.report = report }

    var failure: LogError? {
        lock.lock(); defer { lock.unlock() }
        return firstFailure
    }

    func submit(_ records: RecordBuffer, to writer: LogWriter) {
        lock.lock()
        while inFlight >= maxInFlight { lock.wait() }
        inFlight += 1
        lock.unlock()
        writer.append(records) { [self] result in
            switch result {
            case .success(let ack):
                if report {
                    let line = "{\"first_offset\":\(ack.offsets.lowerBound),\"last_offset\":\(ack.offsets.upperBound),\"durable_end_offset\":\(ack.durableEndOffset)}\n"
                    var text = line
                    text.withUTF8 { try? writeAll(1, UnsafeRawBufferPointer($0)) }
                }
            case .failure(let error):
                lock.lock()
                if firstFailure == nil { firstFailure = error }
                lock.unlock()
            }
            lock.lock()
            inFlight -= 1
            lock.broadcast()
            lock.unlock()
        }
    }

    func waitForAll() {
        lock.lock()
        while inFlight > 0 { lock.wait() }
        lock.unlock()
    }
}

/// A progress line on standard error, redrawn at most twice a second, only on a terminal.
final class Progress {
    private let enabled: Bool
    private let started: Double
    private var lastDraw = 0.0
    private var drawn = false

    init(enabled: Bool, started: Double) {
        self.enabled = enabled
        self.started = started
    }

    func update(events: Int, bytesRead: Int64) {
        guard enabled else { return }
        let t = now()
        guard t - lastDraw >= 0.5 else { return }
        lastDraw = t
        drawn = true
        let rate = Double(events) / max(t - started, 1e-9)
        var line = "\r\u{1B}[K  \(grouped(events)) events, \(bytesText(bytesRead)) read, \(rateText(rate)) events/s"
        line.withUTF8 { try? writeAll(2, UnsafeRawBufferPointer($0)) }
    }

    func finish() {
        guard drawn else { return }
        var clear = "\r\u{1B}[K"
        clear.withUTF8 { try? writeAll(2, UnsafeRawBufferPointer($0)) }
    }
}

/// Reads a file descriptor in large chunks and hands out its lines without copying them, cut as
/// `NDJSONLines` says (a line may straddle two chunks here, which is why this reader exists).
final class LineReader {
    private let fd: Int32
    private let maxLine: Int
    private let chunk = 4 << 20
    private(set) var bytesRead: Int64 = 0

    init(fd: Int32, maxLine: Int) {
        self.fd = fd
        self.maxLine = maxLine
    }

    /// Calls `body(lineNumber, bytes, overlong)` for each line (without "\n" or a trailing "\r"); a line
    /// longer than `maxLine` is passed once with `overlong` and empty bytes. Stops when `body` returns false.
    func forEachLine(_ body: (Int, UnsafeRawBufferPointer, Bool) throws -> Bool) throws {
        let capacity = chunk + maxLine + 2
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
        defer { buffer.deallocate() }
        var filled = 0
        var lineNumber = 0
        var skippingOverlong = false
        var eof = false
        while !eof {
            let n = read(fd, buffer + filled, capacity - filled)
            if n < 0 {
                if errno == EINTR { continue }
                throw CommandFailure("reading input failed: \(String(cString: strerror(errno)))")
            }
            if n == 0 { eof = true } else { bytesRead += Int64(n); filled += n }
            var start = 0
            while start < filled {
                let rest = UnsafeRawBufferPointer(start: buffer + start, count: filled - start)
                guard let found = memchr(buffer + start, 10, filled - start) else { break }
                let newline = UnsafeRawPointer(found) - UnsafeRawPointer(buffer + start)
                if skippingOverlong {
                    skippingOverlong = false
                } else {
                    lineNumber += 1
                    let length = NDJSONLines.trimmed(UnsafeRawBufferPointer(rebasing: rest[..<newline])).count
                    let overlong = length > maxLine
                    let line = UnsafeRawBufferPointer(start: buffer + start, count: overlong ? 0 : length)
                    if try !body(lineNumber, line, overlong) { return }
                }
                start += newline + 1
            }
            // Keep the partial last line; if it is already too long, report it and skip to its end.
            let partial = filled - start
            if partial > maxLine + 1 && !skippingOverlong {
                lineNumber += 1
                if try !body(lineNumber, UnsafeRawBufferPointer(start: buffer, count: 0), true) { return }
                skippingOverlong = true
                filled = 0
                continue
            }
            if skippingOverlong {
                filled = 0
                continue
            }
            if start > 0 {
                (buffer).copyMemory(from: buffer + start, byteCount: partial)
                filled = partial
            }
            if eof && filled > 0 {
                lineNumber += 1
                let length = NDJSONLines.trimmed(UnsafeRawBufferPointer(start: buffer, count: filled)).count
                _ = try body(lineNumber, UnsafeRawBufferPointer(start: buffer, count: length), length > maxLine)
            }
        }
    }
}
