/// Walks the batches of one segment file from a byte position, reading it in large chunks.
///
/// It checks each header's framing (length, magic, record count) and hands out the batch's bytes;
/// the caller decides whether to verify the CRC and decode records. A batch's bytes stay valid
/// until the next call to `next()`.
final class SegmentScanner {
    enum Step {
        /// A whole batch at `position`.
        case batch(RecordBatchHeader, UnsafeRawBufferPointer, position: Int64)
        /// The file ends exactly at a batch boundary.
        case end(position: Int64)
        /// The file ends inside a batch: `bytes` bytes from `position` are a partial batch.
        case incomplete(position: Int64, bytes: Int64)
        /// The header at `position` cannot be a batch.
        case invalid(position: Int64, reason: String)
    }

    let file: File
    let fileSize: Int64
    let maxBatchSize: Int
    private let buffer: ScratchBuffer
    /// The buffer's size (tests: it never grows past what the file holds).
    var bufferCapacity: Int { buffer.capacity }
    /// File position of the buffer's first byte.
    private var bufferStart: Int64
    /// Bytes of the buffer already handed out.
    private var consumed = 0

    init(file: File, from position: Int64, maxBatchSize: Int, chunkSize: Int = 4 << 20) throws(LogError) {
        self.file = file
        self.fileSize = try file.size()
        self.maxBatchSize = maxBatchSize
        // A chunk, or what is left of the file if that is less: a small segment is read whole into a
        // buffer of its size (the active segment of a young log, every segment in the tests and the
        // fuzzer) instead of 4 MiB.
        self.buffer = ScratchBuffer(capacity: Int(min(Int64(chunkSize), max(fileSize - position, 0))))
        self.bufferStart = position
    }

    /// The position of the next batch.
    var position: Int64 { bufferStart + Int64(consumed) }

    /// Makes at least `needed` bytes available after `consumed`, unless the file ends first; returns what is there.
    private func fill(_ needed: Int) throws(LogError) -> Int {
        var available = buffer.count - consumed
        if available >= needed { return available }
        buffer.discardPrefix(consumed)
        bufferStart += Int64(consumed)
        consumed = 0
        buffer.ensureCapacity(needed)
        let fileLeft = fileSize - bufferStart - Int64(buffer.count)
        let room = buffer.capacity - buffer.count
        let want = Int(min(Int64(room), max(fileLeft, 0)))
        if want > 0 {
            let got = try file.read(into: buffer.pointer + buffer.count, count: want, at: bufferStart + Int64(buffer.count))
            buffer.count += got
        }
        available = buffer.count - consumed
        return available
    }

    /// The next step of the walk.
    func next() throws(LogError) -> Step {
        let start = position
        let headerBytes = try fill(RecordBatchHeader.size)
        if headerBytes == 0 { return .end(position: start) }
        if headerBytes < RecordBatchHeader.size { return .incomplete(position: start, bytes: Int64(headerBytes)) }
        let header = RecordBatchHeader(buffer.pointer + consumed)
        if let problem = header.structuralProblem(maxBatchSize: maxBatchSize) {
            return .invalid(position: start, reason: problem)
        }
        let total = header.totalSize
        // A batch longer than the rest of the file is a partial one: known without reading (or making room
        // for) what the header only claims.
        if Int64(total) > fileSize - start { return .incomplete(position: start, bytes: fileSize - start) }
        let available = try fill(total)
        if available < total { return .incomplete(position: start, bytes: Int64(available)) }
        let bytes = UnsafeRawBufferPointer(start: buffer.pointer + consumed, count: total)
        consumed += total
        return .batch(header, bytes, position: start)
    }
}
