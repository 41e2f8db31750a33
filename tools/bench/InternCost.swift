// presence-bench intern-cost: what ingest would pay to write dense ids into the log itself.
//
// An experiment for issue 3 (the other way to dense ids, beside a sidecar: the single writer numbers
// users and connections as it appends, so that every reader gets them for free). The writer would
// then hold the id tables that the projector holds today: a lookup of the user and one of the
// connection (user id + identity) per event, in tables of hundreds of megabytes. This times, in
// alternating rounds on the same NDJSON file in memory, what `presence-bench parse` times (parse,
// validate, encode into record buffers) and the same plus those two lookups (exact: keys compared,
// new ones inserted), so the difference is the cost per event on ingest's parsing thread.

import CPrefetch
import Foundation
import Presence
import SegmentLog

enum InternCost {
    /// Byte keys numbered in order of first appearance: open addressing over 32-bit tags and indices,
    /// keys in an arena. Sized once, large enough for the stream (untouched memory costs nothing).
    final class Numbering {
        private let slots: FreshArray<UInt64>
        private let records: FreshArray<(hash: UInt64, offset: UInt32, length: UInt32)>
        private let arena: FreshArray<UInt8>
        private let mask: Int
        private(set) var count = 0
        private var arenaCount = 0

        init(capacity: Int) {
            var size = 1 << 12
            while size < capacity * 2 { size *= 2 }
            slots = FreshArray(count: size)
            records = FreshArray(count: capacity)
            arena = FreshArray(count: capacity * 48)
            mask = size - 1
        }

        deinit {
            slots.free()
            records.free()
            arena.free()
        }

        /// The number of `key`, given its hash; a new one when it was never seen.
        func number(_ key: UnsafeRawPointer, _ length: Int, hash: UInt64) -> Int {
            var slot = Int(truncatingIfNeeded: hash) & mask
            while true {
                let entry = slots.pointer[slot]
                if entry == 0 { break }
                if entry >> 32 == hash >> 32 {
                    let index = Int(entry & 0xFFFF_FFFF) - 1
                    let record = records.pointer[index]
                    if record.hash == hash && Int(record.length) == length && memcmp(arena.pointer + Int(record.offset), key, length) == 0 {
                        return index
                    }
                }
                slot = (slot + 1) & mask
            }
            let index = count
            records.pointer[index] = (hash, UInt32(arenaCount), UInt32(length))
            UnsafeMutableRawPointer(arena.pointer + arenaCount).copyMemory(from: key, byteCount: length)
            arenaCount += length
            slots.pointer[slot] = (hash >> 32) << 32 | UInt64(index + 1)
            count += 1
            return index
        }

        func prefetch(hash: UInt64) {
            presencelog_prefetch(slots.pointer + (Int(truncatingIfNeeded: hash) & mask))
        }
    }

    static func run(_ path: String, rounds: Int) throws {
        guard let input = FileManager.default.contents(atPath: path) else {
            throw LogError(.io, "cannot read \(path)")
        }
        var best = (parse: 0.0, intern: 0.0)
        for round in 1...rounds {
            for intern in round % 2 == 1 ? [false, true] : [true, false] {
                let (events, elapsed, users, connections) = try pass(input, intern: intern)
                let rate = Double(events) / elapsed
                if intern { best.intern = max(best.intern, rate) } else { best.parse = max(best.parse, rate) }
                print("round \(round): \(intern ? "parse + number" : "parse         ") \(events) events in \(String(format: "%.3f", elapsed)) s: "
                      + "\(String(format: "%.2f", rate / 1e6))M events/s" + (intern ? " (\(users) users, \(connections) connections)" : ""))
            }
        }
        let perEvent = (1 / best.intern - 1 / best.parse) * 1e9
        print("parse + encode: \(String(format: "%.2f", best.parse / 1e6))M events/s; with users and connections numbered: "
              + "\(String(format: "%.2f", best.intern / 1e6))M events/s (\(String(format: "%.0f", perEvent)) ns more an event; best of \(rounds))")
    }

    /// Parses every line as `presence ingest` does and, with `intern`, numbers each event's user and
    /// connection once each buffer of 16,384 records is full (as a writer would per commit).
    static func pass(_ input: Data, intern: Bool) throws -> (events: Int, seconds: Double, users: Int, connections: Int) {
        let users = Numbering(capacity: intern ? 2_000_000 : 1)
        let connections = Numbering(capacity: intern ? 8_000_000 : 1)
        let parser = NDJSONEventParser()
        var buffer = RecordBuffer()
        var events = 0
        // Each chunk's keys (user id + identity), built once: the first pass hashes them and prefetches
        // their slots, the second looks them up.
        let keys = UnsafeMutableRawPointer.allocate(byteCount: 1024 * (PresenceEvent.Limits.fieldBytes + EventCodec.maxConnIdentityBytes), alignment: 8)
        defer { keys.deallocate() }
        var pending: [(offset: Int, userLength: Int, length: Int, user: UInt64, connection: UInt64)] = []
        func number() throws {
            guard intern else { return }
            // In chunks of 1,024 records, so that the lines the prefetches bring in are still cached when
            // the lookups need them.
            try buffer.withRecordViews(firstOffset: 0) { all in
                for chunk in stride(from: 0, to: all.count, by: 1024) {
                    pending.removeAll(keepingCapacity: true)
                    var used = 0
                    for record in all[chunk..<min(all.count, chunk + 1024)] {
                        guard let value = record.value, let user = record.key, let userBase = user.baseAddress else { continue }
                        let view = try EventCodec.view(value)
                        let key = keys + used
                        key.copyMemory(from: userBase, byteCount: user.count)
                        let length = user.count + view.writeConnIdentity(to: key + user.count)
                        let item = (used, user.count, length, keyHash(key, user.count), keyHash(key, length))
                        users.prefetch(hash: item.3)
                        connections.prefetch(hash: item.4)
                        pending.append(item)
                        used += length
                    }
                    for item in pending {
                        _ = users.number(keys + item.offset, item.userLength, hash: item.user)
                        _ = connections.number(keys + item.offset, item.length, hash: item.connection)
                    }
                }
            }
        }
        let start = seconds()
        try input.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else { return }
            var position = 0
            while position < raw.count {
                let end = memchr(base + position, 10, raw.count - position).map { UnsafeRawPointer($0) - base } ?? raw.count
                if (try? parser.append(UnsafeRawBufferPointer(start: base + position, count: end - position), to: &buffer)) != nil { events += 1 }
                if buffer.count >= 16_384 {
                    try number()
                    buffer.removeAll()
                }
                position = end + 1
            }
            try number()
        }
        let elapsed = seconds() - start
        return (events, elapsed, users.count, connections.count)
    }
}
