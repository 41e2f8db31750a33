import ArgumentParser
import Presence
import SegmentLog

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
        let fromTime = try from.map { try parseTime($0, option: "--from") }
        let toTime = try to.map { try parseTime($0, option: "--to") }
        let users = Set(user.map { Array($0.utf8) })
        let reader = try LogReader(directory: presenceLogPath(data))
        let start: LogReader.Start = fromOffset.map { .offset($0) } ?? fromTime.map { .timestamp($0) } ?? .offset(0)
        var out: [UInt8] = []
        out.reserveCapacity(1 << 20)
        let summary = try reader.forEachRecord(from: start) { record in
            if let fromTime, record.timestamp < fromTime { return true }
            if let toTime, record.timestamp > toTime { return true }
            if !users.isEmpty {
                guard let key = record.key, users.contains(Array(key)) else { return true }
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
        try out.withUnsafeBytes { try writeAll(1, $0) }
        if let torn = summary.tornTail { printError("warning: \(torn)") }
    }
}
