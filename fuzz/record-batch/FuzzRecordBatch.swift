import FuzzSupport
import Foundation
import Presence
import SegmentLog

/// Any bytes as a log segment. In memory (the default): the batches one after another as the
/// segment scanner frames them (`RecordBatchHeader.structuralProblem`), the CRC check, and
/// `RecordBatchDecoder` (the LZ4 frame, every record's layout), each record's value through
/// `EventCodec`. With flag 8, the bytes become a real segment file read by `LogReader`, by the verifier
/// `presence audit` runs, and by `Log.open`'s recovery, after which the log must read cleanly. Either
/// gives records or a clear error: never a crash or a hang, and never an allocation that a batch's
/// header claims rather than its bytes hold (runs have a `-malloc_limit_mb`, see fuzz/README.md).
/// Records come out with contiguous offsets.
///
/// Input: `flags`, then (flag 4, files only) two bytes giving the sizes of the offset index (×8) and
/// time index (×12) and their bytes, then the segment. Every batch's CRC is recomputed first (flag 2
/// leaves them as they are), so that mutations reach the decoder instead of stopping at the checksum.
/// Flag 1 marks the log cleanly closed (a bad tail is corruption, not a torn write).
/// `FUZZ_SEGMENT_FILES` (`on`, `off`, `only`) overrides flag 8 for long runs (below).
let folder: String = {
    let path = (ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 }
        ?? (FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : "/tmp")) + "/presence-fuzz-record-batch-\(getpid())"
    try? FileManager.default.removeItem(atPath: path)
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    atexit { try? FileManager.default.removeItem(atPath: folder) }
    return path
}()

func check(_ bytes: [UInt8]) {
    var input = FuzzInput(bytes)
    var flags = input.byte()
    var offsetIndex: [UInt8]?, timeIndex: [UInt8]?
    if flags & 4 != 0 {
        let offsetBytes = input.number(below: 256) * 8, timeBytes = input.number(below: 256) * 12
        let rest = input.rest()
        offsetIndex = Array(rest.prefix(offsetBytes))
        timeIndex = Array(rest.dropFirst(offsetBytes).prefix(timeBytes))
        input = FuzzInput(Array(rest.dropFirst(offsetBytes + timeBytes)))
    }
    var segment = input.rest()
    if filesMode == "only" { flags |= 8 }
    if flags & 2 == 0 { fixBatchChecksums(&segment) }
    guard flags & 8 != 0, filesAllowed else { return decodeInMemory(segment) }

    let fileManager = FileManager.default
    try? fileManager.removeItem(atPath: folder)
    try? fileManager.createDirectory(atPath: folder, withIntermediateDirectories: true)
    let base = folder + "/00000000000000000000"
    _ = fileManager.createFile(atPath: base + ".log", contents: Data(segment))
    if let offsetIndex, let timeIndex {
        _ = fileManager.createFile(atPath: base + ".index", contents: Data(offsetIndex))
        _ = fileManager.createFile(atPath: base + ".timeindex", contents: Data(timeIndex))
    }
    if flags & 1 != 0 { _ = fileManager.createFile(atPath: folder + "/.clean-shutdown", contents: Data()) }

    read()
    _ = try? LogVerifier.verify(directory: folder) { record in
        _ = try? EventCodec.decode(key: record.key, value: record.value, timestamp: record.timestamp)
    }
    // Recovery truncates the segment at its first invalid batch; what is left must read cleanly.
    // (A log marked cleanly closed is trusted as it is, and not recovered.)
    if let log = try? Log.open(directory: folder) {
        try? log.close()
        read(mustSucceed: flags & 1 == 0)
    }
}

/// Whether flag 8 reads real files: a file input costs about a hundred in memory (three readers'
/// buffers, the verifier, recovery), so a long run of the decoder alone sets `FUZZ_SEGMENT_FILES=off`
/// and the files get a run of their own (`FUZZ_SEGMENT_FILES=only`, every input as files).
let filesMode = ProcessInfo.processInfo.environment["FUZZ_SEGMENT_FILES"] ?? "on"
let filesAllowed = filesMode != "off"

/// One decoder for every input, as a reader keeps one for every batch.
nonisolated(unsafe) let decoder = RecordBatchDecoder()

/// The batches of `segment` decoded where they lie, as `LogReader` takes them from its buffer.
func decodeInMemory(_ segment: [UInt8]) {
    segment.withUnsafeBytes { raw in
        guard let base = raw.baseAddress else { return }
        var position = 0
        while let header = RecordBatchHeader(bytes: UnsafeRawBufferPointer(rebasing: raw[position...])),
              header.structuralProblem(maxBatchSize: 64 << 20) == nil, header.totalSize <= raw.count - position {
            let batch = UnsafeRawBufferPointer(start: base + position, count: header.totalSize)
            guard RecordBatchDecoder.crcMatches(batch, header: header),
                  let records = try? decoder.decodeRecords(batch, header: header)
            else { return }
            guard records.count == Int(header.recordsCount) else { fatalError("\(records.count) records of the \(header.recordsCount) claimed") }
            // Offsets increase within the batch's range; an erasure may leave gaps (Kafka's compacted batches).
            var previous = header.baseOffset &- 1
            for (index, record) in records.enumerated() {
                guard record.offset > previous, record.offset <= header.lastOffset else {
                    fatalError("record \(index) has offset \(record.offset), after \(previous), in a batch ending at \(header.lastOffset)")
                }
                previous = record.offset
                _ = try? EventCodec.decode(key: record.key, value: record.value, timestamp: record.timestamp)
            }
            position += header.totalSize
        }
    }
}

/// Reads the whole log: every record from offset 0, then from a time, then batch headers only.
func read(mustSucceed: Bool = false) {
    guard let reader = try? LogReader(directory: folder) else { return }
    var next: Int64 = 0
    do {
        try reader.forEachRecordBatch(from: .offset(0)) { batch in
            for record in batch {
                // In order from 0, gaps allowed (an erasure's).
                guard record.offset >= next else { fatalError("record offset \(record.offset), expected \(next) or later") }
                next = record.offset + 1
                _ = try? EventCodec.decode(key: record.key, value: record.value, timestamp: record.timestamp)
            }
            return true
        }
    } catch {
        if mustSucceed { fatalError("a recovered log fails to read: \(error)") }
    }
    _ = try? reader.forEachRecord(from: .timestamp(1_700_000_000_000)) { _ in true }
    _ = try? reader.forEachBatch(from: .offset(1), verify: true, decode: true) { _ in true }
    _ = try? reader.endOffsetFromHeaders()
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRecordBatch(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    check(fuzzBytes(data, size))
    return 0
}

@main
struct Main {
    static func main() { FuzzRunner.main(fuzzRecordBatch, check) }
}
