// presence-bench dense-fold: what a replay would cost if every record came with dense integer ids.
//
// An experiment for issue 3's one-core target, not a product path. The projector's fold looks up each
// event's connection and user by hashing their byte keys into tables of hundreds of megabytes; the
// issue's C ceiling folds events whose ids are already dense integers. This measures the middle
// design, a sidecar of ids next to each segment (user number, connection number and gateway number
// per record, varint-packed, made once by a replay that has the tables), so that a later replay reads
// the segments as before (CRC, LZ4, framing, value decode) but indexes flat arrays instead of hashing:
//
//   1. untimed: every record's ids are assigned in order of first appearance (Swift dictionaries) and
//      packed into an in-memory sidecar;
//   2. timed: the projector's own replay on one core (`Replay.run(readAhead: false)`), the baseline;
//   3. timed: the log read again and folded with the sidecar's ids into flat arrays (rules 1-5, gateway
//      downs included; the rare re-scan of a user's connections when a late event shrinks their
//      last_seen is left out, which does not happen in a stream without late events), in fresh memory
//      so that first-touch page faults are paid as the real fold pays them.
//
// With --verify-keys each connection's key (user id + identity) is kept in an arena as the projector
// keeps it, and every id from the sidecar is checked against the record's own key before it is used
// (one more cache line an event, prefetched): the price of treating the sidecar as a hint that cannot
// change the state, instead of trusting that the fold which wrote it numbered connections the same way.
//
// With --with-slots (which implies --verify-keys) each new connection is also placed in an open-addressing
// table after a probe that proves it new, as a sidecar used only as a hint would have to do (the live
// server needs that table anyway); its home slot is prefetched with the batch's records.
//
// Prints both rates, their ratio, and whether the two folds agree on users online and open connections.

import CPrefetch
import Foundation
import Presence
import Projector
import SegmentLog

enum DenseFold {
    /// All zeros is "nothing known", so fresh pages need no initializing pass.
    struct Connection {
        var start: Int64 = 0
        var disconnect: Int64 = 0
        var end: Int64 = 0
        var user: Int32 = 0
        var gateway: Int32 = 0
        /// Where the connection's key (user id + identity) sits in the key arena.
        var keyOffset: UInt32 = 0
        var keyLength: UInt16 = 0
        var flags: UInt8 = 0

        static let hasStart: UInt8 = 1, hasDisconnect: UInt8 = 2, hasEnd: UInt8 = 4
        var isOpen: Bool { flags & Self.hasStart != 0 && flags & Self.hasEnd == 0 }
        /// Rule 5's contribution, or nil while open.
        var contribution: Int64? {
            guard flags & Self.hasEnd != 0 else { return nil }
            return flags & Self.hasStart == 0 ? end : max(start, end)
        }
    }

    struct User {
        var lastSeen: Int64 = 0
        var open: Int32 = 0
        var hasLastSeen = false
    }

    static func run(data: String, rounds: Int, verifyKeys: Bool, withSlots: Bool = false) throws {
        let logDirectory = data + "/" + presenceLogName
        let (sidecar, users, connections, gateways) = try makeSidecar(logDirectory)
        print("sidecar: \(sidecar.count) bytes, \(users) users, \(connections) connections, \(gateways) gateways")
        var bestBaseline = 0.0, bestDense = 0.0
        for round in 1...rounds {
            // The order alternates: on this VM a fold that runs right after another has freed its memory
            // gets pages the host has already backed, and runs faster.
            // Each fold's memory is freed before the other runs, so both start from the same place.
            var baseline = 0.0, dense = 0.0
            var replayed = 0
            var expected = (online: 0, open: 0)
            var result = (events: 0, online: 0, open: 0)
            for step in round % 2 == 1 ? [0, 1] : [1, 0] {
                let start = seconds()
                if step == 0 {
                    let projection = PresenceProjection()
                    replayed = try Replay.run(logDirectory: logDirectory, into: projection, readAhead: false).events
                    baseline = seconds() - start
                    expected = (projection.onlineUsers, projection.openConnectionCount)
                } else {
                    result = try fold(logDirectory, sidecar: sidecar, users: users, connections: connections, gateways: gateways, verifyKeys: verifyKeys || withSlots, withSlots: withSlots)
                    dense = seconds() - start
                }
            }
            let (events, online, open) = result
            bestBaseline = max(bestBaseline, Double(replayed) / baseline)
            bestDense = max(bestDense, Double(events) / dense)
            let agree = online == expected.online && open == expected.open
            print("round \(round): replay \(String(format: "%.3f", baseline)) s (\(String(format: "%.2f", Double(replayed) / baseline / 1e6))M events/s), "
                  + "dense-id fold \(String(format: "%.3f", dense)) s (\(String(format: "%.2f", Double(events) / dense / 1e6))M events/s); "
                  + "online \(online) / \(expected.online), open \(open) / \(expected.open): \(agree ? "same state" : "DIFFERENT STATE")")
            guard agree else { exit(1) }
        }
        print("replay on one core: \(String(format: "%.2f", bestBaseline / 1e6))M events/s; with a sidecar of dense ids: "
              + "\(String(format: "%.2f", bestDense / 1e6))M events/s (\(String(format: "%.2f", bestDense / bestBaseline))x; best of \(rounds))")
    }

    /// Assigns ids in order of first appearance and packs them per record: user + 1, connection + 1
    /// (0 for gateway events), gateway, as LEB128 varints.
    static func makeSidecar(_ logDirectory: String) throws -> (sidecar: [UInt8], users: Int, connections: Int, gateways: Int) {
        var users: [[UInt8]: Int] = [:], connections: [[UInt8]: Int] = [:], gateways: [[UInt8]: Int] = [:]
        var sidecar: [UInt8] = []
        sidecar.reserveCapacity(1 << 25)
        func put(_ value: Int) {
            var v = UInt(value)
            while v >= 0x80 { sidecar.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
            sidecar.append(UInt8(v))
        }
        func intern(_ bytes: [UInt8], _ table: inout [[UInt8]: Int]) -> Int {
            if let id = table[bytes] { return id }
            table[bytes] = table.count
            return table.count - 1
        }
        var identity = [UInt8](repeating: 0, count: EventCodec.maxConnIdentityBytes)
        try LogReader(directory: logDirectory).forEachRecordBatch { batch in
            for record in batch {
                guard let value = record.value else { continue }
                let view = try EventCodec.view(value)
                let gateway = intern(Array(view.gateway), &gateways)
                if view.kind.isGatewayEvent {
                    put(0); put(0)
                } else {
                    let user = Array(record.key ?? UnsafeRawBufferPointer(start: nil, count: 0))
                    let count = identity.withUnsafeMutableBytes { out in out.baseAddress.map { view.writeConnIdentity(to: $0) } ?? 0 }
                    put(intern(user, &users) + 1)
                    put(intern(user + identity[..<count], &connections) + 1)
                }
                put(gateway)
            }
            return true
        }
        return (sidecar, users.count, connections.count, gateways.count)
    }

    /// Reads the log and folds it with the sidecar's ids; returns events, users online, open connections.
    static func fold(_ logDirectory: String, sidecar: [UInt8], users userCount: Int, connections connectionCount: Int,
                     gateways gatewayCount: Int, verifyKeys: Bool, withSlots: Bool) throws -> (events: Int, online: Int, open: Int) {
        var slotCount = 1 << 12
        while withSlots && slotCount < connectionCount * 2 { slotCount *= 2 }
        let slotTable = FreshArray<UInt64>(count: withSlots ? slotCount : 1)
        defer { slotTable.free() }
        let slots = slotTable.pointer, mask = slotCount - 1
        var hashes: [UInt64] = []
        let userTable = FreshArray<User>(count: userCount)
        let connectionTable = FreshArray<Connection>(count: connectionCount)
        let arenaTable = FreshArray<UInt8>(count: verifyKeys ? connectionCount * 64 : 1)
        defer { userTable.free(); connectionTable.free(); arenaTable.free() }
        let users = userTable.pointer, connections = connectionTable.pointer, arena = arenaTable.pointer
        var arenaCount = 0
        let key = UnsafeMutableRawPointer.allocate(byteCount: 1024, alignment: 8)
        defer { key.deallocate() }
        var gatewayDowns = [[Int64]](repeating: [], count: gatewayCount)
        var heartbeats = [Int64](repeating: .min, count: gatewayCount)
        var events = 0, online = 0, open = 0
        var seen = 0  // connections seen so far: ids are dense and in order of first appearance

        try sidecar.withUnsafeBufferPointer { ids in
            var position = 0
            @inline(__always) func next() -> Int {
                var value = 0, shift = 0
                while true {
                    let byte = ids[position]
                    position += 1
                    value |= Int(byte & 0x7F) << shift
                    if byte < 0x80 { return value }
                    shift += 7
                }
            }
            @inline(__always) func resolve(_ c: Int, wasOpen: Bool) {
                let connection = connections[c]
                let downs = gatewayDowns[Int(connection.gateway)]
                let resolution = downs.withUnsafeBufferPointer {
                    ConnectionRules.resolve(start: connection.flags & Connection.hasStart != 0 ? connection.start : nil,
                                            disconnect: connection.flags & Connection.hasDisconnect != 0 ? connection.disconnect : nil,
                                            gatewayDowns: $0)
                }
                if let end = resolution.end {
                    connections[c].end = end
                    connections[c].flags |= Connection.hasEnd
                } else {
                    connections[c].flags &= ~Connection.hasEnd
                }
                let u = Int(connection.user)
                if resolution.isOpen != wasOpen {
                    let count = users[u].open + (resolution.isOpen ? 1 : -1)
                    if count == 1 && resolution.isOpen { online += 1 }
                    if count == 0 && !resolution.isOpen { online -= 1 }
                    users[u].open = count
                    open += resolution.isOpen ? 1 : -1
                }
                if let after = connections[c].contribution, !users[u].hasLastSeen || after > users[u].lastSeen {
                    users[u].lastSeen = after
                    users[u].hasLastSeen = true
                }
            }
            // Each batch in two passes: its ids decoded and their records prefetched (the ids are known
            // without any load, which is what dense ids buy), then the events applied in order.
            var batchIDs: [(u: Int, c: Int, g: Int)] = []
            try LogReader(directory: logDirectory).forEachRecordBatch { batch in
                batchIDs.removeAll(keepingCapacity: true)
                for _ in batch {
                    let ids = (u: next() - 1, c: next() - 1, g: next())
                    if ids.c >= 0 {
                        presencelog_prefetch(connections + ids.c)
                        presencelog_prefetch(users + ids.u)
                    }
                    batchIDs.append(ids)
                }
                if withSlots {
                    // New connections: their keys hashed and their home slots prefetched, as an insert
                    // into the hash table the live server needs would (and would check they are new).
                    hashes.removeAll(keepingCapacity: true)
                    var fresh = seen
                    for (i, record) in batch.enumerated() {
                        var h: UInt64 = 0
                        if batchIDs[i].c == fresh, let value = record.value, let user = record.key, let userBase = user.baseAddress {
                            fresh += 1
                            let view = try EventCodec.view(value)
                            key.copyMemory(from: userBase, byteCount: user.count)
                            let length = user.count + view.writeConnIdentity(to: key + user.count)
                            h = keyHash(key, length)
                            presencelog_prefetch(slots + (Int(truncatingIfNeeded: h) & mask))
                        }
                        hashes.append(h)
                    }
                }
                if verifyKeys {
                    // The keys of the connections seen before, as a hint is checked against the record's key.
                    for ids in batchIDs where ids.c >= 0 && ids.c < seen {
                        presencelog_prefetch(arena + Int(connections[ids.c].keyOffset))
                    }
                }
                for (i, record) in batch.enumerated() {
                    guard let value = record.value else { continue }
                    let view = try EventCodec.view(value)
                    let (u, c, g) = batchIDs[i]
                    events += 1
                    let ts = record.timestamp
                    switch view.kind {
                    case .connect, .disconnect:
                        if verifyKeys {
                            guard let user = record.key, let userBase = user.baseAddress else { continue }
                            key.copyMemory(from: userBase, byteCount: user.count)
                            let length = user.count + view.writeConnIdentity(to: key + user.count)
                            if c == seen && withSlots {
                                let h = hashes[i]
                                var slot = Int(truncatingIfNeeded: h) & mask
                                while slots[slot] != 0 {
                                    if slots[slot] >> 32 == h >> 32 {
                                        let other = Int(slots[slot] & 0xFFFF_FFFF) - 1
                                        if Int(connections[other].keyLength) == length && memcmp(arena + Int(connections[other].keyOffset), key, length) == 0 {
                                            fatalError("the sidecar calls the connection at offset \(record.offset) new, but it is connection \(other)")
                                        }
                                    }
                                    slot = (slot + 1) & mask
                                }
                                slots[slot] = (h >> 32) << 32 | UInt64(c + 1)
                            }
                            if c == seen {
                                connections[c].keyOffset = UInt32(arenaCount)
                                connections[c].keyLength = UInt16(length)
                                UnsafeMutableRawPointer(arena + arenaCount).copyMemory(from: key, byteCount: length)
                                arenaCount += length
                            } else if Int(connections[c].keyLength) != length || memcmp(arena + Int(connections[c].keyOffset), key, length) != 0 {
                                fatalError("the sidecar's id for the record at offset \(record.offset) names another connection")
                            }
                        }
                        if c == seen {
                            seen += 1
                            connections[c].user = Int32(u)
                            connections[c].gateway = Int32(g)
                        }
                        let current = connections[c]
                        let wasOpen = current.isOpen
                        if view.kind == .connect {
                            guard current.flags & Connection.hasStart == 0 || ts < current.start else { continue }
                            connections[c].start = ts
                            connections[c].flags |= Connection.hasStart
                            connections[c].gateway = Int32(g)
                        } else {
                            guard current.flags & Connection.hasDisconnect == 0 || ts > current.disconnect else { continue }
                            connections[c].disconnect = ts
                            connections[c].flags |= Connection.hasDisconnect
                        }
                        resolve(c, wasOpen: wasOpen)
                    case .gatewayDown:
                        var downs = gatewayDowns[g]
                        guard !downs.contains(ts) else { continue }
                        downs.append(ts)
                        downs.sort()
                        gatewayDowns[g] = downs
                        for c in 0..<seen where connections[c].gateway == Int32(g) {
                            let connection = connections[c]
                            guard connection.flags & Connection.hasStart != 0, connection.start <= ts,
                                  connection.flags & Connection.hasEnd == 0 || connection.end > ts else { continue }
                            resolve(c, wasOpen: connection.isOpen)
                        }
                    case .heartbeat:
                        heartbeats[g] = max(heartbeats[g], ts)
                    }
                }
                return true
            }
        }
        return (events, online, open)
    }
}

/// A 64-bit hash of `count` bytes (never 0), for the experiments' own tables.
@inline(__always)
func keyHash(_ bytes: UnsafeRawPointer, _ count: Int) -> UInt64 {
    var h: UInt64 = 0x9E37_79B9_7F4A_7C15 ^ UInt64(count)
    var i = 0
    while count - i >= 8 {
        h = (h ^ bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self)) &* 0xFF51_AFD7_ED55_8CCD
        h ^= h >> 29
        i += 8
    }
    var tail: UInt64 = 0
    while i < count { tail = tail << 8 | UInt64(bytes.load(fromByteOffset: i, as: UInt8.self)); i += 1 }
    h = (h ^ tail) &* 0xC4CE_B9FE_1A85_EC53
    return (h ^ (h >> 32)) | 1
}

/// An array in fresh anonymous memory on huge pages, as the projector's tables are: untouched pages
/// cost nothing until first written, and then the kernel's zeroing.
final class FreshArray<Element> {
    let pointer: UnsafeMutablePointer<Element>
    private let bytes: Int

    init(count: Int) {
        bytes = max(1, count * MemoryLayout<Element>.stride + (2 << 20))
        guard let region = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
              region != MAP_FAILED else { fatalError("mmap of \(bytes) bytes failed") }
        _ = madvise(region, bytes, MADV_HUGEPAGE)
        // Zero bytes are each element's "nothing known" (see DenseFold.Connection).
        pointer = region.bindMemory(to: Element.self, capacity: count)
    }

    func free() { munmap(pointer, bytes) }
}
