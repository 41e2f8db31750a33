import Foundation
import SegmentLog

/// Where each message of each conversation lies in the messages log: a cache beside the log, built as
/// the log is written and rebuilt from it when missing or inconsistent.
///
/// `DATA/messages-index/index`, big-endian:
///
///     byte 0   magic        "PLMSGIX1"
///          8   version      uint32  1
///         12   reserved     uint32  0
///         16   generation   uint64  random, chosen when the file is created (a checkpoint names it)
///         24   reserved     uint64  0
///         32   pages, back to back
///
/// Each conversation has a chain of pages, allocated at the end of the file as its messages need them:
/// its page k holds the entries of `capacity(k) = min(8 << k, 256)` consecutive seqs (pages 0-4 hold
/// seqs 1-8, 9-24, 25-56, 57-120, 121-248; every later page 256), so a two-message chat takes 128
/// bytes and a long one 4 KiB a page. Where a conversation's pages are is kept in memory (4 bytes a
/// page, in `ConversationStore`'s metadata and its checkpoint), not in the file. An entry, 16 bytes:
///
///     offset    int64   the message record's log offset
///     position  uint32  the byte position, in the segment holding `offset`, of the batch holding it
///     check     uint32  CRC-32C of (conversation number uint32, seq uint32, offset, position)
///
/// The check ties the entry to its conversation and seq, so a slot never written (zeros), a torn write
/// or a page read for the wrong conversation is caught on read. The file is extended to its allocated
/// end at each flush (the unwritten part of a page reads as zeros), so its size is the allocation's end.
///
/// Owned by one writer (the commit thread, or a rebuild); `read` is safe from any thread.
final class MessageIndex: @unchecked Sendable {
    // @unchecked: `end`, `staged` and `stagedPositions` are the writer's alone; readers only pread.
    static let magic = Array("PLMSGIX1".utf8)
    static let headerSize: Int64 = 32
    static let entrySize = 16

    let path: String
    private let file: File
    /// Random, chosen when the file was created: a checkpoint made with another file is not used with this one.
    let generation: UInt64
    /// The allocated end (bytes): where the next page goes.
    private(set) var end: Int64
    /// The file's size as last set (`flush` extends it to `end`).
    private var fileSize: Int64
    /// Entries written since the last flush, with their file positions.
    private var staged: [UInt8] = []
    private var stagedPositions: [Int64] = []

    /// One entry: a message's place in the log.
    struct Entry: Sendable, Equatable {
        var offset: Int64
        var position: UInt32
    }

    /// An index that does not fit the log (or itself): what is wrong and where.
    struct Inconsistency: Error, CustomStringConvertible {
        let description: String
    }

    private init(path: String, file: File, generation: UInt64, end: Int64) {
        self.path = path
        self.file = file
        self.generation = generation
        self.end = end
        self.fileSize = end
    }

    /// Creates an empty index at `path` (replacing any file there) with a new generation.
    static func create(path: String) throws(LogError) -> MessageIndex {
        let file = try File.openForWriting(path, create: true)
        try file.truncate(to: 0)
        let generation = UInt64.random(in: 1...UInt64.max)
        var header = magic
        header.append(contentsOf: [0, 0, 0, 1, 0, 0, 0, 0])
        withUnsafeBytes(of: generation.bigEndian) { header.append(contentsOf: $0) }
        header.append(contentsOf: [UInt8](repeating: 0, count: 8))
        try file.write(header, at: 0)
        return MessageIndex(path: path, file: file, generation: generation, end: headerSize)
    }

    /// Opens the index at `path` as a checkpoint left it: its generation must be `generation` and it must
    /// hold at least `end` bytes; what lies past `end` (pages allocated after the checkpoint) is cut, to
    /// be allocated again as the log's tail is replayed. Throws `Inconsistency` when it does not fit.
    /// `readOnly` (`presence messages`, `audit`, beside a running server): nothing is cut or written.
    static func open(path: String, generation: UInt64, end: Int64, readOnly: Bool = false) throws -> MessageIndex {
        guard FileSystem.exists(path) else { throw Inconsistency(description: "\(path) is missing") }
        let file = readOnly ? try File.openForReading(path) : try File.openForWriting(path)
        let size = try file.size()
        var header = [UInt8](repeating: 0, count: Int(headerSize))
        let got = try readInto(&header, count: header.count, from: file, at: 0)
        guard got == header.count, Array(header[0..<8]) == magic else {
            throw Inconsistency(description: "\(path): not a message index (bad header)")
        }
        let found = header.withUnsafeBytes { UInt64(bigEndian: $0.loadUnaligned(fromByteOffset: 16, as: UInt64.self)) }
        guard found == generation else {
            throw Inconsistency(description: "\(path): generation \(found), but the checkpoint was made with \(generation)")
        }
        guard size >= end, end >= headerSize else {
            throw Inconsistency(description: "\(path): \(size) bytes, but the checkpoint needs \(end) (the file was cut)")
        }
        if size > end && !readOnly { try file.truncate(to: end) }
        return MessageIndex(path: path, file: file, generation: generation, end: end)
    }

    // MARK: Layout

    /// The entries page `page` of a conversation holds.
    static func capacity(_ page: Int) -> Int { min(8 << min(page, 5), 256) }

    /// The page and slot of `seq` (1-based).
    static func place(_ seq: Int) -> (page: Int, slot: Int) {
        var rest = seq - 1
        for page in 0..<5 {
            let size = 8 << page
            if rest < size { return (page, rest) }
            rest -= size
        }
        return (5 + rest / 256, rest % 256)
    }

    /// The file position of a page numbered `unit` (in 16-byte units after the header).
    static func position(ofUnit unit: UInt32) -> Int64 { headerSize + Int64(unit) * Int64(entrySize) }

    /// The check of an entry.
    static func check(conversation: UInt32, seq: Int, _ entry: Entry) -> UInt32 {
        var bytes = [UInt8](repeating: 0, count: 20)
        bytes.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: conversation.bigEndian, toByteOffset: 0, as: UInt32.self)
            raw.storeBytes(of: UInt32(truncatingIfNeeded: seq).bigEndian, toByteOffset: 4, as: UInt32.self)
            raw.storeBytes(of: entry.offset.bigEndian, toByteOffset: 8, as: Int64.self)
            raw.storeBytes(of: entry.position.bigEndian, toByteOffset: 16, as: UInt32.self)
        }
        return CRC32C.checksum(bytes)
    }

    // MARK: Writing (one owner)

    /// Allocates page `page` of a conversation at the end of the file; returns its unit.
    func allocate(page: Int) -> UInt32 {
        let unit = UInt32((end - Self.headerSize) / Int64(Self.entrySize))
        end += Int64(Self.capacity(page) * Self.entrySize)
        return unit
    }

    /// Stages the entry of `seq` of conversation `conversation`, whose pages are `pages` (the one that
    /// holds `seq` allocated); `flush` writes it.
    func stage(conversation: UInt32, seq: Int, pages: [UInt32], _ entry: Entry) {
        let (page, slot) = Self.place(seq)
        let at = Self.position(ofUnit: pages[page]) + Int64(slot * Self.entrySize)
        let check = Self.check(conversation: conversation, seq: seq, entry)
        stagedPositions.append(at)
        withUnsafeBytes(of: entry.offset.bigEndian) { staged.append(contentsOf: $0) }
        withUnsafeBytes(of: entry.position.bigEndian) { staged.append(contentsOf: $0) }
        withUnsafeBytes(of: check.bigEndian) { staged.append(contentsOf: $0) }
    }

    /// Entries staged and not yet written.
    var stagedCount: Int { stagedPositions.count }

    /// Writes the staged entries (entries next to each other in the file in one write) and extends the
    /// file to the allocated end. Not synced: `sync` does that, before a checkpoint names this state.
    func flush() throws(LogError) {
        if end > fileSize {
            try file.truncate(to: end)
            fileSize = end
        }
        guard !stagedPositions.isEmpty else { return }
        let order = stagedPositions.indices.sorted { stagedPositions[$0] < stagedPositions[$1] }
        var run: [UInt8] = []
        var runStart: Int64 = -1
        for index in order {
            let at = stagedPositions[index]
            if runStart >= 0 && at != runStart + Int64(run.count) {
                try file.write(run, at: runStart)
                run.removeAll(keepingCapacity: true)
                runStart = -1
            }
            if runStart < 0 { runStart = at }
            run.append(contentsOf: staged[(index * Self.entrySize)..<((index + 1) * Self.entrySize)])
        }
        if runStart >= 0 { try file.write(run, at: runStart) }
        staged.removeAll(keepingCapacity: true)
        stagedPositions.removeAll(keepingCapacity: true)
    }

    /// Makes what was written durable.
    func sync() throws(LogError) {
        try file.syncData()
    }

    // MARK: Reading (any thread)

    /// The entries of seqs `seqs` of conversation `conversation`, whose pages are `pages`, each checked;
    /// throws `Inconsistency` naming the byte and the seq when one does not belong there.
    func read(conversation: UInt32, id: String, pages: [UInt32], seqs: ClosedRange<Int>) throws -> [Entry] {
        var entries: [Entry] = []
        entries.reserveCapacity(seqs.count)
        var seq = seqs.lowerBound
        var bytes = [UInt8](repeating: 0, count: 256 * Self.entrySize)
        while seq <= seqs.upperBound {
            let (page, slot) = Self.place(seq)
            guard page < pages.count else {
                throw Inconsistency(description: "\(path): conversation \(id) has no page \(page) for seq \(seq)")
            }
            let count = min(Self.capacity(page) - slot, seqs.upperBound - seq + 1)
            let at = Self.position(ofUnit: pages[page]) + Int64(slot * Self.entrySize)
            let got = try readInto(&bytes, count: count * Self.entrySize, from: file, at: at)
            try bytes.withUnsafeBytes { raw in
                for i in 0..<count {
                    let base = i * Self.entrySize
                    let entry = Entry(offset: Int64(bigEndian: raw.loadUnaligned(fromByteOffset: base, as: Int64.self)),
                                      position: UInt32(bigEndian: raw.loadUnaligned(fromByteOffset: base + 8, as: UInt32.self)))
                    let check = UInt32(bigEndian: raw.loadUnaligned(fromByteOffset: base + 12, as: UInt32.self))
                    guard base + Self.entrySize <= got, check == Self.check(conversation: conversation, seq: seq + i, entry) else {
                        throw Inconsistency(description: "\(path): the entry at byte \(at + Int64(base)) is not that of seq \(seq + i) of conversation \(id) (bad check)")
                    }
                    entries.append(entry)
                }
            }
            seq += count
        }
        return entries
    }
}

/// Reads up to `count` bytes at `offset` of `file` into the start of `bytes` (which has room); returns how many.
func readInto(_ bytes: inout [UInt8], count: Int, from file: File, at offset: Int64) throws(LogError) -> Int {
    var failure: LogError?
    let got = bytes.withUnsafeMutableBytes { raw -> Int in
        guard let base = raw.baseAddress else { return 0 }
        do throws(LogError) { return try file.read(into: base, count: min(count, raw.count), at: offset) } catch {
            failure = error
            return 0
        }
    }
    if let failure { throw failure }
    return got
}
