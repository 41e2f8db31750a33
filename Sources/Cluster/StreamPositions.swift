import Foundation
import SegmentLog

/// Where a local log stands in the stream it materializes: after every message, the message's stream
/// sequence and the local log's end offset after it, appended to a small file beside the log (16 bytes
/// an entry: u64 sequence, i64 end offset, little-endian).
///
/// At start the node looks up the local log's end among the entries (`sequence(at:)`) and goes on from
/// that sequence. The entries are not fsynced: a kill -9 keeps them (the page cache does), a power loss
/// may lose the newest, and then an older entry still matches the log's end if the log lost as much;
/// when none does, the local log is rebuilt from the stream (it is a cache of it).
public final class StreamPositions: @unchecked Sendable {
    // @unchecked: `file` and `end` are touched only under `lock` after init.
    public let path: String
    private let lock = NSLock()
    private let file: File
    private var end: Int64

    static let entryBytes = 16
    /// Past this size the file is rewritten with its newest entries when opened.
    static let compactAt: Int64 = 16 << 20
    static let keptOnCompaction = 4096

    /// Opens (creating) the file to note positions after what it holds; a large one is compacted first.
    public init(path: String) throws(LogError) {
        self.path = path
        if let size = FileSystem.size(path), size > Self.compactAt {
            let entries = try Self.entries(path: path)
            let writer = try AtomicFileWriter(path: path)
            var bytes: [UInt8] = []
            for entry in entries.suffix(Self.keptOnCompaction) { Self.append(entry, to: &bytes) }
            try Self.withBytes(bytes) { buffer throws(LogError) in try writer.write(buffer) }
            try writer.commit()
        }
        file = try File.openForWriting(path, create: true)
        // A torn last entry (a crash mid-write) is written over.
        end = try file.size() / Int64(Self.entryBytes) * Int64(Self.entryBytes)
    }

    /// Notes that the local log ends at `endOffset` once message `sequence` is materialized.
    public func note(sequence: UInt64, endOffset: Int64) throws(LogError) {
        var bytes: [UInt8] = []
        Self.append((sequence, endOffset), to: &bytes)
        lock.lock()
        defer { lock.unlock() }
        try Self.withBytes(bytes) { buffer throws(LogError) in try file.write(buffer, at: end) }
        end += Int64(Self.entryBytes)
    }

    /// The stream sequence after which a local log of `endOffset` records stands: 0 for an empty log,
    /// nil when no entry matches (the log must be rebuilt). The newest matching entry wins.
    public static func sequence(at endOffset: Int64, path: String) throws(LogError) -> UInt64? {
        guard FileSystem.exists(path) else { return endOffset == 0 ? 0 : nil }
        if let match = try entries(path: path).last(where: { $0.endOffset == endOffset }) { return match.sequence }
        return endOffset == 0 ? 0 : nil
    }

    static func entries(path: String) throws(LogError) -> [(sequence: UInt64, endOffset: Int64)] {
        let bytes = try File.openForReading(path).readAll()
        return stride(from: 0, to: bytes.count - Self.entryBytes + 1, by: Self.entryBytes).map { start in
            bytes.withUnsafeBytes { raw in
                (UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: start, as: UInt64.self)),
                 Int64(littleEndian: raw.loadUnaligned(fromByteOffset: start + 8, as: Int64.self)))
            }
        }
    }

    /// `bytes.withUnsafeBytes` for a body that throws `LogError`.
    private static func withBytes(_ bytes: [UInt8], _ body: (UnsafeRawBufferPointer) throws(LogError) -> Void) throws(LogError) {
        var failure: LogError?
        bytes.withUnsafeBytes { buffer in
            do throws(LogError) { try body(buffer) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    static func append(_ entry: (sequence: UInt64, endOffset: Int64), to bytes: inout [UInt8]) {
        withUnsafeBytes(of: entry.sequence.littleEndian) { bytes.append(contentsOf: $0) }
        withUnsafeBytes(of: entry.endOffset.littleEndian) { bytes.append(contentsOf: $0) }
    }
}
