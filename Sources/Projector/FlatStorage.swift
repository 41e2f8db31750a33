#if canImport(Glibc)
import Glibc
#endif

/// A growable array of plain values in anonymous memory that asks the kernel for huge pages.
///
/// The projector's tables are large and read at random (every event looks up a connection among
/// millions); with 4 KiB pages nearly every lookup also misses the TLB. `madvise(MADV_HUGEPAGE)` lets
/// the kernel back the region with 2 MiB pages where it can. Fresh memory reads as zero. Growth maps a
/// region twice the size and copies; pages never touched cost no memory.
///
/// Indices are not bounds-checked in release builds: callers index only below `count`.
final class FlatStorage<Element: BitwiseCopyable> {
    private(set) var pointer: UnsafeMutablePointer<Element>
    private(set) var count: Int
    private(set) var capacity: Int
    private var region: UnsafeMutableRawPointer
    private var regionBytes: Int

    /// Storage for `capacity` elements, of which the first `count` are in use (and zero).
    init(capacity: Int, count: Int = 0) {
        let capacity = max(capacity, 16)
        (region, regionBytes, pointer) = Self.map(capacity)
        self.capacity = capacity
        self.count = count
    }

    deinit { munmap(region, regionBytes) }

    private static func map(_ capacity: Int) -> (UnsafeMutableRawPointer, Int, UnsafeMutablePointer<Element>) {
        let huge = 2 << 20
        let bytes = capacity * MemoryLayout<Element>.stride + huge
        guard let region = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), region != MAP_FAILED else {
            preconditionFailure("out of memory: cannot map \(bytes) bytes for the projection")
        }
        // Start on a 2 MiB boundary so that the whole table can live on huge pages.
        let aligned = (Int(bitPattern: region) + huge - 1) & ~(huge - 1)
        let start = region + (aligned - Int(bitPattern: region))
        _ = madvise(start, bytes - (aligned - Int(bitPattern: region)), MADV_HUGEPAGE)
        return (region, bytes, start.bindMemory(to: Element.self, capacity: capacity))
    }

    @inline(__always)
    subscript(index: Int) -> Element {
        get {
            assert(index >= 0 && index < count, "index \(index) out of 0..<\(count)")
            return pointer[index]
        }
        set {
            assert(index >= 0 && index < count, "index \(index) out of 0..<\(count)")
            pointer[index] = newValue
        }
    }

    @inline(__always)
    func append(_ element: Element) {
        if count == capacity { grow(to: capacity * 2) }
        pointer[count] = element
        count += 1
    }

    /// Appends raw bytes (for byte storage).
    @inline(__always)
    func append(bytes: UnsafeRawBufferPointer) where Element == UInt8 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        if count + bytes.count > capacity { grow(to: max(capacity * 2, count + bytes.count)) }
        UnsafeMutableRawPointer(pointer + count).copyMemory(from: base, byteCount: bytes.count)
        count += bytes.count
    }

    private func grow(to newCapacity: Int) {
        let (newRegion, newBytes, newPointer) = Self.map(newCapacity)
        newPointer.update(from: pointer, count: count)
        munmap(region, regionBytes)
        region = newRegion
        regionBytes = newBytes
        pointer = newPointer
        capacity = newCapacity
    }

    /// Bytes of the elements in use.
    var bytesInUse: Int { count * MemoryLayout<Element>.stride }

    /// The elements in use as raw bytes (for checkpoints).
    var rawBytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: pointer, count: bytesInUse) }

    /// Storage holding `count` elements copied from `bytes` (exactly `count` elements' worth), with room for `capacity`.
    convenience init(copying bytes: UnsafeRawBufferPointer, count: Int, capacity: Int) {
        self.init(capacity: max(capacity, count), count: count)
        if let base = bytes.baseAddress, bytes.count > 0 { UnsafeMutableRawPointer(pointer).copyMemory(from: base, byteCount: bytes.count) }
    }

    var buffer: UnsafeBufferPointer<Element> { UnsafeBufferPointer(start: pointer, count: count) }
}
