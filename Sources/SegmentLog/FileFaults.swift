#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// A test seam in the file layer: a rule that makes chosen writes or fsyncs fail with an errno, so that
/// the tests can show what the log does on a full disk (ENOSPC) or a failed fsync (EIO) in process.
/// Nothing sets it outside tests; disarmed, it costs one relaxed atomic load per write.
public enum FileFaults {
    public enum Operation: Sendable { case write, sync }

    /// Given an operation and the file's path: the errno to fail it with, or nil to let it run.
    public typealias Rule = @Sendable (Operation, String) -> Int32?

    static let armed = Atomic<Bool>(false)
    private static let rule = Mutex<Rule?>(nil)

    /// Makes the file layer consult `rule` before every write and fsync until `disarm`.
    public static func arm(_ rule: @escaping Rule) {
        self.rule.withLock { $0 = rule }
        armed.store(true, ordering: .releasing)
    }

    public static func disarm() {
        armed.store(false, ordering: .releasing)
        rule.withLock { $0 = nil }
    }

    static func fault(_ operation: Operation, _ path: String) -> Int32? {
        rule.withLock { $0 }?(operation, path)
    }
}
