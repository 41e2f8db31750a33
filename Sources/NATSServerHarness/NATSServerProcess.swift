import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A real `nats-server` process on 127.0.0.1, with JetStream on in a store folder of its own, for tests and
/// benchmarks. It is killed when this value is released, and a watchdog kills it (SIGKILL) if the process
/// that started it dies first, so no server outlives a crashed test run.
public final class NATSServerProcess: @unchecked Sendable {
    /// The `server_name` (also the stream leader's name in JetStream's cluster info).
    public let name: String
    /// The client port.
    public let port: Int
    /// The cluster (route) port, when part of a cluster.
    public let clusterPort: Int?
    /// The folder holding the config, the JetStream store and the log.
    public let directory: URL
    private let lock = NSLock()
    private var process: Process?
    private var watchdog: Process?

    /// The path of the `nats-server` to run: `$NATS_SERVER`, else the project's `.venv/bin/nats-server`
    /// (what `scripts/setup.sh` installs), else the first on `PATH`; nil when there is none.
    public static let binary: String? = {
        let fileManager = FileManager.default
        if let path = ProcessInfo.processInfo.environment["NATS_SERVER"], fileManager.isExecutableFile(atPath: path) { return path }
        let venv = repository.appendingPathComponent(".venv/bin/nats-server").path
        if fileManager.isExecutableFile(atPath: venv) { return venv }
        for folder in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
            let path = "\(folder)/nats-server"
            if fileManager.isExecutableFile(atPath: path) { return path }
        }
        return nil
    }()

    /// The checkout this file belongs to.
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The `nats-server --version` line, e.g. `nats-server: v2.15.1`.
    public static var version: String? {
        guard let binary else { return nil }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["--version"]
        let pipe = Pipe()
        process.standardOutput = pipe
        guard (try? process.run()) != nil else { return nil }
        process.waitUntilExit()
        return String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Prepares (does not start) a server.
    /// - Parameters:
    ///   - syncAlways: JetStream's `sync_interval: always` (fsync on every write) instead of the default.
    ///   - routes: the cluster ports of the other servers of the cluster.
    ///   - extraConfig: more lines of configuration (an `authorization { ... }` block, say).
    public init(name: String, directory: URL, port: Int? = nil, clusterPort: Int? = nil, routes: [Int] = [], syncAlways: Bool = false,
                clusterName: String = "presence", extraConfig: String = "") throws {
        self.name = name
        self.directory = directory
        self.port = try port ?? Self.freePort()
        self.clusterPort = clusterPort
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var config = """
        server_name: \(name)
        listen: 127.0.0.1:\(self.port)
        jetstream {
          store_dir: "\(directory.appendingPathComponent("store").path)"
          \(syncAlways ? "sync_interval: always" : "")
        }
        log_file: "\(directory.appendingPathComponent("server.log").path)"
        \(extraConfig)

        """
        if let clusterPort {
            config += """
            cluster {
              name: \(clusterName)
              listen: 127.0.0.1:\(clusterPort)
              routes: [\(routes.map { "nats-route://127.0.0.1:\($0)" }.joined(separator: ", "))]
            }

            """
        }
        try config.write(to: configURL, atomically: true, encoding: .utf8)
    }

    private var configURL: URL { directory.appendingPathComponent("server.conf") }

    /// The client URL.
    public var url: String { "nats://127.0.0.1:\(port)" }

    /// The process id while running.
    public var pid: Int32? { lock.withLock { process?.isRunning == true ? process?.processIdentifier : nil } }

    /// Starts the server and waits (up to `timeout`) until it accepts connections.
    public func start(timeout: Duration = .seconds(10)) throws {
        guard let binary = Self.binary else { throw HarnessError("nats-server not found: run scripts/setup.sh (it installs it into .venv), or set NATS_SERVER") }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["-c", configURL.path]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let watchdog = Process()
        watchdog.executableURL = URL(fileURLWithPath: "/bin/sh")
        let parent = getpid(), child = process.processIdentifier
        watchdog.arguments = ["-c", "while kill -0 \(parent) 2>/dev/null && kill -0 \(child) 2>/dev/null; do sleep 1; done; kill -0 \(child) 2>/dev/null && kill -9 \(child)"]
        watchdog.standardOutput = FileHandle.nullDevice
        watchdog.standardError = FileHandle.nullDevice
        try watchdog.run()
        lock.withLock {
            self.process = process
            self.watchdog = watchdog
        }
        let deadline = ContinuousClock.now + timeout
        while !Self.accepts(port: port) {
            guard process.isRunning else { throw HarnessError("nats-server \(name) exited at start (status \(process.terminationStatus)); log: \(logTail())") }
            guard ContinuousClock.now < deadline else {
                kill()
                throw HarnessError("nats-server \(name) did not listen on \(port) within \(timeout); log: \(logTail())")
            }
            usleep(20_000)
        }
    }

    /// Kills the server with SIGKILL (no shutdown of any kind) and waits for it to be gone.
    public func kill() {
        signal(SIGKILL)
    }

    /// Freezes the server (SIGSTOP): its sockets stay open but it answers nothing, like a hung machine.
    public func pause() {
        if let pid { Glibc.kill(pid, SIGSTOP) }
    }

    /// Lets a paused server run again (SIGCONT).
    public func resume() {
        if let pid { Glibc.kill(pid, SIGCONT) }
    }

    /// Stops the server with SIGTERM (a clean shutdown) and waits for it to be gone.
    public func stop() {
        signal(SIGTERM)
    }

    private func signal(_ number: Int32) {
        let (process, watchdog) = lock.withLock { () -> (Process?, Process?) in
            defer {
                self.process = nil
                self.watchdog = nil
            }
            return (self.process, self.watchdog)
        }
        if let process, process.isRunning {
            Glibc.kill(process.processIdentifier, number)
            Glibc.kill(process.processIdentifier, SIGCONT)  // a paused server must run to die of SIGTERM
            process.waitUntilExit()
        }
        if let watchdog, watchdog.isRunning {
            Glibc.kill(watchdog.processIdentifier, SIGKILL)
            watchdog.waitUntilExit()
        }
    }

    /// The end of the server's log, for error messages.
    public func logTail(_ bytes: Int = 1500) -> String {
        guard let data = try? Data(contentsOf: directory.appendingPathComponent("server.log")) else { return "(no log)" }
        return String(decoding: data.suffix(bytes), as: UTF8.self)
    }

    deinit {
        kill()
    }

    /// A port on 127.0.0.1 that nothing listens on now (the kernel's pick for a socket bound to port 0).
    public static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw HarnessError("socket() failed: errno \(errno)") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { throw HarnessError("bind() failed: errno \(errno)") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard named == 0 else { throw HarnessError("getsockname() failed: errno \(errno)") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// Whether something accepts a TCP connection on 127.0.0.1:`port`.
    static func accepts(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
    }
}

/// Three (or more) JetStream servers on loopback, routed to each other.
public final class NATSCluster: @unchecked Sendable {
    public let servers: [NATSServerProcess]
    public let directory: URL

    /// Prepares `size` servers named `n1`, `n2`... under a new temporary folder (removed by ``removeFiles()``).
    public init(size: Int = 3, syncAlways: Bool = false, directory: URL? = nil) throws {
        let directory = directory ?? FileManager.default.temporaryDirectory.appendingPathComponent("nats-cluster-\(UUID().uuidString)")
        self.directory = directory
        let clusterPorts = try (0..<size).map { _ in try NATSServerProcess.freePort() }
        servers = try (0..<size).map { index in
            try NATSServerProcess(
                name: "n\(index + 1)", directory: directory.appendingPathComponent("n\(index + 1)"),
                clusterPort: clusterPorts[index], routes: clusterPorts.enumerated().filter { $0.offset != index }.map(\.element),
                syncAlways: syncAlways
            )
        }
    }

    /// Starts every server.
    public func start() throws {
        for server in servers { try server.start() }
    }

    /// The client URLs of all servers.
    public var urls: [String] { servers.map(\.url) }

    /// The server named `name`.
    public func server(named name: String) -> NATSServerProcess? { servers.first { $0.name == name } }

    /// Kills every server.
    public func kill() {
        for server in servers { server.kill() }
    }

    /// Removes the servers' folder (after ``kill()``).
    public func removeFiles() {
        try? FileManager.default.removeItem(at: directory)
    }

    deinit {
        kill()
    }
}

/// A harness failure, in words.
public struct HarnessError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
