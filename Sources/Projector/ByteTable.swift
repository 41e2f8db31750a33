/// Interns byte strings (or pairs of byte strings) to dense indices 0, 1, 2, ...: an open-addressing
/// hash table over an arena, so that looking up a user or a connection allocates nothing.
///
///     slots:    [index + 1 or 0]   linear probing, load factor <= 1/2
///     hashes:   per index, the 64-bit hash (to skip most byte comparisons and to rehash)
///     arena:    per index, its bytes at offsets[index] ..< offsets[index + 1]
struct ByteTable {
    private var slots: [UInt32]
    private var mask: Int
    private(set) var hashes: [UInt64] = []
    private(set) var offsets: [UInt32] = [0]
    private(set) var arena: [UInt8] = []

    init(capacity: Int = 1024) {
        var size = 16
        while size < capacity * 2 { size <<= 1 }
        slots = [UInt32](repeating: 0, count: size)
        mask = size - 1
    }

    /// The number of strings interned.
    var count: Int { hashes.count }

    /// Bytes of memory held (capacity, not just use).
    var memoryBytes: Int {
        slots.capacity * 4 + hashes.capacity * 8 + offsets.capacity * 4 + arena.capacity
    }

    /// The bytes of string `index`.
    func bytes(_ index: Int) -> ArraySlice<UInt8> {
        arena[Int(offsets[index])..<Int(offsets[index + 1])]
    }

    /// The index of `first ++ second`, inserting it when new. `hash` must be `ByteTable.hash(first, second)`.
    @inline(__always)
    mutating func intern(_ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer, hash: UInt64) -> (index: Int, inserted: Bool) {
        var slot = Int(truncatingIfNeeded: hash) & mask
        let length = first.count + second.count
        while true {
            let entry = slots[slot]
            if entry == 0 { break }
            let index = Int(entry - 1)
            if hashes[index] == hash {
                let start = Int(offsets[index]), end = Int(offsets[index + 1])
                if end - start == length && matches(start, first, second) { return (index, false) }
            }
            slot = (slot + 1) & mask
        }
        let index = hashes.count
        hashes.append(hash)
        arena.append(contentsOf: first)
        arena.append(contentsOf: second)
        offsets.append(UInt32(arena.count))
        slots[slot] = UInt32(index + 1)
        if hashes.count * 2 > slots.count { grow() }
        return (index, true)
    }

    /// The index of `first ++ second`, if interned.
    @inline(__always)
    func find(_ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer, hash: UInt64) -> Int? {
        var slot = Int(truncatingIfNeeded: hash) & mask
        let length = first.count + second.count
        while true {
            let entry = slots[slot]
            if entry == 0 { return nil }
            let index = Int(entry - 1)
            if hashes[index] == hash {
                let start = Int(offsets[index]), end = Int(offsets[index + 1])
                if end - start == length && matches(start, first, second) { return index }
            }
            slot = (slot + 1) & mask
        }
    }

    @inline(__always)
    private func matches(_ start: Int, _ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer) -> Bool {
        arena.withUnsafeBytes { arena in
            guard let base = arena.baseAddress else { return first.isEmpty && second.isEmpty }
            if let f = first.baseAddress, first.count > 0, memcmp(base + start, f, first.count) != 0 { return false }
            if let s = second.baseAddress, second.count > 0, memcmp(base + start + first.count, s, second.count) != 0 { return false }
            return true
        }
    }

    private mutating func grow() {
        let size = slots.count * 2
        slots = [UInt32](repeating: 0, count: size)
        mask = size - 1
        for (index, hash) in hashes.enumerated() {
            var slot = Int(truncatingIfNeeded: hash) & mask
            while slots[slot] != 0 { slot = (slot + 1) & mask }
            slots[slot] = UInt32(index + 1)
        }
    }

    /// `hash(first, empty)` in two steps: `prefix(first)` mixes the bytes, `finish(prefix:)` ends it. A
    /// caller that also hashes more after `first` seeds that with the prefix, so the two hashes need not
    /// wait for each other.
    @inline(__always)
    static func prefix(_ first: UnsafeRawBufferPointer) -> UInt64 {
        mix(0x9E37_79B9_7F4A_7C15 &* UInt64(first.count &+ 1), first)
    }

    @inline(__always)
    static func finish(prefix: UInt64) -> UInt64 {
        finish(prefix ^ 0xA076_1D64_78BD_642F)
    }

    /// A 64-bit hash of `first ++ second` (with the split point mixed in), eight bytes at a time;
    /// `seed` makes it depend on something else as well (a connection's on its user id's `prefix`).
    @inline(__always)
    static func hash(_ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer, seed: UInt64 = 0) -> UInt64 {
        finish(mix(mix(seed ^ (0x9E37_79B9_7F4A_7C15 &* UInt64(first.count &+ 1)), first) ^ 0xA076_1D64_78BD_642F, second))
    }

    @inline(__always)
    private static func finish(_ value: UInt64) -> UInt64 {
        // Half of MurmurHash3's fmix64: the mixing steps before already multiplied every word in, so
        // one more multiply spreads the high bits and the shift brings them down to the slot bits.
        var h = value
        h ^= h >> 33
        h = h &* 0xFF51_AFD7_ED55_8CCD
        h ^= h >> 33
        return h
    }

    @inline(__always)
    private static func mix(_ seed: UInt64, _ bytes: UnsafeRawBufferPointer) -> UInt64 {
        guard let base = bytes.baseAddress else { return seed }
        var h = seed
        var i = 0
        let n = bytes.count
        while n - i >= 8 {
            h = (h ^ base.loadUnaligned(fromByteOffset: i, as: UInt64.self)) &* 0x87C3_7B91_1142_53D5
            h = (h << 31) | (h >> 33)
            i += 8
        }
        if i < n {
            // The last 1-7 bytes, with the count mixed in.
            h = (h ^ word(base, from: i, to: n) ^ (UInt64(n) << 56)) &* 0x4CF5_AD43_2745_937F
        }
        return h
    }

    /// Bytes `i ..< n` at `base` (1 to 8 of them) as one word, read in at most two loads that stay
    /// inside `0 ..< n`: the last eight bytes shifted when there are eight; else two overlapping
    /// four-byte loads (4-7 bytes) or the first, middle and last byte (1-3). One-to-one for a given
    /// count (which callers mix in), not the bytes' plain little-endian value.
    @inline(__always)
    static func word(_ base: UnsafeRawPointer, from i: Int, to n: Int) -> UInt64 {
        let rest = n - i
        if n >= 8 {
            return base.loadUnaligned(fromByteOffset: n - 8, as: UInt64.self) >> UInt64(8 * (8 - rest))
        }
        if rest >= 4 {
            return UInt64(base.loadUnaligned(fromByteOffset: i, as: UInt32.self))
                | UInt64(base.loadUnaligned(fromByteOffset: n - 4, as: UInt32.self)) << 32
        }
        return UInt64(base.load(fromByteOffset: i, as: UInt8.self))
            | UInt64(base.load(fromByteOffset: i + rest / 2, as: UInt8.self)) << 8
            | UInt64(base.load(fromByteOffset: n - 1, as: UInt8.self)) << 16
    }
}

#if canImport(Glibc)
import Glibc
#endif
