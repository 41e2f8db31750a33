import Foundation
@_exported import TestSupport
import Testing

/// Runs the real `presence` and `presence-gen` binaries that `swift build` put next to the test bundle.
enum CLI {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static let productsDirectory: URL = {
        let besideTests = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        if FileManager.default.isExecutableFile(atPath: besideTests.appendingPathComponent("presence").path) { return besideTests }
        return repository.appendingPathComponent(".build/debug")
    }()

    static var presence: String { productsDirectory.appendingPathComponent("presence").path }
    static var generator: String { productsDirectory.appendingPathComponent("presence-gen").path }

    /// The Python of the virtual environment scripts/test.sh creates, with kafka-python and lz4.
    static var python: String { repository.appendingPathComponent(".venv/bin/python").path }

    struct Result {
        let status: Int32
        let stdout: String
        let stderr: String
    }

    /// Runs `executable` with `arguments`, feeding `input` on standard input, and waits for it;
    /// `environment` adds to (or replaces) the test's own variables.
    @discardableResult
    static func run(_ executable: String, _ arguments: [String], input: Data? = nil, environment: [String: String] = [:]) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        }
        let stdin = Pipe(), stdout = Pipe(), stderr = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
        // Drain both outputs while writing the input, so that no pipe fills up.
        let outBox = DataBox(), errBox = DataBox()
        let group = DispatchGroup()
        for (handle, box) in [(stdout.fileHandleForReading, outBox), (stderr.fileHandleForReading, errBox)] {
            group.enter()
            DispatchQueue.global().async {
                box.set(handle.readDataToEndOfFile())
                group.leave()
            }
        }
        if let input { writeAll(stdin.fileHandleForWriting.fileDescriptor, input) }
        try stdin.fileHandleForWriting.close()
        group.wait()
        process.waitUntilExit()
        return Result(status: process.terminationStatus, stdout: String(decoding: outBox.get(), as: UTF8.self),
                      stderr: String(decoding: errBox.get(), as: UTF8.self))
    }

    @discardableResult
    static func presence(_ arguments: [String], input: Data? = nil, environment: [String: String] = [:]) throws -> Result {
        try run(presence, arguments, input: input, environment: environment)
    }

    /// Writes all of `data` to `fd`; false when the reader went away.
    @discardableResult
    static func writeAll(_ fd: Int32, _ data: Data) -> Bool {
        data.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else { return true }
            var done = 0
            while done < raw.count {
                let n = write(fd, base + done, raw.count - done)
                if n < 0 { if errno == EINTR { continue }; return false }
                done += n
            }
            return true
        }
    }
}

/// A value shared with a callback on another thread.
final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func set(_ new: Value) { lock.withLock { value = new } }
    func get() -> Value { lock.withLock { value } }
    func update(_ change: (inout Value) -> Void) { lock.withLock { change(&value) } }
}

/// Bytes shared with a reading thread (a child's output, a socket's).
typealias DataBox = Locked<Data>

extension Locked where Value == Data {
    convenience init() { self.init(Data()) }
    func append(_ more: Data) { update { $0.append(more) } }

    /// Appends what `handle` gives, on a thread of its own, until its end (a child's output drained as it
    /// comes, so the child never blocks on a full pipe). The thread is returned: it finishes at the end.
    @discardableResult
    func drain(_ handle: FileHandle) -> Thread {
        let reader = Thread { [self] in
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                append(chunk)
            }
        }
        reader.start()
        return reader
    }
}

/// A fresh directory, removed afterwards.
extension String {
    var lines: [String] { split(separator: "\n", omittingEmptySubsequences: true).map(String.init) }
}
