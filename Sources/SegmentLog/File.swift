#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An open file descriptor that closes itself. Every failure names the path and the operation. The
/// storage engine's file layer; other modules' files (the projector's checkpoints) go through it too.
public final class File {
    public let path: String
    let descriptor: Int32

    private init(path: String, descriptor: Int32) {
        self.path = path
        self.descriptor = descriptor
    }

    deinit { close(descriptor) }

    /// Opens `path` for reading.
    public static func openForReading(_ path: String) throws(LogError) -> File {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw LogError.io("open", path) }
        return File(path: path, descriptor: fd)
    }

    /// Opens `path` for reading and writing, creating it when `create` (and failing if it exists when `exclusive`).
    public static func openForWriting(_ path: String, create: Bool = false, exclusive: Bool = false) throws(LogError) -> File {
        var flags = O_RDWR | O_CLOEXEC
        if create { flags |= O_CREAT }
        if exclusive { flags |= O_EXCL }
        let fd = open(path, flags, 0o644)
        guard fd >= 0 else { throw LogError.io("open", path) }
        return File(path: path, descriptor: fd)
    }

    /// The file's size in bytes.
    public func size() throws(LogError) -> Int64 {
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { throw LogError.io("stat", path) }
        return Int64(info.st_size)
    }

    /// Reads up to `count` bytes at `offset` into `buffer`; fewer only at the end of the file.
    public func read(into buffer: UnsafeMutableRawPointer, count: Int, at offset: Int64) throws(LogError) -> Int {
        var done = 0
        while done < count {
            let n = pread(descriptor, buffer + done, count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw LogError.io("read", path)
            }
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// Reads the whole file.
    public func readAll() throws(LogError) -> [UInt8] {
        let total = Int(try size())
        var bytes = [UInt8](repeating: 0, count: total)
        var got = 0
        var failure: LogError?
        bytes.withUnsafeMutableBytes { buffer in
            guard let base = buffer.baseAddress else { return }
            do throws(LogError) { got = try read(into: base, count: total, at: 0) } catch { failure = error }
        }
        if let failure { throw failure }
        return Array(bytes.prefix(got))
    }

    /// Writes all of `bytes` at `offset`.
    public func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws(LogError) {
        guard let base = bytes.baseAddress else { return }
        var done = 0
        while done < bytes.count {
            let injected = FileFaults.armed.load(ordering: .relaxed) ? FileFaults.fault(.write, path) : nil
            if let injected { errno = injected }
            let n = injected == nil ? pwrite(descriptor, base + done, bytes.count - done, off_t(offset) + off_t(done)) : -1
            if n < 0 {
                if errno == EINTR { continue }
                throw LogError.io("write", path)
            }
            done += n
        }
    }

    public func write(_ bytes: [UInt8], at offset: Int64) throws(LogError) {
        var failure: LogError?
        bytes.withUnsafeBytes { buffer in
            do throws(LogError) { try write(buffer, at: offset) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    /// Flushes data (and the size, not other metadata) to stable storage.
    public func syncData() throws(LogError) {
        if FileFaults.armed.load(ordering: .relaxed), let injected = FileFaults.fault(.sync, path) {
            throw LogError.io("fdatasync", path, errno: injected)
        }
        guard fdatasync(descriptor) == 0 else { throw LogError.io("fdatasync", path) }
    }

    /// Cuts the file to `length` bytes.
    public func truncate(to length: Int64) throws(LogError) {
        guard ftruncate(descriptor, off_t(length)) == 0 else { throw LogError.io("truncate", path) }
    }
}

/// A file written whole or not at all (a snapshot, such as a checkpoint): the bytes go to a temporary
/// file beside it, which `commit` fsyncs and renames into place, then fsyncs the directory. One that is
/// never committed (an error on the way) is removed. Small writes are gathered into larger ones.
public final class AtomicFileWriter {
    public let path: String
    private let temporary: String
    private let file: File
    private var pending: [UInt8] = []
    private var committed = false
    /// Bytes written so far.
    public private(set) var count = 0

    /// Starts writing `path`; the directory must exist.
    public init(path: String) throws(LogError) {
        self.path = path
        temporary = FileSystem.parent(of: path) + "/." + (path.split(separator: "/").last.map(String.init) ?? "file") + ".\(getpid()).tmp"
        try FileSystem.remove(temporary)
        file = try File.openForWriting(temporary, create: true, exclusive: true)
        pending.reserveCapacity(1 << 16)
    }

    deinit { if !committed { unlink(temporary) } }

    /// Appends `bytes`.
    public func write(_ bytes: UnsafeRawBufferPointer) throws(LogError) {
        if bytes.count < 4096 {
            pending.append(contentsOf: bytes)
            if pending.count >= 1 << 16 { try flush() }
        } else {
            try flush()
            try file.write(bytes, at: Int64(count))
            count += bytes.count
        }
    }

    private func flush() throws(LogError) {
        guard !pending.isEmpty else { return }
        try file.write(pending, at: Int64(count))
        count += pending.count
        pending.removeAll(keepingCapacity: true)
    }

    /// Makes the file durable under its name.
    public func commit() throws(LogError) {
        try flush()
        try file.syncData()
        try FileSystem.rename(temporary, to: path)
        committed = true
        try FileSystem.syncDirectory(FileSystem.parent(of: path))
    }
}

/// Directory and path operations the log needs (and the files beside it: checkpoints).
public enum FileSystem {
    public static func exists(_ path: String) -> Bool {
        access(path, F_OK) == 0
    }

    public static func isDirectory(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
    }

    /// Creates `path`, and its missing parents, unless it exists as a directory; fsyncs the parent of
    /// each directory it created.
    public static func createDirectory(_ path: String) throws(LogError) {
        if isDirectory(path) { return }
        if exists(path) { throw LogError(.invalidArgument, "'\(path)' exists and is not a directory") }
        let parent = parent(of: path)
        if parent != path && !parent.isEmpty && !exists(parent) { try createDirectory(parent) }
        guard mkdir(path, 0o755) == 0 || errno == EEXIST else { throw LogError.io("create directory", path) }
        try syncDirectory(parent)
    }

    /// The names in a directory, without "." and "..".
    public static func list(_ path: String) throws(LogError) -> [String] {
        guard let dir = opendir(path) else { throw LogError.io("list directory", path) }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// Makes a directory's entries (created, renamed, removed files) durable.
    public static func syncDirectory(_ path: String) throws(LogError) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw LogError.io("open directory", path) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw LogError.io("fsync directory", path) }
    }

    public static func remove(_ path: String) throws(LogError) {
        guard unlink(path) == 0 || errno == ENOENT else { throw LogError.io("remove", path) }
    }

    /// Removes `path` and, if it is a directory, everything in it.
    public static func removeTree(_ path: String) throws(LogError) {
        if isDirectory(path) {
            for name in try list(path) { try removeTree(path + "/" + name) }
            guard rmdir(path) == 0 || errno == ENOENT else { throw LogError.io("remove directory", path) }
        } else {
            try remove(path)
        }
    }

    public static func rename(_ from: String, to: String) throws(LogError) {
        guard Glibc.rename(from, to) == 0 else { throw LogError.io("rename to '\(to)'", from) }
    }

    /// Writes `bytes` to `path` atomically: a temporary file, fsync, rename, fsync of the directory.
    static func writeAtomically(_ bytes: [UInt8], to path: String) throws(LogError) {
        let temporary = path + ".tmp"
        try remove(temporary)
        let file = try File.openForWriting(temporary, create: true, exclusive: true)
        try file.write(bytes, at: 0)
        try file.syncData()
        try rename(temporary, to: path)
        try syncDirectory(parent(of: path))
    }

    public static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        let parent = String(path[..<slash])
        return parent.isEmpty ? "/" : parent
    }

    public static func size(_ path: String) -> Int64? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return Int64(info.st_size)
    }
}
