import Foundation
import CCRC32C
import Testing
@testable import SegmentLog

@Suite struct VarintTests {
    @Test func roundTripsExtremesAndSmallValues() {
        let values: [Int64] = [0, 1, -1, 63, -64, 64, 8191, -8192, 8192, Int64(Int32.max), Int64(Int32.min), .max, .min]
        var buffer = [UInt8](repeating: 0, count: 10)
        for value in values {
            let written = buffer.withUnsafeMutableBytes { Varint.write(value, to: $0.baseAddress!) }
            #expect(written == Varint.size(value))
            let read = buffer.withUnsafeBytes { Varint.read($0.baseAddress!, available: written) }
            #expect(read?.value == value)
            #expect(read?.length == written)
        }
    }

    @Test func truncatedVarintReadsAsNil() {
        var buffer = [UInt8](repeating: 0, count: 10)
        let written = buffer.withUnsafeMutableBytes { Varint.write(1 << 40, to: $0.baseAddress!) }
        let read = buffer.withUnsafeBytes { Varint.read($0.baseAddress!, available: written - 1) }
        #expect(read == nil)
        let overlong = [UInt8](repeating: 0xFF, count: 11)
        #expect(overlong.withUnsafeBytes { Varint.read($0.baseAddress!, available: 11) } == nil)
    }
}

/// `copyShort` copies ids for every event with overlapping word loads and stores: it must copy exactly
/// the bytes asked for, at every length and alignment, and leave the bytes around them alone.
@Suite struct CopyShortTests {
    @Test func copiesExactlyTheBytesAskedForAtEveryLengthAndAlignment() {
        let source = (0..<200).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ 7) }
        for count in 0...100 {
            for shift in 0..<8 {
                var target = [UInt8](repeating: 0xEE, count: 120)
                source.withUnsafeBytes { from in
                    target.withUnsafeMutableBytes { to in
                        (to.baseAddress! + 8 + shift).copyShort(from: from.baseAddress! + shift, count: count)
                    }
                }
                let copied = Array(target[(8 + shift)..<(8 + shift + count)]) == Array(source[shift..<(shift + count)])
                let before = target[..<(8 + shift)].allSatisfy { $0 == 0xEE }
                let after = target[(8 + shift + count)...].allSatisfy { $0 == 0xEE }
                #expect(copied && before && after, "count \(count), shift \(shift)")
            }
        }
    }
}

@Suite struct CRC32CTests {
    @Test func matchesTheStandardCheckValue() {
        // The CRC-32C check value from RFC 3720 / the Castagnoli catalogue.
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
    }

    /// Long buffers are checksummed in three interleaved stripes joined at the end: the result must be
    /// the table path's at every length around the stripes' sizes, from any starting checksum.
    @Test func theStripedPathAgreesWithTheTablePath() {
        var random = SystemRandomNumberGenerator()
        let bytes = (0..<(3 * 4096 * 3 + 100)).map { _ in UInt8.random(in: 0...255, using: &random) }
        let lengths = [0, 1, 7, 8, 4095, 12_287, 12_288, 12_289, 12_295, 24_576, 24_583, 36_864, bytes.count]
            + (0..<20).map { _ in Int.random(in: 0...bytes.count, using: &random) }
        bytes.withUnsafeBytes { buffer in
            for length in lengths {
                for start in [UInt32(0), UInt32.random(in: 0...UInt32.max, using: &random)] {
                    let fast = presencelog_crc32c(start, buffer.baseAddress, length)
                    let table = presencelog_crc32c_portable(start, buffer.baseAddress, length)
                    #expect(fast == table, "length \(length), start \(start)")
                }
            }
        }
    }
}

@Suite struct LZ4FrameTests {
    func roundTrip(_ input: [UInt8], level: Int) throws -> [UInt8] {
        let compressor = LZ4Frame.Compressor(level: level)
        var frame = [UInt8](repeating: 0, count: LZ4Frame.bound(input.count))
        let size = input.withUnsafeBytes { source in
            frame.withUnsafeMutableBytes { LZ4Frame.compress(source, to: $0.baseAddress!, with: compressor) }
        }
        frame.removeSubrange(size...)
        let output = ScratchBuffer()
        try frame.withUnsafeBytes { try LZ4Frame.decompress($0, into: output, limit: 1 << 26) }
        return Array(output.bytes)
    }

    @Test(arguments: [0, 4, 9])
    func compressesAndRestoresRepetitiveAndRandomData(level: Int) throws {
        var random = SystemRandomNumberGenerator()
        let noise = (0..<200_000).map { _ in UInt8.random(in: 0...255, using: &random) }
        let text = Array(String(repeating: "{\"type\":\"connect\",\"user\":\"bob\"}\n", count: 5000).utf8)
        for input in [[], [1, 2, 3], noise, text] as [[UInt8]] {
            #expect(try roundTrip(input, level: level) == input)
        }
    }

    @Test func refusesDamagedFramesWithoutCrashing() throws {
        let compressor = LZ4Frame.Compressor(level: 0)
        let input = Array(String(repeating: "abcdefgh", count: 10_000).utf8)
        var frame = [UInt8](repeating: 0, count: LZ4Frame.bound(input.count))
        let size = input.withUnsafeBytes { source in
            frame.withUnsafeMutableBytes { LZ4Frame.compress(source, to: $0.baseAddress!, with: compressor) }
        }
        frame.removeSubrange(size...)
        let output = ScratchBuffer()
        // Every truncation and a flipped byte at every 7th position: an error or the right bytes, never a crash.
        for cut in stride(from: 0, to: frame.count - 1, by: 3) {
            let short = Array(frame[..<cut])
            #expect(throws: LZ4Frame.DecodeError.self) { try short.withUnsafeBytes { try LZ4Frame.decompress($0, into: output, limit: 1 << 26) } }
        }
        for position in stride(from: 0, to: frame.count, by: 7) {
            var damaged = frame
            damaged[position] ^= 0x5A
            do {
                try damaged.withUnsafeBytes { try LZ4Frame.decompress($0, into: output, limit: 1 << 26) }
            } catch {}
        }
        // A limit below the content size is refused.
        #expect(throws: LZ4Frame.DecodeError.self) { try frame.withUnsafeBytes { try LZ4Frame.decompress($0, into: output, limit: 1000) } }
    }
}

@Suite struct RecordBatchTests {
    @Test func encodesKafkaHeaderFieldsAndDecodesEveryRecord() throws {
        var buffer = sampleRecords(0..<100)
        buffer.append(timestamp: 5, key: nil, value: [9, 9])  // an earlier timestamp and a null key
        let encoder = RecordBatchEncoder(compressionLevel: 4)
        let header = encoder.encode(buffer, range: 0..<101, baseOffset: 1000)
        #expect(header.baseOffset == 1000)
        #expect(header.magic == 2)
        #expect(header.codec == 3)
        #expect(header.recordsCount == 101)
        #expect(header.lastOffsetDelta == 100)
        // The base is the midpoint of the smallest and largest timestamps (deltas stay small both ways).
        #expect(header.baseTimestamp == 5 + (1_705_276_800_000 + 99 * 10 - 5 + 1) / 2)
        #expect(header.maxTimestamp == 1_705_276_800_000 + 99 * 10)
        #expect(header.producerId == -1 && header.producerEpoch == -1 && header.baseSequence == -1)
        #expect(header.totalSize == encoder.output.count)
        #expect(RecordBatchDecoder.crcMatches(encoder.output.bytes, header: header))
        var seen: [ReadRecord] = []
        try RecordBatchDecoder().forEachRecord(encoder.output.bytes, header: header) { record in
            seen.append(ReadRecord(offset: record.offset, timestamp: record.timestamp, key: record.key.map { Array($0) }, value: record.value.map { Array($0) }))
        }
        let expected = expectedRecords(0..<100).map { ReadRecord(offset: $0.offset + 1000, timestamp: $0.timestamp, key: $0.key, value: $0.value) }
            + [ReadRecord(offset: 1100, timestamp: 5, key: nil, value: [9, 9])]
        #expect(seen == expected)
    }

    @Test func decodingIntoABufferGivesWhatForEachRecordGives() throws {
        let encoder = RecordBatchEncoder(compressionLevel: 4)
        let header = encoder.encode(sampleRecords(0..<300), range: 0..<300, baseOffset: 77)
        let decoder = RecordBatchDecoder()
        var expected: [ReadRecord] = []
        try decoder.forEachRecord(encoder.output.bytes, header: header) { record in
            expected.append(ReadRecord(offset: record.offset, timestamp: record.timestamp, key: record.key.map { Array($0) }, value: record.value.map { Array($0) }))
        }
        let views = try decoder.decodeRecords(encoder.output.bytes, header: header)
        let decoded = views.map { ReadRecord(offset: $0.offset, timestamp: $0.timestamp, key: $0.key.map { Array($0) }, value: $0.value.map { Array($0) }) }
        #expect(decoded == expected && decoded.count == 300)
    }

    /// A header can claim any record count and still carry a good CRC (a crafted file): the decoder
    /// refuses a count the batch's bytes cannot hold before it sets aside room for the records.
    @Test func aRecordCountTheBytesCannotHoldIsRefused() throws {
        let encoder = RecordBatchEncoder(compressionLevel: 4)
        _ = encoder.encode(sampleRecords(0..<10), range: 0..<10, baseOffset: 0)
        var bytes = Array(encoder.output.bytes)
        bytes.withUnsafeMutableBytes { raw in
            guard let base = raw.baseAddress else { return }
            base.storeBigEndian(Int32.max, at: 57)
            base.storeBigEndian(Int32(Int32.max - 1), at: 23)  // lastOffsetDelta, to keep the header consistent
            let crc = CRC32C.checksum(UnsafeRawBufferPointer(start: base + RecordBatchHeader.crcStart, count: raw.count - RecordBatchHeader.crcStart))
            base.storeBigEndian(crc, at: 17)
        }
        bytes.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else { return }
            let header = RecordBatchHeader(base)
            #expect(header.recordsCount == Int32.max)
            #expect(RecordBatchDecoder.crcMatches(raw, header: header))
            let error = #expect(throws: BatchFormatError.self) { _ = try RecordBatchDecoder().decodeRecords(raw, header: header) }
            #expect(error?.reason.contains("claims 2147483647 records") == true, "\(error?.reason ?? "")")
        }
    }

    /// Found while fixing fuzz-checkpoint's next-offset finding: a base offset near Int64.max (which the
    /// CRC does not cover) overflowed `lastOffset`, and a reader of a segment holding such a batch
    /// trapped. A batch may start at `RecordBatchHeader.maxOffset` at most; past it the header is
    /// corrupt, and the segment reads as corrupt, not as a crash.
    @Test func aBaseOffsetNoLogReachesIsCorruption() throws {
        let encoder = RecordBatchEncoder(compressionLevel: 0)
        for base: Int64 in [.max, .max - 1, RecordBatchHeader.maxOffset + 1] {
            encoder.output.count = 0
            let header = encoder.encode(sampleRecords(0..<5), range: 0..<5, baseOffset: 0)
            var bytes = Array(encoder.output.bytes.prefix(header.totalSize))
            withUnsafeBytes(of: base.bigEndian) { bytes.replaceSubrange(0..<8, with: $0) }
            let crafted = try #require(bytes.withUnsafeBytes { RecordBatchHeader(bytes: $0) })
            #expect(crafted.structuralProblem(maxBatchSize: 1 << 20)?.contains("past any log's end") == true, "base \(base)")
            let dir = Scratch()
            try Data(bytes).write(to: URL(fileURLWithPath: dir.path + "/" + Log.segmentName(0) + ".log"))
            var read = 0
            _ = try? LogReader(directory: dir.path).forEachRecord { _ in read += 1; return true }
            #expect(read == 0, "base \(base)")
            let report = try LogVerifier.verify(directory: dir.path)
            #expect(report.records == 0 && (!report.corruption.isEmpty || report.tornTail != nil), "base \(base)")
        }
        encoder.output.count = 0
        let header = encoder.encode(sampleRecords(0..<5), range: 0..<5, baseOffset: RecordBatchHeader.maxOffset)
        #expect(header.structuralProblem(maxBatchSize: 1 << 20) == nil)
    }

    /// A batch whose records are `records` (LZ4-compressed), claiming `claimed` records, with a good CRC.
    func craftedBatch(records: [UInt8], claimed: Int32) -> [UInt8] {
        var batch = [UInt8](repeating: 0, count: RecordBatchHeader.size + LZ4Frame.bound(records.count))
        let frameSize = records.withUnsafeBytes { source in
            batch.withUnsafeMutableBytes { LZ4Frame.compress(source, to: $0.baseAddress! + RecordBatchHeader.size, with: LZ4Frame.Compressor(level: 0)) }
        }
        batch.removeSubrange((RecordBatchHeader.size + frameSize)...)
        batch.withUnsafeMutableBytes { raw in
            let base = raw.baseAddress!
            base.storeBigEndian(Int32(raw.count - RecordBatchHeader.logOverhead), at: 8)
            base.storeBytes(of: 2, toByteOffset: 16, as: UInt8.self)
            base.storeBigEndian(Int16(3), at: 21)
            base.storeBigEndian(claimed - 1, at: 23)
            base.storeBigEndian(claimed, at: 57)
            base.storeBigEndian(CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[RecordBatchHeader.crcStart...])), at: 17)
        }
        return batch
    }

    /// Found while writing fuzz-record-batch (whose allocation limit is there to catch it): 8 MiB of zeros compress to a 32 KiB batch that may
    /// claim 1.2M records (seven bytes each); room for every claimed record (40 bytes each, 48 MiB) was
    /// set aside before the first one was read. Room now grows with the records that parse.
    @Test func aClaimedRecordCountSizesNoAllocation() throws {
        let zeros = [UInt8](repeating: 0, count: 8 << 20)
        let claimed = Int32(zeros.count / 7)
        let batch = craftedBatch(records: zeros, claimed: claimed)
        #expect(batch.count < 64 << 10)
        let decoder = RecordBatchDecoder()
        try batch.withUnsafeBytes { raw in
            let header = try #require(RecordBatchHeader(bytes: raw))
            #expect(header.structuralProblem(maxBatchSize: 64 << 20) == nil && RecordBatchDecoder.crcMatches(raw, header: header))
            #expect(throws: BatchFormatError.self) { _ = try decoder.decodeRecords(raw, header: header) }
        }
        #expect(decoder.recordCapacity <= 8192, "room for \(decoder.recordCapacity) records")
        // A real batch still decodes whole, past the first room.
        let encoder = RecordBatchEncoder(compressionLevel: 0)
        let header = encoder.encode(sampleRecords(0..<9000), range: 0..<9000, baseOffset: 0)
        #expect(try decoder.decodeRecords(encoder.output.bytes, header: header).count == 9000)
    }

    /// Found with the previous one: an LZ4 frame may declare 4 MiB blocks, and each block reserved that
    /// much; a block cannot decode to more than 255 bytes for each of its own, so that is all the room it gets.
    @Test func aSmallLZ4BlockReservesNoMoreThanItCanDecodeTo() throws {
        // Magic, FLG 0x60, BD 0x70 (4 MiB blocks), header checksum, one 2-byte block: 1 literal, no match.
        var frame: [UInt8] = [0x04, 0x22, 0x4D, 0x18, 0x60, 0x70]
        frame.append(UInt8(truncatingIfNeeded: xxh32([0x60, 0x70]) >> 8))
        frame += [2, 0, 0, 0, 0x10, 0x41, 0, 0, 0, 0]
        let output = ScratchBuffer(capacity: 64)
        try frame.withUnsafeBytes { try LZ4Frame.decompress($0, into: output, limit: 256 << 20) }
        #expect(Array(output.bytes) == [0x41])
        #expect(output.capacity < 4096, "reserved \(output.capacity) bytes")
    }

    @Test func anyFlippedByteFailsTheCRC() {
        let encoder = RecordBatchEncoder(compressionLevel: 0)
        let header = encoder.encode(sampleRecords(0..<50), range: 0..<50, baseOffset: 0)
        var bytes = Array(encoder.output.bytes)
        for position in RecordBatchHeader.crcStart..<bytes.count {
            bytes[position] ^= 0x01
            let matches = bytes.withUnsafeBytes { RecordBatchDecoder.crcMatches($0, header: header) }
            #expect(!matches, "flipping byte \(position) went unnoticed")
            bytes[position] ^= 0x01
        }
    }
}
