import Foundation

/// A fresh directory under the system's temporary folder, removed when the value goes: the one scratch
/// folder of every test target.
public final class Scratch: @unchecked Sendable {
    // @unchecked: `path` is set once.
    public let path: String

    public init() {
        path = NSTemporaryDirectory() + "presencelog-test-" + UUID().uuidString
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    /// A path inside the directory.
    public func file(_ name: String) -> String { path + "/" + name }
}
