import ArgumentParser
import Presence
import Projector
import SegmentLog

#if canImport(Glibc)
import Glibc
#endif

struct DumpCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dump",
        abstract: "Print logged events as NDJSON, in log order.",
        discussion: """
            The lines carry the same content that was ingested (timestamps in UTC, ISO-8601 with \
            milliseconds), so the output can be ingested again. Every batch read is checked; a damaged \
            one stops the dump with exit 3 and names the file and byte position.
            """
    )

    @Option(name: .long, help: ArgumentHelp("The data directory.", valueName: "dir"))
    var data: String

    // .unconditional: "-1" is read as a value (then refused by name), not taken for an option.
    @Option(parsing: .unconditional, help: ArgumentHelp("Start at this log offset (0 or more).", valueName: "offset"))
    var fromOffset: Int64?

    @Option(parsing: .unconditional, help: ArgumentHelp("Stop after this log offset (it included).", valueName: "offset"))
    var toOffset: Int64?

    @Option(parsing: .unconditional, help: ArgumentHelp("Print at most this many events (those the filters keep).", valueName: "n"))
    var limit: Int?

    @Flag(help: "At the end of the log, wait and print new events as they are appended, until interrupted (or --limit, --to-offset).")
    var follow = false

    @Option(help: ArgumentHelp("Only events at or after this time (ISO-8601 or epoch ms).", valueName: "time"))
    var from: String?

    @Option(help: ArgumentHelp("Only events at or before this time (ISO-8601 or epoch ms).", valueName: "time"))
    var to: String?

    @Option(help: ArgumentHelp("Only this user's events (repeat for several users).", valueName: "user"))
    var user: [String] = []

    @Flag(help: "Add each event's log offset as an \"offset\" field.")
    var offsets = false

    func run() throws {
        do {
            try dump()
        } catch {
            throw fail(error)
        }
    }

    private func dump() throws {
        if let fromOffset, fromOffset < 0 { throw ValidationError("--from-offset must be a log offset ≥ 0, not \(fromOffset)") }
        if let toOffset, toOffset < 0 { throw ValidationError("--to-offset must be a log offset ≥ 0, not \(toOffset)") }
        if let limit, limit < 1 { throw ValidationError("--limit must be 1 or more, not \(limit)") }
        let fromTime = try from.map { try parseTime($0, option: "--from") }
        let toTime = try to.map { try parseTime($0, option: "--to") }
        let users = Set(user.map { Array($0.utf8) })
        // After retention: a range wholly before the cut is refused; one that starts before it is said.
        let retained = try Retention.read(data: data)
        try Retention.check(retained, at: toTime, fromOffset: fromOffset, untilOffset: toOffset)
        if let retained, fromOffset == nil, (fromTime ?? .min) < retained.cut {
            printError("note: the presence history before \(Timestamp.format(retained.cut)) (offsets below \(retained.firstOffset)) was not retained; dumping from offset \(retained.firstOffset)")
        }
        var start: LogReader.Start = fromOffset.map { .offset($0) } ?? fromTime.map { .timestamp($0) } ?? .offset(retained?.firstOffset ?? 0)
        var out: [UInt8] = []
        out.reserveCapacity(1 << 20)
        var printed = 0
        var done = false
        // One pass over the log as it is; with --follow, another from where it stopped every 200 ms (the
        // reader is opened again, to see new segments), until --limit or --to-offset ends it.
        while true {
            var next: Int64?
            let reader = try LogReader(directory: presenceLogPath(data))
            let summary = try reader.forEachRecord(from: start) { record in
                if let toOffset, record.offset > toOffset { done = true; return false }
                next = record.offset + 1
                guard try append(record, reader: reader, fromTime: fromTime, toTime: toTime, users: users, to: &out) else { return true }
                printed += 1
                if let limit, printed >= limit { done = true; return false }
                return true
            }
            try out.withUnsafeBytes { try writeAll(1, $0) }
            out.removeAll(keepingCapacity: true)
            if let toOffset, summary.endOffset > toOffset { done = true }
            if done || !follow {
                // A running writer's incomplete tail is no news to a follower.
                if let torn = summary.tornTail, !follow { printError("warning: \(torn)") }
                return
            }
            if let next { start = .offset(next) }
            usleep(200_000)
        }
    }

    /// Appends `record` to `out` if the filters keep it (and writes `out` when it is large); returns
    /// whether it was kept.
    private func append(_ record: RecordView, reader: LogReader, fromTime: Int64?, toTime: Int64?, users: Set<[UInt8]>,
                        to out: inout [UInt8]) throws -> Bool {
        if let fromTime, record.timestamp < fromTime { return false }
        if let toTime, record.timestamp > toTime { return false }
        if !users.isEmpty {
            guard let key = record.key, users.contains(Array(key)) else { return false }
        }
        let event: PresenceEvent
        do throws(EventCodec.DecodeError) {
            event = try EventCodec.decode(key: record.key, value: record.value, timestamp: record.timestamp)
        } catch {
            throw LogError(.corrupt, "\(reader.directory): record at offset \(record.offset) is not a presence event: \(error.description)")
        }
        EventJSON.append(event, offset: offsets ? record.offset : nil, to: &out)
        if out.count >= 1 << 20 {
            try out.withUnsafeBytes { try writeAll(1, $0) }
            out.removeAll(keepingCapacity: true)
        }
        return true
    }
}
