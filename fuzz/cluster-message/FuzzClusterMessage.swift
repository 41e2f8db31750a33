import Cluster
import Foundation
import FuzzSupport
import NIOCore
import Presence
import SegmentLog

/// Any bytes as the body of a cluster message (a JetStream message of the PRESENCE, CHAT or PRIVACY
/// stream), as a node reads it: `RecordBufferCodec.decodeMessage` gives records or a clear error, never
/// a crash, a hang or an allocation the bytes do not hold. What it accepts, every node's log takes byte
/// for byte (`Log.append(_:encoded:)`) and must read back. So:
/// - every batch of an accepted version-2 message, moved to any base offset, passes the log reader's
///   checks (framing, CRC, records) and gives back exactly the decoded records at consecutive offsets;
/// - the records encode again to a message that decodes to the same records;
/// - every record's value goes through `EventCodec`, as materializing does.
///
/// Input: `flags`, then the message. The CRCs of the batches after the message's header are recomputed
/// first (flag 2 leaves them as they are), so that mutations reach the decoder. Flag 1 also appends an
/// accepted message to a real log (in /dev/shm, kept across inputs, small segments: alone, or twice in
/// one group as a catching-up node does), reads it back with `LogReader`, and now and then closes
/// and opens the log again. The base offset the batches are moved to comes from flags' high bits.
/// `fuzz-cluster-message --make-seeds DIR` writes the seed corpus.
func check(_ bytes: [UInt8]) {
    var input = FuzzInput(bytes)
    let flags = input.byte()
    var message = input.rest()
    if flags & 2 == 0, let start = batchesStart(message) { fixBatchChecksums(&message, from: start) }
    guard let decoded = try? RecordBufferCodec.decodeMessage(ByteBuffer(bytes: message)) else { return }
    let records = decoded.records

    for index in 0..<records.count {
        _ = records.withRecord(at: index) { key, value in
            try? EventCodec.decode(key: key, value: value, timestamp: records.timestamp(at: index))
        }
    }
    let again = (try? RecordBufferCodec.decodeMessage(RecordBufferCodec.encode(records)))?.records
    guard let again, same(again, records) else { fatalError("\(records.count) records do not survive encoding them again") }

    guard let batches = decoded.batches else { return }
    guard batches.recordCount == records.count else { fatalError("the batches hold \(batches.recordCount) records, the message \(records.count)") }
    let base = Int64(flags >> 2) * 1_000_003
    readAsTheLogWould(batches.bytes, movedTo: base, expecting: records)
    if flags & 1 != 0, !records.isEmpty { appendToRealLog(records, batches) }
}

/// Where a version-2 message's batches start (after its version byte and record count), or nil.
func batchesStart(_ message: [UInt8]) -> Int? {
    guard message.first == 2 else { return nil }
    var position = 1
    while position < message.count, position < 11 {
        defer { position += 1 }
        if message[position] & 0x80 == 0 { return position + 1 }
    }
    return nil
}

func same(_ a: RecordBuffer, _ b: RecordBuffer) -> Bool {
    guard a.count == b.count else { return false }
    return (0..<a.count).allSatisfy { a.timestamp(at: $0) == b.timestamp(at: $0) && a.key(at: $0) == b.key(at: $0) && a.value(at: $0) == b.value(at: $0) }
}

nonisolated(unsafe) let readerDecoder = RecordBatchDecoder()

/// The batches with their base offsets set from `base`, walked as `LogReader` walks a segment.
func readAsTheLogWould(_ bytes: [UInt8], movedTo base: Int64, expecting records: RecordBuffer) {
    var moved = bytes
    var index = 0
    moved.withUnsafeMutableBytes { raw in
        guard let start = raw.baseAddress else { return }
        var position = 0
        while position < raw.count {
            guard var header = RecordBatchHeader(bytes: UnsafeRawBufferPointer(rebasing: raw[position...])) else {
                fatalError("an accepted message has \(raw.count - position) bytes after its last batch")
            }
            header.baseOffset += base
            (start + position).storeBytes(of: header.baseOffset.bigEndian, toByteOffset: 0, as: Int64.self)
            if let problem = header.structuralProblem(maxBatchSize: LogConfiguration().maxBatchSizeOnDisk) {
                fatalError("the log would call an accepted batch corrupt: \(problem)")
            }
            let batch = UnsafeRawBufferPointer(start: start + position, count: header.totalSize)
            guard RecordBatchDecoder.crcMatches(batch, header: header) else { fatalError("an accepted batch fails its CRC at base offset \(base)") }
            let views: UnsafeMutableBufferPointer<RecordView>
            do {
                views = try readerDecoder.decodeRecords(batch, header: header)
            } catch {
                fatalError("the log's reader refuses an accepted batch: \(error)")
            }
            for view in views {
                guard view.offset == base + Int64(index), index < records.count, view.timestamp == records.timestamp(at: index),
                      view.key.map(Array.init) == records.key(at: index), view.value.map(Array.init) == records.value(at: index)
                else { fatalError("record \(index) reads back as offset \(view.offset) time \(view.timestamp), not as decoded") }
                index += 1
            }
            position += header.totalSize
        }
    }
    guard index == records.count else { fatalError("the batches read back as \(index) records of \(records.count)") }
}

/// A real log in shared memory, kept across inputs and started again past 16 MiB; every 64th append
/// closes and opens it again (a clean open must find it as it was).
nonisolated(unsafe) var realLog: Log?
nonisolated(unsafe) var realAppends = 0
let logFolder: String = {
    let path = (ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 }
        ?? (FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : "/tmp")) + "/presence-fuzz-cluster-message-\(getpid())"
    atexit { try? FileManager.default.removeItem(atPath: logFolder) }
    return path
}()

func openRealLog() -> Log {
    var configuration = LogConfiguration()
    configuration.durability = .never
    configuration.segmentBytes = 256 << 10
    do {
        return try Log.open(directory: logFolder, configuration: configuration)
    } catch {
        fatalError("cannot open the log in \(logFolder): \(error)")
    }
}

/// Appends the message as a node materializes it: on its own, or (every other append) twice in one
/// group, as a catching-up node appends a run of messages (`append(encoded:)` with several parts).
func appendToRealLog(_ records: RecordBuffer, _ batches: EncodedBatches) {
    if realLog == nil || (realLog?.segments.reduce(0) { $0 + $1.size } ?? 0) > 16 << 20 {
        try? realLog?.close()
        try? FileManager.default.removeItem(atPath: logFolder)
        realLog = openRealLog()
    }
    guard let log = realLog else { return }
    realAppends += 1
    let grouped = realAppends % 2 == 0
    var expected = records
    if grouped { expected.append(contentsOf: records) }
    let range: ClosedRange<Int64>
    do {
        range = grouped ? try log.append(encoded: [batches, batches]) : try log.append(records, encoded: batches)
    } catch {
        fatalError("the log refuses an accepted message of \(records.count) records: \(error)")
    }
    guard range.count == expected.count else { fatalError("an append of \(expected.count) records took offsets \(range)") }
    if realAppends % 64 == 0 {
        let end = log.endOffset
        do { try log.close() } catch { fatalError("the log fails to close: \(error)") }
        let reopened = openRealLog()
        guard reopened.endOffset == end, reopened.openedCleanly else {
            fatalError("the log closed at offset \(end) opens at \(reopened.endOffset) (cleanly: \(reopened.openedCleanly))")
        }
        realLog = reopened
    }
    var index = 0
    do {
        let reader = try LogReader(directory: logFolder)
        _ = try reader.forEachRecord(from: .offset(range.lowerBound)) { record in
            guard record.offset == range.lowerBound + Int64(index), index < expected.count, record.timestamp == expected.timestamp(at: index),
                  record.key.map(Array.init) == expected.key(at: index), record.value.map(Array.init) == expected.value(at: index)
            else { fatalError("record \(index) of the append reads back as offset \(record.offset) time \(record.timestamp), not as appended") }
            index += 1
            return index < expected.count
        }
    } catch {
        fatalError("the log fails to read back an accepted message: \(error)")
    }
    guard index == expected.count else { fatalError("the log reads back \(index) of \(expected.count) appended records") }
}

/// The seed corpus: messages nodes write (one event, a burst spanning several batches, a chat message's
/// record, an empty value) and a version-1 message, each with and without a real log.
func makeSeeds(in folder: String) throws {
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    func events(_ count: Int, step: Int64) -> RecordBuffer {
        var records = RecordBuffer()
        for index in 0..<count {
            let user = "u\(index % 7)", kind: EventKind = index % 3 == 2 ? .disconnect : .connect
            EventCodec.append(PresenceEvent(kind: kind, user: user, conn: "\(user)-phone-\(index % 2)", gateway: "gw-\(index % 3)",
                                            timestamp: 1_733_300_000_000 + Int64(index) * step,
                                            id: index % 4 == 0 ? "ev-\(index)" : nil), to: &records)
        }
        return records
    }
    var chat = RecordBuffer()
    chat.append(timestamp: 1_733_300_000_000, key: Array("c-42".utf8), value: Array(#"{"from":"alice","text":"hi"}"#.utf8))
    chat.append(timestamp: 1_733_300_000_001, key: nil, value: [])
    let messages: [(String, ByteBuffer)] = [
        ("one-event", RecordBufferCodec.encode(events(1, step: 0))),
        ("burst", RecordBufferCodec.encode(events(40, step: 1_000))),  // 39 s: three batches
        ("chat", RecordBufferCodec.encode(chat)),
        ("version-1", RecordBufferCodec.encodeVersion1(events(5, step: 10))),
    ]
    for (name, message) in messages {
        for flags: UInt8 in [0, 1] {
            let bytes = [flags] + Array(message.readableBytesView)
            try Data(bytes).write(to: URL(fileURLWithPath: "\(folder)/\(name)\(flags == 1 ? "-log" : "")"))
        }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzClusterMessage(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    check(fuzzBytes(data, size))
    return 0
}

@main
struct Main {
    static func main() throws {
        let arguments = CommandLine.arguments
        if arguments.count == 3, arguments[1] == "--make-seeds" {
            try makeSeeds(in: arguments[2])
            return
        }
        FuzzRunner.main(fuzzClusterMessage, check)
    }
}
