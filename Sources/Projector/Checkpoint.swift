import CCRC32C
import Presence
import SegmentLog

/// Snapshots of a projection, so that a restart replays only the log's tail.
///
/// Files live in `DATA/checkpoints/`, named `presence-<20-digit offset>.ckpt` after the log offset they
/// cover (the projection's `nextOffset`). Each is written whole to a temporary file, fsynced, renamed
/// into place, and the directory fsynced; the newest two are kept.
///
///     "PLCKPT1\\n"                     magic
///     u64 layout                        fingerprint of the record layouts and this format's version
///     u64 nextOffset, i64 maxTimestamp, u64 eventsApplied, u64 refusedEvents, i64 horizon,
///     u64 onlineUsers, u64 openConnections, u64 nextSweep
///     6 × (u64 count, u64 capacity, u64 byteCount, bytes)
///                                       user slots, users, user ids, connection slots, connections, long connection keys
///     u64 gateways, then each: u32 n, n bytes of name, i64 last heartbeat, u64 downs, downs × i64
///     (u64 count, u64 capacity, u64 byteCount, bytes)      key histories (`KeyHistory`)
///     u64 free histories, then each: u64 index
///     2 × (u64 count, u64 capacity, u64 byteCount, bytes, u64 size classes, then each: u64 n, n × u64)
///                                       the histories' events and snapshots, with their free blocks (`BlockArena`)
///     u32 CRC-32C of everything before it
///
/// Integers are little-endian (the records are stored as they lie in memory, so a checkpoint is for
/// machines of the same byte order and a build with the same layout; any other is ignored and the
/// log replayed). A checkpoint whose CRC fails, that is cut short, or that covers more of the log than
/// the log holds (after a truncation) is skipped for the next older one, then for a full replay.
public enum Checkpoint {
    static let magic = Array("PLCKPT1\n".utf8)
    static let filePrefix = "presence-"
    static let fileSuffix = ".ckpt"
    static let keep = 2

    /// What loading found.
    public struct LoadReport: Sendable {
        /// The file used, if any.
        public var used: String?
        /// Files skipped, with the reason.
        public var skipped: [String] = []
    }

    /// The checkpoint's own format: what the header and the tables' framing look like. Bumped by hand
    /// only when the order of the fields written changes (`CheckpointCodec`); everything that lies in
    /// a checkpoint as raw memory is covered by `layoutDescription` without anyone remembering.
    static let formatVersion: UInt64 = 14

    /// What this build's checkpoints hold as raw memory, as numbers: every record type's size, stride and
    /// alignment and each of its fields' offsets, the hashes the saved slot tables were placed by (of
    /// probe keys), and `formatVersion`. A field added, moved or resized, or a hash function changed,
    /// changes the description and with it `layout`, so the checkpoints of another build are skipped
    /// ("another record layout") and the log replayed, instead of loading tables the code reads wrongly.
    static var layoutDescription: [UInt64] {
        func shape<T>(_ type: T.Type, _ offsets: [Int?]) -> [UInt64] {
            [MemoryLayout<T>.size, MemoryLayout<T>.stride, MemoryLayout<T>.alignment].map(UInt64.init)
                + offsets.map { $0.map(UInt64.init) ?? .max }
        }
        typealias User = ProjectionState.User
        typealias Connection = ProjectionState.Connection
        let probe = Array("a-user-id\u{FE}\u{0}conn-text-probe".utf8)
        let hashes = probe.withUnsafeBytes { key in
            [ProjectionState.hash(UnsafeRawBufferPointer(rebasing: key[..<9])), ProjectionState.connectionHash(key: key, userLength: 9)]
        }
        return [formatVersion]
            + shape(User.self, [\User.hash, \User.lastSeen, \User.keyOffset, \User.open, \User.firstConnection, \User.keyLength].map(MemoryLayout<User>.offset(of:)))
            + shape(Connection.self, [\Connection.start, \Connection.disconnect, \Connection.end, \Connection.key, \Connection.user, \Connection.gateway,
                                      \Connection.nextOfUser, \Connection.keyLength, \Connection.reason, \Connection.userLengthLessOne].map(MemoryLayout<Connection>.offset(of:)))
            + shape(KeyHistory.self, KeyHistory.fieldOffsets)
            + shape(ConnectionRules.Sessions.self, ConnectionRules.Sessions.fieldOffsets)
            + shape(ConnectionRules.KeyEvent.self, ConnectionRules.KeyEvent.fieldOffsets)
            + [UInt64(MemoryLayout<UInt32>.size), UInt64(ProjectionState.userIndexBits)]  // connection and user slots
            + hashes
    }

    /// The fingerprint of a layout description (FNV-1a over its numbers).
    static func fingerprint(of description: [UInt64]) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for value in description {
            withUnsafeBytes(of: value.littleEndian) { for byte in $0 { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 } }
        }
        return hash
    }

    /// This build's layout fingerprint, written in every checkpoint's header and required on loading.
    static let layout: UInt64 = fingerprint(of: layoutDescription)

    /// The checkpoint folder of a data directory.
    public static func directory(data: String) -> String {
        (data.hasSuffix("/") ? String(data.dropLast()) : data) + "/checkpoints"
    }

    /// Writes a checkpoint of `projection` into `directory` (created if needed) and removes all but the
    /// newest two. Returns the file's path and size. Written whole or not at all (`AtomicFileWriter`).
    @discardableResult
    public static func write(_ projection: PresenceProjection, to directory: String) throws -> (path: String, bytes: Int) {
        try FileSystem.createDirectory(directory)
        let path = directory + "/" + filePrefix + Log.segmentName(projection.nextOffset) + fileSuffix
        let file = try AtomicFileWriter(path: path)
        var crc: UInt32 = 0
        try projection.encodeState { bytes in
            guard let base = bytes.baseAddress, bytes.count > 0 else { return }
            crc = presencelog_crc32c(crc, base, bytes.count)
            try file.write(bytes)
        }
        try withUnsafeBytes(of: crc.littleEndian) { try file.write($0) }
        try file.commit()
        for old in try files(in: directory).dropLast(keep) { try FileSystem.remove(old.path) }
        return (path, file.count)
    }

    /// Loads the newest valid checkpoint in `directory` that covers at most `logEndOffset` records and whose
    /// newest event is at or before `notAfter` (for a state at a time). Returns nil when there is none.
    public static func loadNewest(from directory: String, logEndOffset: Int64, notAfter: Int64 = .max,
                                  horizon: Int64 = defaultLateArrivalHorizon) -> (PresenceProjection, LoadReport)? {
        var report = LoadReport()
        guard let all = try? files(in: directory) else { return nil }
        for file in all.reversed() {
            if file.offset > logEndOffset {
                report.skipped.append("\(file.path): covers offset \(file.offset), past the log's end \(logEndOffset)")
                continue
            }
            do {
                let projection = try load(file.path)
                if projection.horizon != horizon {
                    report.skipped.append("\(file.path): written with another late-arrival horizon (\(LateArrivalGuard.durationText(projection.horizon)))")
                    continue
                }
                if projection.maxTimestamp > notAfter && projection.maxTimestamp != Int64.min {
                    report.skipped.append("\(file.path): holds events after the requested time")
                    continue
                }
                report.used = file.path
                return (projection, report)
            } catch {
                report.skipped.append("\(file.path): \(error)")
            }
        }
        return report.skipped.isEmpty ? nil : (PresenceProjection(), report)
    }

    /// Loads one checkpoint file; throws when it is damaged or from another layout. The tables are read
    /// straight into their memory, and the CRC is computed along the way and checked at the end.
    public static func load(_ path: String) throws -> PresenceProjection {
        let reader = try CheckpointReader(path: path)
        let projection = try PresenceProjection.decodeState(reader)
        try reader.finish()
        try projection.validateCheckpointReferences()
        return projection
    }

    public struct File: Sendable { public let offset: Int64; public let path: String }

    /// Checkpoint files of a folder, oldest first (none when the folder does not exist).
    public static func files(in directory: String) throws -> [File] {
        guard FileSystem.isDirectory(directory) else { return [] }
        var found: [File] = []
        for name in try FileSystem.list(directory) where name.hasPrefix(filePrefix) && name.hasSuffix(fileSuffix) {
            let digits = name.dropFirst(filePrefix.count).dropLast(fileSuffix.count)
            guard digits.count == 20, let offset = Int64(digits) else { continue }
            found.append(File(offset: offset, path: directory + "/" + name))
        }
        return found.sorted { $0.offset < $1.offset }
    }
}

/// Reads a checkpoint file front to back: little-endian fields, and bulk bytes straight into their
/// destination. Keeps a running CRC-32C; `finish` checks it against the file's last four bytes.
/// Never reads past the body (the file less its CRC).
final class CheckpointReader {
    private let file: SegmentLog.File
    /// Bytes before the trailing CRC.
    let bodySize: Int
    private(set) var position = 0
    private var crc: UInt32 = 0

    init(path: String) throws {
        file = try SegmentLog.File.openForReading(path)
        let size = try file.size()
        bodySize = Int(size) - 4
        guard bodySize >= Checkpoint.magic.count else { throw LogError(.corrupt, "checkpoint is cut short (\(size) bytes)") }
    }

    /// Bytes of the body not yet read.
    var remaining: Int { bodySize - position }

    /// Reads `count` body bytes into `destination`.
    func read(into destination: UnsafeMutableRawPointer, count: Int) throws {
        guard count >= 0, count <= remaining else { throw LogError(.corrupt, "checkpoint is cut short") }
        try readRaw(into: destination, count: count, at: position)
        crc = presencelog_crc32c(crc, destination, count)
        position += count
    }

    private func readRaw(into destination: UnsafeMutableRawPointer, count: Int, at offset: Int) throws {
        guard try file.read(into: destination, count: count, at: Int64(offset)) == count else { throw LogError(.corrupt, "checkpoint is cut short") }
    }

    func bytes(_ count: Int) throws -> [UInt8] {
        guard count >= 0, count <= remaining else { throw LogError(.corrupt, "checkpoint is cut short") }
        var out = [UInt8](repeating: 0, count: count)
        try out.withUnsafeMutableBytes { raw in
            if let base = raw.baseAddress { try read(into: base, count: count) }
        }
        return out
    }

    func u64() throws -> UInt64 {
        var value: UInt64 = 0
        try withUnsafeMutableBytes(of: &value) { raw in
            if let base = raw.baseAddress { try read(into: base, count: 8) }
        }
        return UInt64(littleEndian: value)
    }

    func i64() throws -> Int64 { Int64(bitPattern: try u64()) }

    /// A count or size: a u64 that must fit an `Int` (a crafted file can hold any value with a good CRC).
    func int() throws -> Int {
        let value = try u64()
        guard value <= UInt64(Int.max) else { throw LogError(.corrupt, "checkpoint holds a count of \(value), past any table") }
        return Int(value)
    }

    func u32() throws -> UInt32 {
        var value: UInt32 = 0
        try withUnsafeMutableBytes(of: &value) { raw in
            if let base = raw.baseAddress { try read(into: base, count: 4) }
        }
        return UInt32(littleEndian: value)
    }

    /// Checks that the whole body was read and that its CRC matches the stored one.
    func finish() throws {
        guard remaining == 0 else { throw LogError(.corrupt, "checkpoint has \(remaining) stray bytes") }
        var stored: UInt32 = 0
        try withUnsafeMutableBytes(of: &stored) { raw in
            if let base = raw.baseAddress { try readRaw(into: base, count: 4, at: bodySize) }
        }
        guard UInt32(littleEndian: stored) == crc else { throw LogError(.corrupt, "checkpoint CRC does not match") }
    }
}
