import NIOCore
import SegmentLog
import Testing
@testable import Cluster

/// The message a request's records travel in through the cluster's streams: what goes in comes out,
/// and bytes that are not such a message are refused with a reason, never a crash or a huge allocation.
struct RecordBufferCodecTests {
    static func records(_ count: Int, seed: UInt64) -> RecordBuffer {
        var generator = seed
        func next() -> UInt64 {
            generator = generator &* 6364136223846793005 &+ 1442695040888963407
            return generator >> 33
        }
        var records = RecordBuffer()
        for index in 0..<count {
            let key: [UInt8]? = next() % 5 == 0 ? nil : Array("user-\(next() % 1000)".utf8)
            let value = (0..<Int(next() % 300)).map { _ in UInt8(truncatingIfNeeded: next()) }
            records.append(timestamp: Int64(bitPattern: next() << 20) &+ Int64(index), key: key, value: value)
        }
        return records
    }

    static func same(_ a: RecordBuffer, _ b: RecordBuffer) -> Bool {
        guard a.count == b.count else { return false }
        for index in 0..<a.count {
            guard a.timestamp(at: index) == b.timestamp(at: index) else { return false }
            let left = a.withRecord(at: index) { key, value in (key.map(Array.init), Array(value)) }
            let right = b.withRecord(at: index) { key, value in (key.map(Array.init), Array(value)) }
            guard left.0 == right.0, left.1 == right.1 else { return false }
        }
        return true
    }

    @Test(arguments: [0, 1, 2, 130, 1_000])
    func whatIsEncodedDecodesToTheSameRecords(count: Int) throws {
        let records = Self.records(count, seed: UInt64(count) + 7)
        let decoded = try RecordBufferCodec.decode(RecordBufferCodec.encode(records))
        #expect(Self.same(records, decoded))
    }

    @Test(arguments: [1, 130])
    func aVersion1MessageFromAnOlderNodeIsStillRead(count: Int) throws {
        let records = Self.records(count, seed: 11)
        let decoded = try RecordBufferCodec.decodeMessage(RecordBufferCodec.encodeVersion1(records))
        #expect(Self.same(records, decoded.records))
        #expect(decoded.batches == nil)
    }

    @Test func aMessageCarriesItsRecordsAsTheBatchesTheLogWrites() throws {
        let records = Self.records(300, seed: 5)
        let decoded = try RecordBufferCodec.decodeMessage(RecordBufferCodec.encode(records))
        #expect(decoded.batches?.bytes == EncodedBatches(encoding: records).bytes)
        #expect(decoded.batches?.recordCount == 300)
    }

    @Test func anEmptyKeyAndANullKeyStayApart() throws {
        var records = RecordBuffer()
        records.append(timestamp: 1, key: [], value: [1])
        records.append(timestamp: 2, key: nil, value: [2])
        let decoded = try RecordBufferCodec.decode(RecordBufferCodec.encode(records))
        let keys = (0..<2).map { index in decoded.withRecord(at: index) { key, _ in key.map(Array.init) } }
        #expect(keys[0] == [] && keys[1] == nil)
    }

    @Test func everyCutOfAMessageIsRefused() {
        let message = RecordBufferCodec.encode(Self.records(5, seed: 3))
        let bytes = Array(message.readableBytesView)
        for length in 0..<bytes.count {
            #expect(throws: RecordBufferCodec.DecodeError.self, "cut at \(length)") {
                try RecordBufferCodec.decode(ByteBuffer(bytes: bytes[0..<length]))
            }
        }
    }

    @Test func damagedMessagesAreRefusedWithAReason() {
        var trailing = RecordBufferCodec.encode(Self.records(2, seed: 1))
        trailing.writeInteger(UInt8(0))
        let cases: [(String, [UInt8])] = [
            ("another version", [3, 0]),
            ("version 2 claiming a record it does not hold", [2, 1]),
            ("a count no message holds", [1, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F]),
            ("a length past 64 bits", [1] + [UInt8](repeating: 0xFF, count: 11)),
            ("a key longer than the message", [1, 1] + [UInt8](repeating: 0, count: 8) + [1, 0xFF, 0x7F]),
            ("bytes after the last record", Array(trailing.readableBytesView)),
        ]
        for (what, bytes) in cases {
            #expect(throws: RecordBufferCodec.DecodeError.self, "\(what)") { try RecordBufferCodec.decode(ByteBuffer(bytes: bytes)) }
        }
    }
}
