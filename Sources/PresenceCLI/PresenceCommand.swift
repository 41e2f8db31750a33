import ArgumentParser
import Presence
import SegmentLog

#if canImport(Glibc)
import Glibc
#endif

@main
struct PresenceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "presence",
        abstract: "PresenceLog: a durable, Kafka-format log of who is online, and the tools around it.",
        discussion: """
            Every command takes --data DIR, the data directory (created on first ingest). Events go to \
            the log DIR/presence. Exit codes: 0 success, 1 failure, 2 input lines rejected, 3 the log is corrupt.
            """,
        subcommands: [IngestCommand.self, DumpCommand.self, LogInfoCommand.self, ReplayCommand.self, StateCommand.self, HistoryCommand.self, AuditCommand.self, ServeCommand.self, TokenCommand.self]
    )
}

/// Maps a failure to the exit codes the commands document, after printing it.
func fail(_ error: any Error) -> ExitCode {
    if let error = error as? LogError {
        printError("error: \(error.message)")
        return error.code == .corrupt ? ExitCode(3) : ExitCode(1)
    }
    if let error = error as? ValidationError { printError("error: \(error.message)"); return ExitCode(1) }
    printError("error: \(error)")
    return ExitCode(1)
}

/// Writes a line to standard error, unbuffered.
func printError(_ line: String) {
    var text = line + "\n"
    text.withUTF8 { bytes in
        try? writeAll(2, UnsafeRawBufferPointer(bytes))
    }
}

/// Writes bytes to a file descriptor, all of them.
func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) throws {
    guard let base = bytes.baseAddress else { return }
    var done = 0
    while done < bytes.count {
        let n = write(fd, base + done, bytes.count - done)
        if n < 0 {
            if errno == EINTR { continue }
            throw ValidationError("write to output failed: \(String(cString: strerror(errno)))")
        }
        done += n
    }
}

/// Parses a time given on the command line: ISO-8601 or epoch milliseconds.
func parseTime(_ text: String, option: String) throws -> Int64 {
    guard let ms = Timestamp.parse(text) else {
        throw ValidationError("\(option) '\(text)' is not a time: use ISO-8601 with a zone (2024-01-15T09:41:03Z) or epoch milliseconds")
    }
    return ms
}

/// Parses sizes such as 4096, 64KiB, 64MiB, 1GiB.
func parseSize(_ text: String, option: String) throws -> Int {
    let units: [(String, Int)] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10), ("B", 1)]
    for (suffix, factor) in units where text.hasSuffix(suffix) {
        if let n = Int(text.dropLast(suffix.count)), n > 0 { return n * factor }
    }
    if let n = Int(text), n > 0 { return n }
    throw ValidationError("\(option) '\(text)' is not a size: use bytes or a suffix KiB, MiB, GiB")
}

/// Parses durations such as 500ms, 30s, 15m, 1h, 1d.
func parseDuration(_ text: String, option: String) throws -> Int64 {
    let units: [(String, Int64)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)]
    for (suffix, factor) in units where text.hasSuffix(suffix) {
        if let n = Int64(text.dropLast(suffix.count)), n > 0 { return n * factor }
    }
    throw ValidationError("\(option) '\(text)' is not a duration: use a number with ms, s, m, h or d")
}

/// The log folder for presence events in a data directory.
func presenceLogPath(_ data: String) -> String {
    (data.hasSuffix("/") ? String(data.dropLast()) : data) + "/" + presenceLogName
}

/// The bytes of a log's files on disk.
func logBytesOnDisk(_ directory: String) -> Int64 {
    guard let dir = opendir(directory) else { return 0 }
    defer { closedir(dir) }
    var total: Int64 = 0
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        guard name.hasSuffix(".log") || name.hasSuffix(".index") || name.hasSuffix(".timeindex") else { continue }
        var info = stat()
        if stat(directory + "/" + name, &info) == 0 { total += Int64(info.st_size) }
    }
    return total
}

/// A monotonic clock in seconds.
func now() -> Double {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
}

/// 1234567 -> "1,234,567".
func grouped(_ n: Int) -> String {
    let digits = String(n)
    var out = ""
    for (i, c) in digits.enumerated() {
        if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
        out.append(c)
    }
    return out
}

func fixed(_ value: Double, _ places: Int) -> String {
    var scale = 1.0
    for _ in 0..<places { scale *= 10 }
    let rounded = (value * scale).rounded() / scale
    var text = String(rounded)
    if let dot = text.firstIndex(of: ".") {
        let decimals = text.distance(from: dot, to: text.endIndex) - 1
        if decimals < places { text += String(repeating: "0", count: places - decimals) }
        if places == 0 { text = String(text[..<dot]) }
    }
    return text
}

/// Human-readable byte counts.
func bytesText(_ n: Int64) -> String {
    let value = Double(n)
    if value >= Double(1 << 30) { return fixed(value / Double(1 << 30), 2) + " GiB" }
    if value >= Double(1 << 20) { return fixed(value / Double(1 << 20), 1) + " MiB" }
    if value >= Double(1 << 10) { return fixed(value / Double(1 << 10), 1) + " KiB" }
    return "\(n) B"
}

/// Events per second, in a compact form.
func rateText(_ perSecond: Double) -> String {
    if perSecond >= 1e6 { return fixed(perSecond / 1e6, 2) + "M" }
    if perSecond >= 1e3 { return fixed(perSecond / 1e3, 1) + "k" }
    return fixed(perSecond, 0)
}
