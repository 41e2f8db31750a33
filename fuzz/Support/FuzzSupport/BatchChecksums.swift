import CCRC32C

/// Recomputes the CRC-32C of every Kafka RecordBatch in `bytes[start...]` whose length fits the bytes,
/// walking batch to batch: so that a fuzzer's mutations reach the decoder behind the checksum instead
/// of stopping at it. (The CRC covers a batch from its attributes, byte 21, to its end.)
public func fixBatchChecksums(_ bytes: inout [UInt8], from start: Int = 0) {
    var position = start
    while bytes.count - position >= 61 {
        let length = bytes[(position + 8)..<(position + 12)].reduce(0) { $0 << 8 | Int($1) }
        let total = length + 12
        guard length >= 49, total <= bytes.count - position else { return }
        let crc = bytes.withUnsafeBytes { raw in
            presencelog_crc32c(0, raw.baseAddress.map { $0 + position + 21 }, total - 21)
        }
        for i in 0..<4 { bytes[position + 17 + i] = UInt8(truncatingIfNeeded: crc >> (24 - 8 * i)) }
        position += total
    }
}
