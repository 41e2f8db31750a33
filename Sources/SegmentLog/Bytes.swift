// Big-endian loads and stores on raw memory, and Kafka's zig-zag varints.
//
// Every reader here takes the number of bytes that are left and returns nil
// rather than read past them: a segment's bytes are untrusted input.

extension UnsafeRawPointer {
    @inline(__always)
    func loadBigEndian<T: FixedWidthInteger>(at offset: Int, as type: T.Type) -> T {
        T(bigEndian: loadUnaligned(fromByteOffset: offset, as: T.self))
    }
}

extension UnsafeMutableRawPointer {
    /// Copies `count` bytes from `source`, for the few-byte copies of ids made for every event: whole
    /// words, the last one overlapping, or two overlapping halves, never touching a byte outside the
    /// `count` at either end. (`copyMemory` calls `memmove`, which at these sizes costs more than the
    /// copy: the replay's `prepare` spent 7% less time without those calls.) Over 64 bytes it is `copyMemory`.
    @inlinable @inline(__always)
    public func copyShort(from source: UnsafeRawPointer, count: Int) {
        if count >= 8 {
            guard count <= 64 else { return copyMemory(from: source, byteCount: count) }
            var i = 0
            while count - i >= 8 {
                storeBytes(of: source.loadUnaligned(fromByteOffset: i, as: UInt64.self), toByteOffset: i, as: UInt64.self)
                i += 8
            }
            if i < count {
                storeBytes(of: source.loadUnaligned(fromByteOffset: count - 8, as: UInt64.self), toByteOffset: count - 8, as: UInt64.self)
            }
        } else if count >= 4 {
            let first = source.loadUnaligned(as: UInt32.self), last = source.loadUnaligned(fromByteOffset: count - 4, as: UInt32.self)
            storeBytes(of: first, as: UInt32.self)
            storeBytes(of: last, toByteOffset: count - 4, as: UInt32.self)
        } else if count > 0 {
            let first = source.load(as: UInt8.self), middle = source.load(fromByteOffset: count / 2, as: UInt8.self)
            let last = source.load(fromByteOffset: count - 1, as: UInt8.self)
            storeBytes(of: first, as: UInt8.self)
            storeBytes(of: middle, toByteOffset: count / 2, as: UInt8.self)
            storeBytes(of: last, toByteOffset: count - 1, as: UInt8.self)
        }
    }

    @inline(__always)
    func storeBigEndian<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        storeBytes(of: value.bigEndian, toByteOffset: offset, as: T.self)
    }
}

/// Kafka's variable-length integers: zig-zag encoded, 7 bits a byte, least significant group first.
public enum Varint {
    /// The number of bytes `value` takes as a zig-zag varlong.
    @inline(__always)
    public static func size(_ value: Int64) -> Int {
        let zigzag = UInt64(bitPattern: (value << 1) ^ (value >> 63))
        // 1 byte per 7 significant bits, at least one byte.
        let bits = 64 - (zigzag | 1).leadingZeroBitCount
        return (bits + 6) / 7
    }

    /// Writes `value` zig-zag encoded at `pointer`; returns the number of bytes written (1...10).
    @inline(__always)
    public static func write(_ value: Int64, to pointer: UnsafeMutableRawPointer) -> Int {
        writeUnsigned(UInt64(bitPattern: (value << 1) ^ (value >> 63)), to: pointer)
    }

    /// Reads a zig-zag varlong from at most `available` bytes at `pointer`.
    /// Returns the value and the bytes it took, or nil when the bytes end first or it runs over 10 bytes.
    @inlinable @inline(__always)
    public static func read(_ pointer: UnsafeRawPointer, available: Int) -> (value: Int64, length: Int)? {
        if available > 0 {
            let first = pointer.load(as: UInt8.self)
            if first < 0x80 {
                let raw = UInt64(first)
                return (Int64(bitPattern: (raw >> 1) ^ (0 &- (raw & 1))), 1)
            }
        }
        guard let (raw, length) = readUnsigned(pointer, available: available) else { return nil }
        return (Int64(bitPattern: (raw >> 1) ^ (0 &- (raw & 1))), length)
    }

    /// Writes an unsigned LEB128 integer (no zig-zag); returns the bytes written.
    @inline(__always)
    public static func writeUnsigned(_ value: UInt64, to pointer: UnsafeMutableRawPointer) -> Int {
        var rest = value
        var count = 0
        while rest >= 0x80 {
            pointer.storeBytes(of: UInt8(truncatingIfNeeded: rest) | 0x80, toByteOffset: count, as: UInt8.self)
            rest >>= 7
            count += 1
        }
        pointer.storeBytes(of: UInt8(truncatingIfNeeded: rest), toByteOffset: count, as: UInt8.self)
        return count + 1
    }

    /// Reads an unsigned LEB128 integer from at most `available` bytes.
    @inlinable @inline(__always)
    public static func readUnsigned(_ pointer: UnsafeRawPointer, available: Int) -> (value: UInt64, length: Int)? {
        if available > 0 {
            let first = pointer.load(as: UInt8.self)
            if first < 0x80 { return (UInt64(first), 1) }
            if available > 1 {
                let second = pointer.load(fromByteOffset: 1, as: UInt8.self)
                if second < 0x80 { return (UInt64(first & 0x7F) | UInt64(second) << 7, 2) }
            }
        }
        return readUnsignedSlow(pointer, available: available)
    }

    @usableFromInline
    static func readUnsignedSlow(_ pointer: UnsafeRawPointer, available: Int) -> (value: UInt64, length: Int)? {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        var index = 0
        while index < available && index < 10 {
            let byte = pointer.load(fromByteOffset: index, as: UInt8.self)
            result |= UInt64(byte & 0x7F) << shift
            index += 1
            if byte < 0x80 { return (result, index) }
            shift += 7
        }
        return nil
    }
}
