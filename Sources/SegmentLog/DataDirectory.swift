#if canImport(Glibc)
import Glibc
#endif

/// A data directory: one folder per named log, and the lock that makes one process its only writer.
///
///     DATA/
///       .lock                  flock()ed by the writer; holds its pid
///       presence/              a log (see `Log`)
///       messages/
///       horizon                a setting: one value on one line (see `writeSetting`)
public final class DataDirectory {
    public let path: String
    private let lockFile: File

    /// Opens (creating it if needed) the data directory at `path` and takes its writer lock.
    /// Throws `.locked`, naming the holder's pid, when another process has it.
    public init(path: String) throws(LogError) {
        let trimmed = path.count > 1 && path.hasSuffix("/") ? String(path.dropLast()) : path
        guard !trimmed.isEmpty else { throw LogError(.invalidArgument, "the data directory path is empty") }
        self.path = trimmed
        try FileSystem.createDirectory(trimmed)
        let lockPath = trimmed + "/.lock"
        let file = try File.openForWriting(lockPath, create: true)
        if flock(file.descriptor, LOCK_EX | LOCK_NB) != 0 {
            let code = errno
            guard code == EWOULDBLOCK else { throw LogError.io("lock", lockPath, errno: code) }
            let holder = (try? file.readAll()).map { String(decoding: $0, as: UTF8.self).trimmingWhitespace } ?? ""
            throw LogError(.locked, "data directory '\(trimmed)' is in use by another process (pid \(holder.isEmpty ? "unknown" : holder)); stop it or choose another --data")
        }
        try file.truncate(to: 0)
        try file.write(Array("\(getpid())\n".utf8), at: 0)
        self.lockFile = file
    }

    /// The folder of the log called `name`, which must be a plain name (letters, digits, `-`, `_`).
    public func logPath(_ name: String) throws(LogError) -> String {
        try Self.validateLogName(name)
        return path + "/" + name
    }

    /// Opens the log called `name`, recovering it if the last run did not close it.
    public func openLog(_ name: String, configuration: LogConfiguration = LogConfiguration(),
                        report: (String) -> Void = { _ in }) throws(LogError) -> Log {
        try Log.open(directory: try logPath(name), configuration: configuration, report: report)
    }

    /// Writes a small setting file `DATA/<name>` atomically (the writer's; readers use `readSetting`).
    public func writeSetting(_ name: String, _ value: String) throws(LogError) {
        try Self.validateLogName(name)
        try FileSystem.writeAtomically(Array((value + "\n").utf8), to: path + "/" + name)
    }

    /// The setting `DATA/<name>` without its trailing whitespace, or nil if there is none.
    public static func readSetting(data: String, _ name: String) throws(LogError) -> String? {
        try validateLogName(name)
        let file = (data.count > 1 && data.hasSuffix("/") ? String(data.dropLast()) : data) + "/" + name
        guard FileSystem.exists(file) else { return nil }
        return String(decoding: try File.openForReading(file).readAll(), as: UTF8.self).trimmingWhitespace
    }

    static func validateLogName(_ name: String) throws(LogError) {
        let allowed = name.utf8.allSatisfy { ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 45 || $0 == 95 }
        guard !name.isEmpty, name.utf8.count <= 64, allowed else {
            throw LogError(.invalidArgument, "'\(name)' is not a valid log name (use a-z, 0-9, '-' and '_')")
        }
    }
}

extension String {
    var trimmingWhitespace: String {
        String(self.drop(while: { $0.isWhitespace }).reversed().drop(while: { $0.isWhitespace }).reversed())
    }
}
