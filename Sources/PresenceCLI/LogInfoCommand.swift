import ArgumentParser
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

    struct SegmentStats {
        var baseOffset: Int64
        var endOffset: Int64
        var batches = 0
        var records: Int64 = 0
        var firstTimestamp = Int64.max
        var maxTimestamp = Int64.min
        var bytes: Int64 = 0
        var indexBytes: Int64 = 0
    }

    func run() throws {
        do {
            try info()
        } catch {
            throw fail(error)
        }
    }

    private func info() throws {
        let reader = try LogReader(directory: presenceLogPath(data))
        let retained = try Retention.read(data: data)
        var stats = reader.segments.map { SegmentStats(baseOffset: $0.baseOffset, endOffset: $0.baseOffset, bytes: $0.size) }
        var positions: [String: Int] = [:]
        for (index, segment) in reader.segments.enumerated() {
            positions[segment.path] = index
            let stem = String(segment.path.dropLast(4))
            stats[index].indexBytes = (fileSize(stem + ".index") ?? 0) + (fileSize(stem + ".timeindex") ?? 0)
        }
        let summary = try reader.forEachBatch(verify: verify, decode: true) { batch in
            guard let index = positions[batch.segment.path] else { return true }
            stats[index].batches += 1
            stats[index].records += Int64(batch.header.recordsCount)
            stats[index].endOffset = batch.header.nextOffset
            stats[index].firstTimestamp = min(stats[index].firstTimestamp, batch.smallestTimestamp ?? batch.header.maxTimestamp)
            stats[index].maxTimestamp = max(stats[index].maxTimestamp, batch.header.maxTimestamp)
            return true
        }
        let total = stats.reduce(into: SegmentStats(baseOffset: stats.first?.baseOffset ?? 0, endOffset: summary.endOffset)) {
            $0.batches += $1.batches
            $0.records += $1.records
            $0.firstTimestamp = min($0.firstTimestamp, $1.firstTimestamp)
            $0.maxTimestamp = max($0.maxTimestamp, $1.maxTimestamp)
            $0.bytes += $1.bytes
            $0.indexBytes += $1.indexBytes
        }
        if json {
            for s in stats { print(jsonLine(s, kind: "segment")) }
            let line = jsonLine(total, kind: "log")
            print(retained.map { line.dropLast() + ",\"retained_from_offset\":\($0.firstOffset),\"retention_cut\":\"\(Timestamp.format($0.cut))\"}" } ?? line)
        } else {
            print("log \(reader.directory)\(verify ? " (every batch verified)" : "")")
            if let retained {
                print("retained from offset \(retained.firstOffset): history before \(Timestamp.format(retained.cut)) was removed (presence retain)")
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

    private func fileSize(_ path: String) -> Int64? {
        var info = stat()
        return stat(path, &info) == 0 ? Int64(info.st_size) : nil
    }
}

extension String {
    func padding(toLength length: Int) -> String {
        count >= length ? self : self + String(repeating: " ", count: length - count)
    }
}

#if canImport(Glibc)
import Glibc
#endif
