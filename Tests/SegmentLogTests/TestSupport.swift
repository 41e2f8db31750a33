import Foundation
@_exported import TestSupport
@testable import SegmentLog

/// Records with predictable keys, values and timestamps: record i has key "user-(i % 97)",
/// value "value-i" and timestamp base + i * step.
func sampleRecords(_ range: Range<Int>, base: Int64 = 1_705_276_800_000, step: Int64 = 10) -> RecordBuffer {
    var buffer = RecordBuffer()
    for i in range {
        buffer.append(timestamp: base + Int64(i) * step, key: Array("user-\(i % 97)".utf8), value: Array("value-\(i)".utf8))
    }
    return buffer
}

struct ReadRecord: Equatable {
    let offset: Int64
    let timestamp: Int64
    let key: [UInt8]?
    let value: [UInt8]?
}

/// Every record of the log in `directory` from `start`.
func readAll(_ directory: String, from start: LogReader.Start = .offset(0)) throws -> (records: [ReadRecord], summary: LogReader.ReadSummary) {
    let reader = try LogReader(directory: directory)
    var records: [ReadRecord] = []
    let summary = try reader.forEachRecord(from: start) { record in
        records.append(ReadRecord(offset: record.offset, timestamp: record.timestamp,
                                  key: record.key.map { Array($0) }, value: record.value.map { Array($0) }))
        return true
    }
    return (records, summary)
}

func expectedRecords(_ range: Range<Int>, base: Int64 = 1_705_276_800_000, step: Int64 = 10) -> [ReadRecord] {
    range.map { i in
        ReadRecord(offset: Int64(i), timestamp: base + Int64(i) * step, key: Array("user-\(i % 97)".utf8), value: Array("value-\(i)".utf8))
    }
}

/// Flips one byte of a file in place.
func flipByte(_ path: String, at position: Int) throws {
    let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
    defer { try? handle.close() }
    try handle.seek(toOffset: UInt64(position))
    let byte = try handle.read(upToCount: 1) ?? Data([0])
    try handle.seek(toOffset: UInt64(position))
    try handle.write(contentsOf: Data([byte[0] ^ 0xFF]))
}

/// Appends raw bytes to a file.
func appendBytes(_ path: String, _ bytes: [UInt8]) throws {
    let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
    defer { try? handle.close() }
    try handle.seekToEnd()
    try handle.write(contentsOf: Data(bytes))
}

func fileSize(_ path: String) -> Int {
    ((try? FileManager.default.attributesOfItem(atPath: path)[.size]) as? Int) ?? -1
}
