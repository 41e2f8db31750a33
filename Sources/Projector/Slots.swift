import CPrefetch

/// The slots of the projection's open-addressing tables (linear probing over 2^k slots).
///
/// A slot is 0 when empty; else it holds its record's index + 1 in its low `indexBits` bits and, above
/// them, the top bits of the record's hash as a tag, so that a probe reads a record only when the
/// tags match. Users' slots are 64-bit words with 32 index bits (32 tag bits). Connections' slots are
/// 32-bit words with as many index bits as the table has slots' bits, since a table of 2^k slots
/// holds at most 2^(k-1) connections: the 16M-slot table of the 10M-event log has 8 tag bits and takes
/// 64 MB instead of 128 MB. (Past 2^24 slots the tag shrinks and more probes read a record; past
/// 2^32 slots, which the `Int32` record indices forbid anyway, there would be none.)
enum Slots {
    /// The slot word of record `index` with `hash`.
    @inline(__always)
    static func entry<Word: FixedWidthInteger & UnsignedInteger>(_ hash: UInt64, index: Int, indexBits: Int) -> Word {
        tag(hash, indexBits: indexBits) << indexBits | Word(truncatingIfNeeded: index + 1)
    }

    @inline(__always)
    static func tag<Word: FixedWidthInteger & UnsignedInteger>(_ hash: UInt64, indexBits: Int) -> Word {
        Word(truncatingIfNeeded: hash >> UInt64(64 - (Word.bitWidth - indexBits)))
    }

    /// Whether a full slot's tag is `hash`'s.
    @inline(__always)
    static func matches<Word: FixedWidthInteger & UnsignedInteger>(_ entry: Word, _ hash: UInt64, indexBits: Int) -> Bool {
        entry >> indexBits == tag(hash, indexBits: indexBits)
    }

    /// The record index a full slot holds.
    @inline(__always)
    static func index<Word: FixedWidthInteger & UnsignedInteger>(_ entry: Word, indexBits: Int) -> Int {
        Int(truncatingIfNeeded: entry & (Word.max >> (Word.bitWidth - indexBits))) - 1
    }

    /// The index in the first slot of `hash`'s probe sequence whose tag matches (a guess to prefetch),
    /// or -1 and the empty slot that ended the sequence: then nothing of this hash is in the table.
    @inline(__always)
    static func probe<Word: FixedWidthInteger & UnsignedInteger>(_ slots: UnsafeBufferPointer<Word>, _ hash: UInt64,
                                                                  indexBits: Int) -> (candidate: Int, empty: Int) {
        let mask = slots.count - 1
        var slot = Int(truncatingIfNeeded: hash) & mask
        while true {
            let entry = slots[slot]
            if entry == 0 { return (-1, slot) }
            if matches(entry, hash, indexBits: indexBits) { return (index(entry, indexBits: indexBits), -1) }
            slot = (slot + 1) & mask
        }
    }

    /// Puts record `index` into the first empty slot of `hash`'s probe sequence.
    @inline(__always)
    static func place<Word: FixedWidthInteger & UnsignedInteger>(_ hash: UInt64, index: Int, in slots: FlatStorage<Word>, indexBits: Int) {
        let mask = slots.count - 1
        var slot = Int(truncatingIfNeeded: hash) & mask
        while slots[slot] != 0 { slot = (slot + 1) & mask }
        slots[slot] = entry(hash, index: index, indexBits: indexBits)
    }

    /// A table of `size` slots holding records `0..<count`. The records' hashes are taken 64 at a time
    /// and their home slots prefetched before they are placed, so that the misses overlap.
    static func rehash<Word: FixedWidthInteger & UnsignedInteger>(_ type: Word.Type, count: Int, size: Int, indexBits: Int,
                                                                  hash: (Int) -> UInt64) -> FlatStorage<Word> {
        let slots = FlatStorage<Word>(capacity: size, count: size)
        let mask = size - 1
        withUnsafeTemporaryAllocation(of: UInt64.self, capacity: 64) { hashes in
            var first = 0
            while first < count {
                let n = min(64, count - first)
                for k in 0..<n {
                    hashes[k] = hash(first + k)
                    presencelog_prefetch(slots.pointer + (Int(truncatingIfNeeded: hashes[k]) & mask))
                }
                for k in 0..<n { place(hashes[k], index: first + k, in: slots, indexBits: indexBits) }
                first += n
            }
        }
        return slots
    }
}
