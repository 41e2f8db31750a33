// presence-gen: a deterministic stream of realistic presence events, as NDJSON on standard output.
//
// Model: device sessions start as a Poisson process; each picks a user by Zipf-like popularity
// (a few users are very active, most rarely connect), one of that user's 1-3 devices, and a
// gateway; it lasts a lognormal time (median 5 min) and then disconnects, unless the device
// vanishes (3%, no disconnect: the gateway's crash or lease handles it). Each session has a fresh
// connection id, or with --reuse-conns the device's own (a device then has many sessions of one id).
// Timestamps carry a small jitter (0-40 ms), so neighbouring events are sometimes slightly out of
// order, as from several gateways. The same arguments always print the same bytes.
//
//   presence-gen --events 10000000 --users 1000000 --seed 42 > stream.ndjson

import Foundation
import Presence

struct Options {
    var events = 1_000_000
    var users = 100_000
    var seed: UInt64 = 42
    var start: Int64 = 1_705_276_800_000  // 2024-01-15T00:00:00Z
    var gateways = 16
    var sessionsPerSecond = 60.0
    var integerTimestamps = false
    /// Connection ids name the device ("u42-phone"), so every session of a device reuses its id.
    var reuseConns = false
    /// Connection ids end in the session's number in hex, never twice the same (the default's four
    /// random digits repeat now and then for a busy user's device).
    var uniqueConns = false
}

/// Prints the usage and exits: on standard output with 0 when it was asked for (--help), on standard
/// error with 64 (bad arguments, as `presence` exits) after a mistake.
func usage(asked: Bool = false) -> Never {
    (asked ? FileHandle.standardOutput : FileHandle.standardError).write(Data("""
        usage: presence-gen [--events N] [--users N] [--seed N] [--start TIME] [--gateways N]
                            [--sessions-per-second R] [--ms] [--reuse-conns | --unique-conns]
          --events N               events to print (default 1000000)
          --users N                distinct users (default 100000)
          --seed N                 random seed (default 42); the same seed prints the same stream
          --start TIME             time of the first session (default 2024-01-15T00:00:00Z)
          --gateways N             gateways gw-1 ... gw-N (default 16)
          --sessions-per-second R  session arrival rate (default 60)
          --ms                     write ts as epoch milliseconds instead of ISO-8601
          --reuse-conns            conn ids name the device (u42-phone): every session of a device
                                   reuses its id, as gateways that key sockets by device do
          --unique-conns           conn ids end in the session's number (never reused), instead of
                                   four random hex digits (which a busy device repeats now and then)
          -h, --help               show this help

        """.utf8))
    exit(asked ? 0 : 64)
}

func parseOptions() -> Options {
    var options = Options()
    var args = CommandLine.arguments.dropFirst()
    func value(_ name: String) -> String {
        guard let v = args.popFirst() else { FileHandle.standardError.write(Data("presence-gen: \(name) needs a value\n".utf8)); usage() }
        return v
    }
    while let arg = args.popFirst() {
        switch arg {
        case "--events": options.events = Int(value(arg)) ?? { usage() }()
        case "--users": options.users = Int(value(arg)) ?? { usage() }()
        case "--seed": options.seed = UInt64(value(arg)) ?? { usage() }()
        case "--start": options.start = Timestamp.parse(value(arg)) ?? { usage() }()
        case "--gateways": options.gateways = Int(value(arg)) ?? { usage() }()
        case "--sessions-per-second": options.sessionsPerSecond = Double(value(arg)) ?? { usage() }()
        case "--ms": options.integerTimestamps = true
        case "--reuse-conns": options.reuseConns = true
        case "--unique-conns": options.uniqueConns = true
        case "-h", "--help": usage(asked: true)
        default:
            FileHandle.standardError.write(Data("presence-gen: unknown argument \(arg)\n".utf8))
            usage()
        }
    }
    guard options.events > 0, options.users > 0, options.gateways > 0, options.sessionsPerSecond > 0 else { usage() }
    return options
}

/// xoshiro256** seeded through SplitMix64: fast, and the same on every machine.
struct Random {
    var s: (UInt64, UInt64, UInt64, UInt64)
    init(seed: UInt64) {
        var x = seed
        func splitmix() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s = (splitmix(), splitmix(), splitmix(), splitmix())
    }
    mutating func next() -> UInt64 {
        let result = ((s.1 &* 5) << 7 | (s.1 &* 5) >> 57) &* 9
        let t = s.1 << 17
        s.2 ^= s.0; s.3 ^= s.1; s.1 ^= s.2; s.0 ^= s.3; s.2 ^= t
        s.3 = s.3 << 45 | s.3 >> 19
        return result
    }
    /// Uniform in [0, 1).
    mutating func unit() -> Double { Double(next() >> 11) * 0x1.0p-53 }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    mutating func normal() -> Double {
        let u1 = max(unit(), 1e-300), u2 = unit()
        return (-2 * log(u1)).squareRoot() * cos(2 * .pi * u2)
    }
}

/// A min-heap of pending disconnects, by time.
struct Heap {
    struct Item { var time: Int64; var session: Int }
    var items: [Item] = []
    var isEmpty: Bool { items.isEmpty }
    var top: Item? { items.first }
    mutating func push(_ item: Item) {
        items.append(item)
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            if items[parent].time <= items[i].time { break }
            items.swapAt(parent, i)
            i = parent
        }
    }
    mutating func pop() -> Item? {
        guard let first = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < items.count && items[l].time < items[m].time { m = l }
                if r < items.count && items[r].time < items[m].time { m = r }
                if m == i { break }
                items.swapAt(m, i)
                i = m
            }
        }
        return first
    }
}

/// The generator's whole state; `run` prints the stream.
struct Generator {
    let options: Options
    var random: Random
    /// Zipf-like popularity (exponent 1) over ranks, as a cumulative table.
    var cdf: [Double]
    var total = 0.0
    var sessions: [Int: Session] = [:]
    var nextSession = 0
    /// Sessions started (for --unique-conns).
    var started = 0
    var pending = Heap()
    var out: [UInt8] = []
    var emitted = 0
    var clock: Double

    static let devices = ["phone", "laptop", "tablet", "web"]
    static let hex = Array("0123456789abcdef".utf8)

    struct Session {
        var user: [UInt8]
        var conn: [UInt8]
        var gateway: [UInt8]
    }

    init(options: Options) {
        self.options = options
        random = Random(seed: options.seed)
        cdf = [Double](repeating: 0, count: options.users)
        for rank in 0..<options.users {
            total += 1.0 / Double(rank + 1)
            cdf[rank] = total
        }
        clock = Double(options.start)
        out.reserveCapacity(1 << 22)
    }

    /// A user number: a popularity rank drawn from the table, permuted so ids do not follow popularity.
    mutating func sampleUser() -> Int {
        let target = random.unit() * total
        var low = 0, high = options.users - 1
        while low < high {
            let mid = (low + high) / 2
            if cdf[mid] < target { low = mid + 1 } else { high = mid }
        }
        return Int((UInt64(low) &* 2_654_435_761) % UInt64(options.users))
    }

    mutating func emit(_ kind: EventKind, _ session: Session, at time: Int64) {
        out.append(contentsOf: #"{"type":""#.utf8)
        out.append(contentsOf: kind.name.utf8)
        out.append(contentsOf: #"","user":""#.utf8)
        out.append(contentsOf: session.user)
        out.append(contentsOf: #"","conn":""#.utf8)
        out.append(contentsOf: session.conn)
        out.append(contentsOf: #"","gateway":""#.utf8)
        out.append(contentsOf: session.gateway)
        if options.integerTimestamps {
            out.append(contentsOf: #"","ts":"#.utf8)
            out.append(contentsOf: String(time).utf8)
            out.append(contentsOf: "}\n".utf8)
        } else {
            out.append(contentsOf: #"","ts":""#.utf8)
            Timestamp.append(time, to: &out)
            out.append(contentsOf: "\"}\n".utf8)
        }
        emitted += 1
        if out.count >= 1 << 22 { flush() }
    }

    mutating func flush() {
        FileHandle.standardOutput.write(Data(out))
        out.removeAll(keepingCapacity: true)
    }

    mutating func run() {
        while emitted < options.events {
            // The next session start, and the disconnects due before it.
            clock += -log(max(random.unit(), 1e-300)) / options.sessionsPerSecond * 1000
            let startTime = Int64(clock)
            while let due = pending.top, due.time <= startTime, emitted < options.events {
                _ = pending.pop()
                if let session = sessions.removeValue(forKey: due.session) {
                    emit(.disconnect, session, at: due.time + Int64(random.below(40)))
                }
            }
            guard emitted < options.events else { break }
            let userNumber = sampleUser()
            let user = Array("u\(userNumber)".utf8)
            let deviceCount = 1 + userNumber % 3
            let device = Self.devices[(userNumber / 3 + random.below(deviceCount)) % Self.devices.count]
            var conn = user + Array("-\(device)".utf8)
            if options.uniqueConns {
                conn.append(contentsOf: Array("-\(String(started, radix: 16))".utf8))
                started += 1
            } else if !options.reuseConns {
                conn.append(UInt8(ascii: "-"))
                for _ in 0..<4 { conn.append(Self.hex[random.below(16)]) }
            }
            let gateway = Array("gw-\(1 + random.below(options.gateways))".utf8)
            let session = Session(user: user, conn: conn, gateway: gateway)
            emit(.connect, session, at: startTime + Int64(random.below(40)))
            if random.unit() >= 0.03 {
                // Lognormal length: median 5 minutes, sigma 1.2, at most 12 hours.
                let seconds = min(exp(log(300.0) + 1.2 * random.normal()), 43_200)
                sessions[nextSession] = session
                pending.push(.init(time: startTime + Int64(seconds * 1000), session: nextSession))
                nextSession += 1
            }
        }
        flush()
    }
}

var generator = Generator(options: parseOptions())
generator.run()
