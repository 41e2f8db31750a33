/// A growable block of raw memory, reused across batches so that the hot paths allocate nothing per record.
///
/// Owned by one thread at a time (a commit loop, a reader); it is not `Sendable`.
final class ScratchBuffer {
    private(set) var pointer: UnsafeMutableRawPointer
    private(set) var capacity: Int
    /// Bytes in use, from `pointer`.
    var count: Int = 0

    init(capacity: Int = 1 << 16) {
        self.capacity = max(capacity, 64)
        self.pointer = UnsafeMutableRawPointer.allocate(byteCount: self.capacity, alignment: 16)
    }

    deinit { pointer.deallocate() }

    /// Makes room for `extra` more bytes after `count`, keeping the bytes in use.
    @inline(__always)
    func reserve(_ extra: Int) {
        let needed = count + extra
        if needed > capacity { grow(to: needed) }
    }

    /// Makes the capacity at least `total` bytes, keeping the bytes in use.
    func ensureCapacity(_ total: Int) {
        if total > capacity { grow(to: total) }
    }

    private func grow(to needed: Int) {
        var newCapacity = capacity
        while newCapacity < needed { newCapacity *= 2 }
        let newPointer = UnsafeMutableRawPointer.allocate(byteCount: newCapacity, alignment: 16)
        newPointer.copyMemory(from: pointer, byteCount: count)
        pointer.deallocate()
        pointer = newPointer
        capacity = newCapacity
    }

    /// The bytes in use.
    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: pointer, count: count) }

    /// Drops `prefix` bytes from the front, moving the rest down.
    func discardPrefix(_ prefix: Int) {
        let rest = count - prefix
        if rest > 0 { pointer.copyMemory(from: pointer + prefix, byteCount: rest) }
        count = max(rest, 0)
    }
}
