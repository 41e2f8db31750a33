// presence-bench: measures the log's read path on one core.
//
//   presence-bench read --data DIR [--rounds N]
//
// Reads every record of DIR/presence the way every consumer does: each batch's CRC-32C checked,
// its LZ4 frame decompressed, every record's framing parsed, and every value decoded into an
// event view (kind, gateway, conn; no allocation). Prints events/s for each round and the best.

import Foundation
import Presence
import SegmentLog

func usage() -> Never {
    FileHandle.standardError.write(Data("usage: presence-bench read --data DIR [--rounds N]\n".utf8))
    exit(1)
}

var args = CommandLine.arguments.dropFirst()
guard args.popFirst() == "read" else { usage() }
var data: String?
var rounds = 3
while let arg = args.popFirst() {
    switch arg {
    case "--data": data = args.popFirst()
    case "--rounds": rounds = args.popFirst().flatMap(Int.init) ?? { usage() }()
    default: usage()
    }
}
guard let data else { usage() }

func seconds() -> Double {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
}

var best = 0.0
for round in 1...rounds {
    do {
        let reader = try LogReader(directory: data + "/" + presenceLogName)
        var events = 0
        var connects = 0
        var bytes = 0
        let start = seconds()
        try reader.forEachRecord { record in
            guard let value = record.value else { return true }
            let view = try EventCodec.view(value)
            if view.kind == .connect { connects += 1 }
            bytes &+= view.gateway.count &+ view.storedConn.count &+ (record.key?.count ?? 0)
            events += 1
            return true
        }
        let elapsed = seconds() - start
        let rate = Double(events) / elapsed
        best = max(best, rate)
        print("round \(round): read \(events) events (\(connects) connects, \(bytes) field bytes) in \(String(format: "%.3f", elapsed)) s: \(String(format: "%.2f", rate / 1e6))M events/s")
    } catch {
        FileHandle.standardError.write(Data("presence-bench: \(error)\n".utf8))
        exit(1)
    }
}
print("sequential read (CRC + LZ4 + decode), one core: \(String(format: "%.2f", best / 1e6))M events/s (best of \(rounds))")
