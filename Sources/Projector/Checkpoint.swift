import CCRC32C
import Presence
import SegmentLog

#if canImport(Glibc)
import Glibc
#endif

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

    /// Version 3: connection keys are user id + `EventCodec.View.writeConnIdentity` (value layout 2).
    /// Version 4: the connection count of the next sweep is stored (sweeps fall at fixed offsets).
    /// Version 5: a connection's key lies in its record when short, and no hash is stored
    /// (`ProjectionState.Connection`).
    /// Version 6: `ByteTable.hash` reads a key's last bytes in at most two loads (the slot tables
    /// saved depend on the hash).
    /// Version 7: a connection's hash is made from its parts (`ProjectionState.connectionHash`).
    /// Version 8: a connection record keeps its user id's length (where its key splits).
    /// Version 9: connection slots are 32-bit words (`Slots`).
    /// Version 10: a connection's hash is seeded with its user id's mixed bytes, not the user's hash.
    /// Version 11: hashes keep their low bit (`ProjectionState.nonzero`).
    /// Version 12: `ByteTable`'s hashes end with half of fmix64.
    /// Version 13: presence rules v2 (a reused connection id starts a new session): key histories.
    static var layout: UInt64 {
        UInt64(MemoryLayout<ProjectionState.User>.stride) << 40 | UInt64(MemoryLayout<ProjectionState.Connection>.stride) << 24 | 13
    }

    /// The checkpoint folder of a data directory.
    public static func directory(data: String) -> String {
        (data.hasSuffix("/") ? String(data.dropLast()) : data) + "/checkpoints"
    }

    /// Writes a checkpoint of `projection` into `directory` (created if needed) and removes all but the
    /// newest two. Returns the file's path and size.
    @discardableResult
    public static func write(_ projection: PresenceProjection, to directory: String) throws -> (path: String, bytes: Int) {
        try createDirectory(directory)
        let name = filePrefix + Log.segmentName(projection.nextOffset) + fileSuffix
        let path = directory + "/" + name
        let temporary = directory + "/.\(name).\(getpid()).tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw LogError(.io, "cannot create '\(temporary)': \(String(cString: strerror(errno)))") }
        // Small fields gather in a buffer; tables go to the file straight from their memory.
        var crc: UInt32 = 0
        var written = 0
        var pending: [UInt8] = []
        pending.reserveCapacity(1 << 16)
        func writeOut(_ bytes: UnsafeRawBufferPointer) throws {
            guard let base = bytes.baseAddress else { return }
            var done = 0
            while done < bytes.count {
                let n = Glibc.write(fd, base + done, bytes.count - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw LogError(.io, "writing checkpoint '\(temporary)' failed: \(String(cString: strerror(errno)))")
                }
                done += n
            }
            written += bytes.count
        }
        func flush() throws {
            try pending.withUnsafeBytes { try writeOut($0) }
            pending.removeAll(keepingCapacity: true)
        }
        do {
            try projection.encodeState { bytes in
                guard let base = bytes.baseAddress, bytes.count > 0 else { return }
                crc = presencelog_crc32c(crc, base, bytes.count)
                if bytes.count < 4096 {
                    pending.append(contentsOf: bytes)
                    if pending.count >= 1 << 16 { try flush() }
                } else {
                    try flush()
                    try writeOut(bytes)
                }
            }
            withUnsafeBytes(of: crc.littleEndian) { pending.append(contentsOf: $0) }
            try flush()
            guard fsync(fd) == 0 else { throw LogError(.io, "fsync of '\(temporary)' failed: \(String(cString: strerror(errno)))") }
            close(fd)
        } catch {
            close(fd)
            unlink(temporary)
            throw error
        }
        guard rename(temporary, path) == 0 else { throw LogError(.io, "cannot rename '\(temporary)' to '\(path)': \(String(cString: strerror(errno)))") }
        try syncDirectory(directory)
        let all = try files(in: directory)
        for old in all.dropLast(keep) { unlink(old.path) }
        return (path, written)
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

    /// Checkpoint files of a folder, oldest first.
    public static func files(in directory: String) throws -> [File] {
        guard let dir = opendir(directory) else { return [] }
        defer { closedir(dir) }
        var found: [File] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            guard name.hasPrefix(filePrefix), name.hasSuffix(fileSuffix) else { continue }
            let digits = name.dropFirst(filePrefix.count).dropLast(fileSuffix.count)
            guard digits.count == 20, let offset = Int64(digits) else { continue }
            found.append(File(offset: offset, path: directory + "/" + name))
        }
        return found.sorted { $0.offset < $1.offset }
    }

    static func createDirectory(_ path: String) throws {
        var info = stat()
        if stat(path, &info) == 0 { return }
        guard mkdir(path, 0o755) == 0 || errno == EEXIST else {
            throw LogError(.io, "cannot create '\(path)': \(String(cString: strerror(errno)))")
        }
    }

    static func syncDirectory(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw LogError(.io, "cannot open directory '\(path)'") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw LogError(.io, "fsync of '\(path)' failed") }
    }
}

/// Reads a checkpoint file front to back: little-endian fields, and bulk bytes straight into their
/// destination. Keeps a running CRC-32C; `finish` checks it against the file's last four bytes.
/// Never reads past the body (the file less its CRC).
final class CheckpointReader {
    private let fd: Int32
    private let path: String
    /// Bytes before the trailing CRC.
    let bodySize: Int
    private(set) var position = 0
    private var crc: UInt32 = 0

    init(path: String) throws {
        self.path = path
        fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw LogError(.io, "cannot open '\(path)': \(String(cString: strerror(errno)))") }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            close(fd)
            throw LogError(.io, "cannot stat '\(path)'")
        }
        bodySize = Int(info.st_size) - 4
        guard bodySize >= Checkpoint.magic.count else {
            close(fd)
            throw LogError(.corrupt, "checkpoint is cut short (\(info.st_size) bytes)")
        }
    }

    deinit { close(fd) }

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
        var done = 0
        while done < count {
            let n = pread(fd, destination + done, count - done, off_t(offset + done))
            if n < 0 { if errno == EINTR { continue }; throw LogError(.io, "reading '\(path)' failed: \(String(cString: strerror(errno)))") }
            if n == 0 { throw LogError(.corrupt, "checkpoint is cut short") }
            done += n
        }
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
