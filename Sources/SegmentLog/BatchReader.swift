import Foundation

/// Reads batches at known places in a log — a segment and byte positions, as `WrittenBatch` or an
/// index of the caller's names them — with as few positioned reads as it can: batches that lie close
/// together are read with one `pread` of the span that holds them. Each batch is checked as
/// `LogReader` checks it (framing, CRC-32C, every record's layout) before its records are handed out.
///
/// Thread-safe: any number of threads read at once (the segment files are opened once and shared; each
/// read takes its own buffers from a small pool). It takes no lock on the log and can read while a
/// writer appends, as long as it is asked only for batches the writer has written.
public final class BatchReader: @unchecked Sendable {
    // @unchecked: `files` and `pool` are touched only under `lock`; a `File` is only read with pread.
    public let directory: String
    public let maxBatchSize: Int
    private let lock = NSLock()
    private var files: [Int64: File] = [:]
    private var pool: [Context] = []

    /// Batches whose starts lie within this many bytes of the previous batch's are read in the same pread.
    public static let coalescingGap: Int64 = 64 << 10
    /// What is read past the last batch's start when its size is not known (most batches are smaller).
    static let tailGuess: Int64 = 16 << 10

    /// A read's buffers: the bytes read and the decoder that unpacks them.
    private final class Context {
        let buffer = ScratchBuffer(capacity: 64 << 10)
        let decoder = RecordBatchDecoder()
    }

    public init(directory: String, maxBatchSize: Int = LogConfiguration().maxBatchSizeOnDisk) {
        self.directory = directory
        self.maxBatchSize = maxBatchSize
    }

    /// Calls `body` with the header and records of the batch at each of `positions` (byte positions in
    /// the segment whose base offset is `segment`), in the order given; positions may repeat (each batch
    /// is read once) and should be ascending for the reads to coalesce. Throws `.corrupt` naming the file
    /// and position when what lies there is not a whole valid batch. The records point into the reader's
    /// buffers and are valid only during the call.
    public func read(segment: Int64, positions: [Int64],
                     _ body: (RecordBatchHeader, UnsafeBufferPointer<RecordView>) throws -> Void) throws {
        guard !positions.isEmpty else { return }
        let file = try self.file(segment)
        let context = take()
        defer { give(context) }
        let buffer = context.buffer
        // The file position of the buffer's first byte; the buffer holds `buffer.count` bytes from there.
        var bufferStart: Int64 = -1
        let fileSize = try file.size()
        /// Makes bytes `start ..< start + count` available in the buffer; returns how many the file has.
        func ensure(_ start: Int64, _ count: Int64, upTo last: Int64) throws(LogError) -> Int {
            if bufferStart >= 0, start >= bufferStart, start + count <= bufferStart + Int64(buffer.count) {
                return Int(count)
            }
            // Read from `start` to past the last batch of this run (the batches ahead are likely in it).
            let end = min(fileSize, max(start + count, last + Self.tailGuess))
            let want = Int(max(0, end - start))
            buffer.count = 0
            buffer.ensureCapacity(want)
            let got = try file.read(into: buffer.pointer, count: want, at: start)
            buffer.count = got
            bufferStart = start
            return min(got, Int(count))
        }
        var done = Set<Int64>()
        var index = 0
        while index < positions.count {
            // A run: positions each within the gap of the one before.
            var runEnd = index + 1
            while runEnd < positions.count, positions[runEnd] >= positions[runEnd - 1],
                  positions[runEnd] - positions[runEnd - 1] <= Self.coalescingGap {
                runEnd += 1
            }
            let last = positions[runEnd - 1]
            for position in positions[index..<runEnd] where done.insert(position).inserted {
                guard position >= 0, position + Int64(RecordBatchHeader.size) <= fileSize else {
                    throw LogError.corrupt(file.path, position: position, "no batch header here (the file has \(fileSize) bytes)")
                }
                _ = try ensure(position, Int64(RecordBatchHeader.size), upTo: last)
                let header = RecordBatchHeader(buffer.pointer + Int(position - bufferStart))
                if let problem = header.structuralProblem(maxBatchSize: maxBatchSize) {
                    throw LogError.corrupt(file.path, position: position, problem)
                }
                let total = Int64(header.totalSize)
                guard try ensure(position, total, upTo: last) == Int(total) else {
                    throw LogError.corrupt(file.path, position: position, "incomplete batch (the file ends inside it)")
                }
                let bytes = UnsafeRawBufferPointer(start: buffer.pointer + Int(position - bufferStart), count: Int(total))
                guard RecordBatchDecoder.crcMatches(bytes, header: header) else {
                    throw LogError.corrupt(file.path, position: position, "batch has a bad CRC")
                }
                let views: UnsafeMutableBufferPointer<RecordView>
                do {
                    views = try context.decoder.decodeRecords(bytes, header: header)
                } catch let error as BatchFormatError {
                    throw LogError.corrupt(file.path, position: position, error.reason)
                }
                try body(header, UnsafeBufferPointer(views))
            }
            index = runEnd
        }
    }

    /// Closes the files of segments that no longer exist (after a writer's recovery cut the log).
    public func forgetFiles() {
        lock.withLock { files.removeAll() }
    }

    private func file(_ segment: Int64) throws(LogError) -> File {
        if let open = lock.withLock({ files[segment] }) { return open }
        let opened = try File.openForReading(Log.logPath(directory, segment))
        return lock.withLock {
            if let raced = files[segment] { return raced }
            files[segment] = opened
            return opened
        }
    }

    private func take() -> Context {
        lock.withLock { pool.popLast() } ?? Context()
    }

    private func give(_ context: Context) {
        lock.withLock { if pool.count < 16 { pool.append(context) } }
    }
}
