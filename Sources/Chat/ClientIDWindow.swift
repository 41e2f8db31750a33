/// The messages posted with a `client_id` within a window of the log's time, so that a sender retrying a
/// message it is not sure was written (a lost answer, a reconnect, a server restart) does not post it
/// twice.
///
/// A message's key is (conversation, sender, client id). Held here is a 64-bit fingerprint of the key
/// with the message's seq and time; a fingerprint that matches is only a candidate, which the store
/// confirms against the message itself (read from its cache or through the message index: sender and
/// client id compared), so two keys that share a fingerprint are told apart and both kept. A key counts
/// while its message's time is no older than the newest time in the log minus `window`: that is a
/// function of the log alone, so the answer is the same before and after a restart (the window's
/// entries are in the store's checkpoint, and rebuilt from the log without one). Older entries are
/// dropped in sweeps; lookups ignore any not yet swept.
struct ClientIDWindow {
    struct Entry: Sendable, Equatable {
        var seq: UInt32
        var timestamp: Int64
    }

    let window: Int64
    /// The newest record time seen (ms).
    private(set) var newest = Int64.min
    private var entries: [UInt64: Entry] = [:]
    /// Entries whose fingerprint another entry already had (rare: distinct keys, equal fingerprints).
    private var collided: [UInt64: [Entry]] = [:]
    private var sweepAt = 1 << 16

    init(window: Int64) {
        self.window = window
    }

    /// Entries held (some may be past the window, not yet swept).
    var count: Int { entries.count + collided.values.reduce(0) { $0 + $1.count } }

    /// The fingerprint of a key: stable across processes (it is kept in checkpoints).
    static func fingerprint(conversation: UInt32, sender: String, clientID: String) -> UInt64 {
        var hash = StableHash()
        hash.add(conversation)
        hash.add(UInt32(truncatingIfNeeded: sender.utf8.count))
        hash.add(sender.utf8)
        hash.add(clientID.utf8)
        return hash.value
    }

    /// Moves the window's end on to `timestamp` if it is newer (every record of the log counts).
    mutating func observe(_ timestamp: Int64) {
        if timestamp > newest { newest = timestamp }
    }

    /// The oldest time that still counts.
    var cutoff: Int64 { newest == Int64.min ? Int64.min : newest &- window }

    /// Records a message posted with a client id.
    mutating func record(_ fingerprint: UInt64, _ entry: Entry) {
        observe(entry.timestamp)
        if entries[fingerprint] == nil {
            entries[fingerprint] = entry
        } else {
            collided[fingerprint, default: []].append(entry)
        }
        if entries.count >= sweepAt {
            sweep()
            sweepAt = max(1 << 16, entries.count * 2)
        }
    }

    /// The messages that may be the one with this fingerprint, within the window, oldest first.
    func candidates(_ fingerprint: UInt64) -> [Entry] {
        guard let first = entries[fingerprint] else { return [] }
        let all = [first] + (collided[fingerprint] ?? [])
        return all.filter { $0.timestamp >= cutoff }
    }

    /// Drops the entries past the window.
    mutating func sweep() {
        let cutoff = self.cutoff
        entries = entries.filter { $0.value.timestamp >= cutoff }
        var kept: [UInt64: [Entry]] = [:]
        for (fingerprint, list) in collided {
            var list = list.filter { $0.timestamp >= cutoff }
            guard !list.isEmpty else { continue }
            if entries[fingerprint] == nil { entries[fingerprint] = list.removeFirst() }
            if !list.isEmpty { kept[fingerprint] = list }
        }
        collided = kept
    }

    /// Every entry within the window, in a stable order (for checkpoints and comparisons).
    var all: [(fingerprint: UInt64, entry: Entry)] {
        var out: [(fingerprint: UInt64, entry: Entry)] = []
        let cutoff = self.cutoff
        for (fingerprint, entry) in entries where entry.timestamp >= cutoff { out.append((fingerprint, entry)) }
        for (fingerprint, list) in collided {
            for entry in list where entry.timestamp >= cutoff { out.append((fingerprint, entry)) }
        }
        return out.sorted { ($0.entry.timestamp, $0.fingerprint, $0.entry.seq) < ($1.entry.timestamp, $1.fingerprint, $1.entry.seq) }
    }
}
