import Foundation
import NATS
import NATSServerHarness
import NIOCore
import Testing

/// Integration suites run when nats-server is installed (scripts/setup.sh puts it in .venv), and always in
/// CI, where a missing server then fails every test loudly instead of skipping them.
let natsServerAvailable = NATSServerProcess.binary != nil || ProcessInfo.processInfo.environment["CI"] != nil

/// A new empty folder for a server's files.
func temporaryDirectory(_ name: String) -> URL {
    FileManager.default.temporaryDirectory.appendingPathComponent("nats-tests-\(name)-\(UUID().uuidString)")
}

/// Runs `body` with a fresh single JetStream server; kills it and removes its files after, failed or not.
func withServer<T>(_ name: String = #function, extraConfig: String = "", _ body: (NATSServerProcess) async throws -> T) async throws -> T {
    let directory = temporaryDirectory(String(name.prefix { $0 != "(" }))
    let server = try NATSServerProcess(name: "s1", directory: directory, extraConfig: extraConfig)
    defer {
        server.kill()
        try? FileManager.default.removeItem(at: directory)
    }
    try server.start()
    return try await body(server)
}

/// Options for quick tests: short timeouts so that a failure shows in seconds.
func testOptions(_ urls: [String]) throws -> NATSOptions {
    var options = try NATSOptions(servers: urls)
    options.connectTimeout = .seconds(1)
    options.reconnect = ReconnectPolicy(initialDelay: .milliseconds(20), maxDelay: .milliseconds(250), jitter: .milliseconds(20), maxAttempts: nil)
    return options
}

/// Waits until `condition` holds, checking every 20 ms; fails the test after `timeout`.
func eventually(_ what: String, timeout: Duration = .seconds(10), _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while try await !condition() {
        guard ContinuousClock.now < deadline else {
            Issue.record("timed out waiting until \(what)")
            throw CancellationError()
        }
        try await Task.sleep(for: .milliseconds(20))
    }
}

/// The next message of a subscription, or a failure after `timeout`.
func next(_ subscription: NATSSubscription, timeout: Duration = .seconds(5)) async throws -> NATSMessage {
    try await withThrowingTaskGroup(of: NATSMessage?.self) { group in
        group.addTask {
            var iterator = subscription.makeAsyncIterator()
            return try await iterator.next()
        }
        group.addTask {
            try await Task.sleep(for: timeout)
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let message = first else {
            throw NATSError(.timeout, "no message on \(subscription.subject) within \(timeout)")
        }
        return message
    }
}

/// Reads `count` messages of a subscription in order, failing after `timeout`.
func collect(_ subscription: NATSSubscription, count: Int, timeout: Duration = .seconds(10)) async throws -> [NATSMessage] {
    try await withThrowingTaskGroup(of: [NATSMessage]?.self) { group in
        group.addTask {
            var messages: [NATSMessage] = []
            for try await message in subscription {
                messages.append(message)
                if messages.count == count { break }
            }
            return messages
        }
        group.addTask {
            try await Task.sleep(for: timeout)
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let messages = first else {
            throw NATSError(.timeout, "fewer than \(count) messages on \(subscription.subject) within \(timeout)")
        }
        return messages
    }
}

/// The error `body` throws, as a NATSError (nil when it throws nothing or something else).
func natsError(_ body: () async throws -> Void) async -> NATSError? {
    do {
        try await body()
        return nil
    } catch let error as NATSError {
        return error
    } catch {
        return nil
    }
}

extension NATSOptions {
    /// The same options with another server list.
    func withServers(_ urls: [String]) throws -> NATSOptions {
        var options = self
        options.servers = try urls.map(NATSServerAddress.init(parsing:))
        return options
    }
}
