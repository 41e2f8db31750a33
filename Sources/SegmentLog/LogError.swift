#if canImport(Glibc)
import Glibc
#endif

/// An error from the storage engine. The message names the file, the position and what to do.
public struct LogError: Error, CustomStringConvertible, Sendable, Equatable {
    /// What kind of failure this is; callers map it to exit codes or HTTP statuses.
    public enum Code: String, Sendable {
        /// A system call failed (disk full, permission, missing directory).
        case io
        /// Bytes on disk are not a valid batch where a valid one must be.
        case corrupt
        /// Another process holds the data directory's writer lock.
        case locked
        /// A caller passed something the log cannot take.
        case invalidArgument
        /// The log was closed, or failed earlier and refuses further writes.
        case closed
        /// The writer's admission check (`AppendAdmission`) refused the request; nothing of it was written.
        case refused
        /// The filesystem is full (ENOSPC, EDQUOT): nothing of the request was written, and the log takes
        /// writes again once there is space (no restart needed).
        case noSpace
    }

    public let code: Code
    public let message: String
    /// With `refused`: the index, in the request, of the record that was refused.
    public var recordIndex: Int?
    /// With `io`: the system call's errno.
    public var systemError: Int32?

    public init(_ code: Code, _ message: String, recordIndex: Int? = nil) {
        self.code = code
        self.message = message
        self.recordIndex = recordIndex
    }

    public var description: String { message }

    /// An I/O error from `errno`, naming the operation and the path.
    static func io(_ operation: String, _ path: String, errno code: Int32 = errno) -> LogError {
        var error = LogError(.io, "\(operation) '\(path)' failed: \(String(cString: strerror(code))) (errno \(code))")
        error.systemError = code
        return error
    }

    /// Whether this is a write that failed for want of space.
    var isOutOfSpace: Bool { code == .io && (systemError == ENOSPC || systemError == EDQUOT) }

    /// A corrupt batch in a file, at a byte position.
    static func corrupt(_ path: String, position: Int64, _ reason: String) -> LogError {
        LogError(.corrupt, "\(path): \(reason) at byte \(position)")
    }
}
