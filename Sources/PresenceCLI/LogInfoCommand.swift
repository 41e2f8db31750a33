import ArgumentParser
import Erasure
import Presence
import Projector
import SegmentLog

struct LogInfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "log-info",
        abstract: "Describe the log's segments: offsets, time ranges, sizes, bytes per event.",
        discussion: "Decompresses every batch for its time range; --verify also checks every batch's CRC."
    )

    @Option(name: .long, help: ArgumentHelp("The data directory.", valueName: "dir"))
    var data: String

    @Flag(help: "Check every batch (CRC, records); exit 3 on damage.")
    var verify = false

    @Flag(help: "One JSON object per segment, then one for the whole log.")
    var json = false

    typealias SegmentStats = LogSummary.Segment

    func run() throws {
        do {
            try info()
        } catch {
            throw fail(error)
        }
    }

    private func info() throws {
        let summary = try LogSummary.read(directory: presenceLogPath(data), verify: verify)
        let stats = summary.segments, total = summary.total
        let retained = try Retention.read(data: data)
        let erasures = ErasureLog.summarize(try ErasureLog.read(data: data.hasSuffix("/") ? String(data.dropLast()) : data))
        if json {
            for s in stats { print(jsonLine(s, kind: "segment")) }
            var line = jsonLine(total, kind: "log")
            if let retained { line = String(line.dropLast()) + ",\"retained_from_offset\":\(retained.firstOffset),\"retention_cut\":\"\(Timestamp.format(retained.cut))\"}" }
            line = String(line.dropLast()) + ",\"erasures\":\(erasures.users),\"erased_records\":\(erasures.recordsRemoved),\"erased_presence_records\":\(erasures.presenceRecordsRemoved),\"unfinished_erasures\":\(erasures.unfinished.count)}"
            print(line)
        } else {
            print("log \(summary.directory)\(verify ? " (every batch verified)" : "")")
            if let retained {
                print("retained from offset \(retained.firstOffset): history before \(Timestamp.format(retained.cut)) was removed (presence retain)")
            }
            if erasures.users > 0 {
                print("erasures: \(counted(erasures.users, "user")) erased (presence forget), \(grouped(erasures.recordsRemoved)) records removed "
                      + "(\(grouped(erasures.presenceRecordsRemoved)) from this log; their offsets are gaps)"
                      + (erasures.unfinished.isEmpty ? "" : "; \(erasures.unfinished.count) UNFINISHED: run presence forget again"))
            }
            let header = ["segment", "offsets", "events", "batches", "first event time", "last event time", "log bytes", "bytes/event"]
            var rows = [header]
            for s in stats { rows.append(row(Log.segmentName(s.baseOffset), s)) }
            rows.append(row("total", total))
            printTable(rows)
        }
        if let torn = summary.tornTail { printError("warning: \(torn)") }
    }

    private func row(_ name: String, _ s: SegmentStats) -> [String] {
        [name,
         s.records == 0 ? "-" : "\(s.baseOffset)-\(s.endOffset - 1)",
         grouped(Int(s.records)), grouped(s.batches),
         s.records == 0 ? "-" : Timestamp.format(s.firstTimestamp),
         s.records == 0 ? "-" : Timestamp.format(s.maxTimestamp),
         bytesText(s.bytes),
         s.records == 0 ? "-" : fixed(Double(s.bytes) / Double(s.records), 2)]
    }

    private func jsonLine(_ s: SegmentStats, kind: String) -> String {
        var fields = ["\"\(kind == "log" ? "log" : "segment")\":\(kind == "log" ? "\"\(presenceLogName)\"" : "\"\(Log.segmentName(s.baseOffset))\"")",
                      "\"base_offset\":\(s.baseOffset)", "\"end_offset\":\(s.endOffset)", "\"events\":\(s.records)",
                      "\"batches\":\(s.batches)", "\"log_bytes\":\(s.bytes)", "\"index_bytes\":\(s.indexBytes)"]
        if s.records > 0 {
            fields.append("\"first_time\":\"\(Timestamp.format(s.firstTimestamp))\"")
            fields.append("\"last_time\":\"\(Timestamp.format(s.maxTimestamp))\"")
            fields.append("\"bytes_per_event\":\(fixed(Double(s.bytes) / Double(s.records), 3))")
        }
        return "{" + fields.joined(separator: ",") + "}"
    }

    private func printTable(_ rows: [[String]]) {
        var widths = [Int](repeating: 0, count: rows[0].count)
        for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
        for row in rows {
            let cells = row.enumerated().map { i, cell in
                i == 0 || i == 4 || i == 5 ? cell.padding(toLength: widths[i]) : String(repeating: " ", count: widths[i] - cell.count) + cell
            }
            print(cells.joined(separator: "  "))
        }
    }
}

extension String {
    func padding(toLength length: Int) -> String {
        count >= length ? self : self + String(repeating: " ", count: length - count)
    }
}
