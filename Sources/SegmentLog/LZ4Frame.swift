import CLZ4

/// The LZ4 frame format (lz4_Frame_format.md, v1.6.x) as Kafka writes it for compression codec 3:
///
///     +-------------+-----+----+----+------------------------------+-----------+
///     | magic (LE)  | FLG | BD | HC | blocks: size (LE u32) + data | end mark  |
///     | 04 22 4D 18 | 60  | 40 | .. | high bit of size = stored    | 00000000  |
///     +-------------+-----+----+----+------------------------------+-----------+
///
/// FLG 0x60: version 01, independent blocks, no block checksum, no content size, no content
/// checksum. BD 0x40: blocks of at most 64 KiB. HC: second byte of XXH32(FLG BD, seed 0).
/// Each block is compressed on its own, by LZ4's fast compressor (`lz4 -1`) or its high-compression
/// one at a chosen level (`LZ4_compress_HC`); both produce ordinary LZ4 blocks that any decoder reads
/// at the same speed. A block that does not shrink is stored as is.
///
/// The decoder also takes the optional fields other writers set (content size, block and content
/// checksums, larger blocks) but not dependent blocks or dictionaries, which Kafka never writes.
enum LZ4Frame {
    static let magic: UInt32 = 0x184D_2204
    static let blockSize = 64 * 1024
    private static let flg: UInt8 = 0x60
    private static let bd: UInt8 = 0x40
    private static let headerChecksum: UInt8 = UInt8(truncatingIfNeeded: xxh32([flg, bd]) >> 8)
    static let headerSize = 7

    /// The most bytes a frame of `sourceSize` bytes can take.
    static func bound(_ sourceSize: Int) -> Int {
        let blocks = max(1, (sourceSize + blockSize - 1) / blockSize)
        return headerSize + blocks * (4 + Int(LZ4_compressBound(Int32(blockSize)))) + 4
    }

    /// Working memory for the compressors, reused from frame to frame.
    final class Compressor {
        /// 0: LZ4 fast (acceleration 1); 1...12: LZ4 HC at that level.
        let level: Int
        private let state: UnsafeMutableRawPointer

        init(level: Int) {
            self.level = min(max(level, 0), 12)
            let size = max(Int(LZ4_sizeofState()), Int(LZ4_sizeofStateHC()))
            state = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 16)
        }

        deinit { state.deallocate() }

        @inline(__always)
        func compressBlock(_ source: UnsafePointer<CChar>, _ destination: UnsafeMutablePointer<CChar>, _ size: Int32, _ capacity: Int32) -> Int32 {
            if level == 0 {
                return LZ4_compress_fast_extState(state, source, destination, size, capacity, 1)
            }
            return LZ4_compress_HC_extStateHC(state, source, destination, size, capacity, Int32(level))
        }
    }

    /// Compresses `source` as one frame written at `destination`, which has room for `bound(source.count)`.
    /// Returns the frame's size.
    static func compress(_ source: UnsafeRawBufferPointer, to destination: UnsafeMutableRawPointer, with compressor: Compressor) -> Int {
        destination.storeBytes(of: magic.littleEndian, as: UInt32.self)
        destination.storeBytes(of: flg, toByteOffset: 4, as: UInt8.self)
        destination.storeBytes(of: bd, toByteOffset: 5, as: UInt8.self)
        destination.storeBytes(of: headerChecksum, toByteOffset: 6, as: UInt8.self)
        var out = headerSize
        var consumed = 0
        let blockBound = Int(LZ4_compressBound(Int32(blockSize)))
        while consumed < source.count, let base = source.baseAddress {
            let chunk = min(blockSize, source.count - consumed)
            let input = (base + consumed).assumingMemoryBound(to: CChar.self)
            let output = (destination + out + 4).assumingMemoryBound(to: CChar.self)
            let written = Int(compressor.compressBlock(input, output, Int32(chunk), Int32(blockBound)))
            if written > 0 && written < chunk {
                destination.storeBytes(of: UInt32(written).littleEndian, toByteOffset: out, as: UInt32.self)
                out += 4 + written
            } else {
                destination.storeBytes(of: (UInt32(chunk) | 0x8000_0000).littleEndian, toByteOffset: out, as: UInt32.self)
                (destination + out + 4).copyMemory(from: base + consumed, byteCount: chunk)
                out += 4 + chunk
            }
            consumed += chunk
        }
        destination.storeBytes(of: UInt32(0), toByteOffset: out, as: UInt32.self)
        return out + 4
    }

    /// Why a frame could not be decoded.
    struct DecodeError: Error {
        let reason: String
    }

    /// Decompresses the frame in `frame` into `output` (replacing what it held), refusing to produce more
    /// than `limit` bytes. The frame must fill `frame` exactly.
    static func decompress(_ frame: UnsafeRawBufferPointer, into output: ScratchBuffer, limit: Int) throws(DecodeError) {
        output.count = 0
        guard let base = frame.baseAddress, frame.count >= 7 else { throw DecodeError(reason: "LZ4 frame is shorter than its header") }
        guard UInt32(littleEndian: base.loadUnaligned(as: UInt32.self)) == magic else {
            throw DecodeError(reason: "LZ4 frame has a bad magic number")
        }
        let flags = base.load(fromByteOffset: 4, as: UInt8.self)
        let descriptor = base.load(fromByteOffset: 5, as: UInt8.self)
        guard flags >> 6 == 1, flags & 0x02 == 0, descriptor & 0x8F == 0 else {
            throw DecodeError(reason: "LZ4 frame header has an unknown version or reserved bits set")
        }
        guard flags & 0x20 != 0 else { throw DecodeError(reason: "LZ4 frame uses dependent blocks, which Kafka never writes") }
        guard flags & 0x01 == 0 else { throw DecodeError(reason: "LZ4 frame needs a dictionary") }
        let hasBlockChecksum = flags & 0x10 != 0
        let hasContentSize = flags & 0x08 != 0
        let hasContentChecksum = flags & 0x04 != 0
        let maxBlock: Int
        switch descriptor >> 4 {
        case 4: maxBlock = 64 << 10
        case 5: maxBlock = 256 << 10
        case 6: maxBlock = 1 << 20
        case 7: maxBlock = 4 << 20
        default: throw DecodeError(reason: "LZ4 frame has an invalid block size code")
        }
        var position = 6 + (hasContentSize ? 8 : 0)
        guard position < frame.count else { throw DecodeError(reason: "LZ4 frame header is cut short") }
        let expectedChecksum = UInt8(truncatingIfNeeded: xxh32(UnsafeRawBufferPointer(start: base + 4, count: position - 4)) >> 8)
        guard base.load(fromByteOffset: position, as: UInt8.self) == expectedChecksum else {
            throw DecodeError(reason: "LZ4 frame header checksum does not match")
        }
        position += 1
        while true {
            guard frame.count - position >= 4 else { throw DecodeError(reason: "LZ4 frame ends inside a block header") }
            let word = UInt32(littleEndian: base.loadUnaligned(fromByteOffset: position, as: UInt32.self))
            position += 4
            if word == 0 { break }
            let stored = word & 0x8000_0000 != 0
            let size = Int(word & 0x7FFF_FFFF)
            guard size <= frame.count - position, size <= maxBlock + 16 else {
                throw DecodeError(reason: "LZ4 block of \(size) bytes runs past the frame")
            }
            guard output.count + (stored ? size : 0) <= limit else { throw DecodeError(reason: "LZ4 frame decompresses past \(limit) bytes") }
            if stored {
                output.reserve(size)
                (output.pointer + output.count).copyMemory(from: base + position, byteCount: size)
                output.count += size
            } else {
                // An LZ4 sequence yields at most 255 bytes for each of its bytes (a match-length byte
                // adds 255), so a block's own size bounds its room, not only the frame's block size.
                let room = min(maxBlock, limit - output.count, 255 * size + 64)
                output.reserve(room)
                let produced = LZ4_decompress_safe(
                    (base + position).assumingMemoryBound(to: CChar.self),
                    (output.pointer + output.count).assumingMemoryBound(to: CChar.self),
                    Int32(size), Int32(room))
                guard produced >= 0 else { throw DecodeError(reason: "LZ4 block is malformed") }
                output.count += Int(produced)
            }
            position += size + (hasBlockChecksum ? 4 : 0)
        }
        if hasContentChecksum { position += 4 }
        guard position == frame.count else {
            throw DecodeError(reason: "LZ4 frame is followed by \(frame.count - position) stray bytes")
        }
    }
}

/// XXH32 with seed 0, for the frame header checksum (a few bytes, so the simple form suffices).
func xxh32(_ bytes: [UInt8]) -> UInt32 {
    bytes.withUnsafeBytes { xxh32($0) }
}

func xxh32(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
    let prime1: UInt32 = 2_654_435_761, prime2: UInt32 = 2_246_822_519, prime3: UInt32 = 3_266_489_917
    let prime4: UInt32 = 668_265_263, prime5: UInt32 = 374_761_393
    precondition(bytes.count < 16, "xxh32 here serves frame headers only")
    var hash = prime5 &+ UInt32(bytes.count)
    var index = 0
    while bytes.count - index >= 4 {
        let word = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: index, as: UInt32.self))
        hash = ((hash &+ word &* prime3) << 17 | (hash &+ word &* prime3) >> 15) &* prime4
        index += 4
    }
    while index < bytes.count {
        let mixed = hash &+ UInt32(bytes[index]) &* prime5
        hash = (mixed << 11 | mixed >> 21) &* prime1
        index += 1
    }
    hash ^= hash >> 15
    hash = hash &* prime2
    hash ^= hash >> 13
    hash = hash &* prime3
    hash ^= hash >> 16
    return hash
}
