// presence-bench: measures the log's hot paths on one core.
//
//   presence-bench read --data DIR [--rounds N]
//   presence-bench parse FILE [--rounds N]
//   presence-bench dense-fold --data DIR [--rounds N] [--verify-keys] [--with-slots]
//   presence-bench intern-cost FILE [--rounds N]
//
// parse: NDJSON lines parsed, validated and encoded into record buffers, as `presence ingest` does
// before the log writer takes over (the input is read into memory first).
//
// Reads every record of DIR/presence the way every consumer does: each batch's CRC-32C checked,
// its LZ4 frame decompressed, every record's framing parsed, and every value decoded into an
// event view (kind, gateway, conn; no allocation). Prints events/s for each round and the best.
//
// dense-fold: the projector's replay on one core against a fold that gets dense integer ids from a
// sidecar instead of hashing byte keys (DenseFold.swift): an experiment for issue 3's target.
//
// intern-cost: parse as `parse` does, and the same with every event's user and connection numbered
// as a writer putting dense ids into the log would (InternCost.swift): that design's cost to ingest.

import Foundation
import Presence
import SegmentLog

func usage() -> Never {
    FileHandle.standardError.write(Data("usage: presence-bench read --data DIR [--rounds N] | parse FILE [--rounds N] | dense-fold --data DIR [--rounds N] [--verify-keys] [--with-slots] | intern-cost FILE [--rounds N]\n".utf8))
    exit(1)
}

var args = CommandLine.arguments.dropFirst()
let mode = args.popFirst()
guard let mode, ["read", "parse", "dense-fold", "intern-cost"].contains(mode) else { usage() }
var data: String?
var file: String?
var rounds = 3
var verifyKeys = false
var withSlots = false
while let arg = args.popFirst() {
    switch arg {
    case "--data": data = args.popFirst()
    case "--rounds": rounds = args.popFirst().flatMap(Int.init) ?? { usage() }()
    case "--verify-keys": verifyKeys = true
    case "--with-slots": withSlots = true
    default: if file == nil && !arg.hasPrefix("-") { file = arg } else { usage() }
    }
}

func seconds() -> Double {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
}

func parseBenchmark(_ path: String, rounds: Int) {
    guard let input = FileManager.default.contents(atPath: path) else {
        FileHandle.standardError.write(Data("presence-bench: cannot read \(path)\n".utf8))
        exit(1)
    }
    var best = 0.0
    for round in 1...rounds {
        let parser = NDJSONEventParser()
        var buffer = RecordBuffer()
        var events = 0, rejected = 0
        let start = seconds()
        input.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else { return }
            var position = 0
            while position < raw.count {
                let rest = raw.count - position
                let end = memchr(base + position, 10, rest).map { UnsafeRawPointer($0) - base } ?? raw.count
                do {
                    try parser.append(UnsafeRawBufferPointer(start: base + position, count: end - position), to: &buffer)
                    events += 1
                } catch {
                    rejected += 1
                }
                if buffer.count >= 16_384 { buffer.removeAll() }
                position = end + 1
            }
        }
        let elapsed = seconds() - start
        best = max(best, Double(events) / elapsed)
        print("round \(round): parsed \(events) events (\(rejected) rejected) in \(String(format: "%.3f", elapsed)) s: \(String(format: "%.2f", Double(events) / elapsed / 1e6))M events/s")
    }
    print("NDJSON parse + encode, one core: \(String(format: "%.2f", best / 1e6))M events/s (best of \(rounds))")
}

if mode == "intern-cost" {
    guard let file else { usage() }
    do {
        try InternCost.run(file, rounds: rounds)
    } catch {
        FileHandle.standardError.write(Data("presence-bench: \(error)\n".utf8))
        exit(1)
    }
    exit(0)
}
if mode == "parse" {
    guard let file else { usage() }
    parseBenchmark(file, rounds: rounds)
    exit(0)
}
guard let data else { usage() }
if mode == "dense-fold" {
    do {
        try DenseFold.run(data: data, rounds: rounds, verifyKeys: verifyKeys, withSlots: withSlots)
    } catch {
        FileHandle.standardError.write(Data("presence-bench: \(error)\n".utf8))
        exit(1)
    }
    exit(0)
}

var best = 0.0
for round in 1...rounds {
    do {
        let reader = try LogReader(directory: data + "/" + presenceLogName)
        var events = 0
        var connects = 0
        var bytes = 0
        let start = seconds()
        // The batch API is the read path the projector uses; `forEachRecord` (dump, history) wraps it.
        try reader.forEachRecordBatch { batch in
            for record in batch {
                guard let value = record.value else { continue }
                let view = try EventCodec.view(value)
                if view.kind == .connect { connects += 1 }
                bytes &+= view.gateway.count &+ view.storedConn.count &+ (record.key?.count ?? 0)
                events += 1
            }
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
