import CCRC32C

/// CRC-32C (Castagnoli), the checksum of Kafka's RecordBatch v2.
public enum CRC32C {
    /// The checksum of `bytes`.
    @inline(__always)
    public static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = bytes.baseAddress else { return 0 }
        return presencelog_crc32c(0, base, bytes.count)
    }

    /// The checksum of `bytes`.
    public static func checksum(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0) }
    }

    /// Whether the SSE 4.2 instruction is used (else a slicing-by-8 table).
    public static var usesHardware: Bool { presencelog_crc32c_hardware() != 0 }
}
