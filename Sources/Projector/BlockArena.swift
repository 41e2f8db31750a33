import SegmentLog

/// Blocks of plain values in one `FlatStorage`, of power-of-two sizes from `smallest`: a block let go
/// waits on a free list of its size for the next one asked of that size, so memory is reused rather
/// than freshly faulted in. For the projector's key histories, which grow by doubling their block.
struct BlockArena<Element: BitwiseCopyable> {
    private(set) var storage: FlatStorage<Element>
    /// First indices of the free blocks, by size class (class k holds blocks of `smallest << k`).
    private(set) var free: [[Int]] = []
    let smallest: Int

    init(smallest: Int, capacity: Int = 1 << 12) {
        precondition(smallest > 0 && smallest & (smallest - 1) == 0, "block sizes are powers of two")
        self.smallest = smallest
        storage = FlatStorage<Element>(capacity: capacity)
    }

    /// The size class of a block of `capacity` elements.
    @inline(__always)
    private func sizeClass(_ capacity: Int) -> Int {
        (capacity / smallest).trailingZeroBitCount
    }

    /// The first index of a block of `capacity` elements (a power of two, at least `smallest`); what it
    /// holds is left from before.
    @inline(__always)
    mutating func allocate(_ capacity: Int) -> Int {
        let k = sizeClass(capacity)
        if k < free.count, let first = free[k].popLast() { return first }
        return storage.extend(by: capacity)
    }

    /// Lets the block at `first` of `capacity` elements go.
    mutating func release(_ first: Int, _ capacity: Int) {
        let k = sizeClass(capacity)
        while free.count <= k { free.append([]) }
        free[k].append(first)
    }

    /// The block at `first`, `count` elements long.
    @inline(__always)
    func block(_ first: Int, count: Int) -> UnsafeMutableBufferPointer<Element> {
        UnsafeMutableBufferPointer(start: storage.pointer + first, count: count)
    }

    /// Whether a block of `capacity` from `first` lies inside the arena and has a size it hands out.
    func isValidBlock(_ first: Int, _ capacity: Int) -> Bool {
        capacity >= smallest && capacity & (capacity - 1) == 0 && first >= 0 && first <= storage.count - capacity
    }

    var bytesInUse: Int { storage.bytesInUse }

    // MARK: Checkpoints

    /// Writes the elements and the free lists.
    func encode(to sink: (UnsafeRawBufferPointer) throws -> Void, put: (UInt64) throws -> Void,
                putStorage: (FlatStorage<Element>) throws -> Void) rethrows {
        try putStorage(storage)
        try put(UInt64(free.count))
        for blocks in free {
            try put(UInt64(blocks.count))
            for first in blocks { try put(UInt64(first)) }
        }
    }

    /// Reads what `encode` wrote, checking every free block lies inside the arena.
    init(smallest: Int, storage: FlatStorage<Element>, reader: CheckpointReader) throws {
        self.smallest = smallest
        self.storage = storage
        let classes = try reader.int()
        guard classes >= 0, classes <= 40 else { throw LogError(.corrupt, "checkpoint's free blocks are out of range") }
        for k in 0..<classes {
            let count = try reader.int()
            guard count >= 0, count <= reader.remaining / 8 else { throw LogError(.corrupt, "checkpoint is cut short") }
            var blocks: [Int] = []
            blocks.reserveCapacity(count)
            for _ in 0..<count {
                let first = Int(truncatingIfNeeded: try reader.u64())
                guard isValidBlock(first, smallest << k) else { throw LogError(.corrupt, "checkpoint's free block at \(first) is outside its table") }
                blocks.append(first)
            }
            free.append(blocks)
        }
    }
}
