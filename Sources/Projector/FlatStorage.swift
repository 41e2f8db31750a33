import SegmentLog
import Dispatch
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A growable array of plain values in anonymous memory that asks the kernel for huge pages.
///
/// The projector's tables are large and read at random (every event looks up a connection among
/// millions); with 4 KiB pages nearly every lookup also misses the TLB. `madvise(MADV_HUGEPAGE)` lets
/// the kernel back the region with 2 MiB pages where it can. Fresh memory reads as zero; pages never
/// touched cost no memory.
///
/// Growth: a small table maps a region twice the size and copies. A table past 64 MiB maps its
/// region with room to grow to 64 GiB of address space (`MAP_NORESERVE`: address space, not memory),
/// so from then on growing is free: no copy, and no second set of pages to copy into (the 10M-event
/// replay's peak RSS: 653 → 557 MB). Where the kernel refuses such a mapping (strict overcommit) it
/// falls back to copying.
///
/// Warming: the kernel zero-fills each fresh page on first touch, and for the 10M-event replay's half
/// a gigabyte of tables that was a fifth of the folding thread's time (`clear_page_erms`). A large
/// table therefore asks `PageWarmer` to fault its pages in on another thread shortly before it needs
/// them: the region past `count` as appends approach it, a slot table's whole region when it is made.
/// Faulting in (`MADV_POPULATE_WRITE`) never changes what memory holds.
///
/// Indices are not bounds-checked in release builds: callers index only below `count`.
final class FlatStorage<Element: BitwiseCopyable> {
    private(set) var pointer: UnsafeMutablePointer<Element>
    private(set) var count: Int
    private(set) var capacity: Int
    private var region: UnsafeMutableRawPointer
    private var regionBytes: Int
    /// The elements the mapped region holds (≥ `capacity`): growing up to it costs nothing.
    private var mappedCapacity: Int
    /// Elements below this index have been handed to `PageWarmer`.
    private var warmedEnd = 0
    /// When `count` reaches this, the next stretch is handed over (`Int.max`: not warming).
    private var warmCheck = Int.max

    /// Tables past this size map room to grow in place.
    private static var growInPlaceBytes: Int { 64 << 20 }
    /// The address space such a table maps.
    private static var addressSpaceBytes: Int { 64 << 30 }
    private static var hugePage: Int { 2 << 20 }

    /// Storage for `capacity` elements, of which the first `count` are in use (and zero).
    init(capacity: Int, count: Int = 0) {
        let capacity = max(capacity, 16)
        (region, regionBytes, pointer, mappedCapacity) = Self.map(capacity)
        self.capacity = capacity
        self.count = count
        startWarming()
        if count * MemoryLayout<Element>.stride >= Self.warmWholeBytes {
            PageWarmer.shared.warm(pointer, bytes: count * MemoryLayout<Element>.stride)
        }
    }

    /// Tables made with this many bytes in use (slot tables, filled at random) are warmed whole.
    private static var warmWholeBytes: Int { 16 << 20 }
    /// How far ahead of `count` a table that grows in place is warmed.
    private static var warmAheadBytes: Int { 32 << 20 }

    /// Tables that grow in place warm ahead of their appends.
    private func startWarming() {
        guard mappedCapacity * MemoryLayout<Element>.stride >= Self.growInPlaceBytes else {
            warmCheck = Int.max
            return
        }
        warmedEnd = count
        warmCheck = count
    }

    /// Hands the next stretch past `count` to the warmer.
    private func warmAhead() {
        let stride = MemoryLayout<Element>.stride
        let start = max(warmedEnd, count)
        let end = min(mappedCapacity, start + Self.warmAheadBytes / stride)
        if end > start { PageWarmer.shared.warm(pointer + start, bytes: (end - start) * stride) }
        warmedEnd = end
        warmCheck = end >= mappedCapacity ? Int.max : max(count + 1, end - Self.warmAheadBytes / stride / 2)
    }

    deinit { munmap(region, regionBytes) }

    private static func map(_ capacity: Int) -> (UnsafeMutableRawPointer, Int, UnsafeMutablePointer<Element>, Int) {
        let stride = MemoryLayout<Element>.stride
        let needed = capacity * stride + hugePage
        var bytes = needed
        var region: UnsafeMutableRawPointer?
        if capacity * stride >= growInPlaceBytes {
            bytes = max(addressSpaceBytes, 2 * needed)
            region = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
            if region == MAP_FAILED { region = nil; bytes = needed }
        }
        if region == nil {
            region = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        }
        guard let region, region != MAP_FAILED else {
            preconditionFailure("out of memory: cannot map \(bytes) bytes for the projection")
        }
        // Start on a 2 MiB boundary so that the whole table can live on huge pages.
        let slack = ((Int(bitPattern: region) + hugePage - 1) & ~(hugePage - 1)) - Int(bitPattern: region)
        let start = region + slack
        // Huge pages only for a table of at least one: the first touch of a huge page zeroes all 2 MiB
        // of it, which for the small tables every projection starts with (and every checkpoint load
        // makes before it reads its own) cost more than their lookups gain. Grown past it, a table is
        // mapped anew, with them.
        if capacity * stride >= hugePage { _ = madvise(start, bytes - slack, MADV_HUGEPAGE) }
        let mapped = (bytes - slack) / stride
        return (region, bytes, start.bindMemory(to: Element.self, capacity: mapped), mapped)
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
        if count >= warmCheck { warmAhead() }
        pointer[count] = element
        count += 1
    }

    /// Appends `n` elements and returns the index of the first; they hold what the memory held (zero
    /// when it is fresh): the caller writes them.
    @inline(__always)
    func extend(by n: Int) -> Int {
        if count + n > capacity { grow(to: max(capacity * 2, count + n)) }
        if count >= warmCheck { warmAhead() }
        let first = count
        count += n
        return first
    }

    /// Appends raw bytes (for byte storage).
    @inline(__always)
    func append(bytes: UnsafeRawBufferPointer) where Element == UInt8 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        if count + bytes.count > capacity { grow(to: max(capacity * 2, count + bytes.count)) }
        if count >= warmCheck { warmAhead() }
        UnsafeMutableRawPointer(pointer + count).copyShort(from: base, count: bytes.count)
        count += bytes.count
    }

    /// Empties the storage and makes room for `capacity` elements: appends within it never move it.
    func removeAll(reservingCapacity capacity: Int) {
        count = 0
        if capacity > self.capacity { grow(to: capacity) }
    }

    /// Appends the bytes `write` puts at the end (at most `maximum`) and returns them. `write` returns
    /// their count. The room must have been reserved (`removeAll(reservingCapacity:)`): growing here
    /// would move the bytes handed out before.
    @inline(__always)
    func append(upTo maximum: Int, _ write: (UnsafeMutableRawPointer) -> Int) -> UnsafeRawBufferPointer where Element == UInt8 {
        precondition(count + maximum <= capacity, "append(upTo:) beyond the reserved capacity")
        let start = UnsafeMutableRawPointer(pointer + count)
        let written = write(start)
        count += written
        return UnsafeRawBufferPointer(start: start, count: written)
    }

    private func grow(to newCapacity: Int) {
        if newCapacity <= mappedCapacity {
            capacity = newCapacity
            return
        }
        let (newRegion, newBytes, newPointer, newMapped) = Self.map(newCapacity)
        newPointer.update(from: pointer, count: count)
        munmap(region, regionBytes)
        region = newRegion
        regionBytes = newBytes
        pointer = newPointer
        mappedCapacity = newMapped
        capacity = newCapacity
        startWarming()
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

/// Faults in pages of large tables on a background thread (see `FlatStorage`), one request after another.
final class PageWarmer: Sendable {
    static let shared = PageWarmer()
    private let queue = DispatchQueue(label: "presencelog.page-warmer", qos: .utility)
    /// Off, `warm` does nothing: pages are then zeroed on first touch by the thread that touches them.
    let enabled = Atomic<Bool>(true)

    /// Faults in the pages of `bytes` bytes at `start`, soon, on the warmer's thread. Harmless if the
    /// range has been unmapped by then (the call fails) or holds data (contents are never changed).
    func warm<T>(_ start: UnsafeMutablePointer<T>, bytes: Int) {
        let page = 4096
        let first = Int(bitPattern: start) & ~(page - 1)
        let end = (Int(bitPattern: start) + bytes + page - 1) & ~(page - 1)
        guard end > first, enabled.load(ordering: .relaxed) else { return }
        queue.async {
            _ = madvise(UnsafeMutableRawPointer(bitPattern: first), end - first, MADV_POPULATE_WRITE)
        }
    }
}
