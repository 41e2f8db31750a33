import ArgumentParser
import Presence
import PresenceServer
import SegmentLog

#if canImport(Glibc)
import Glibc
#endif

/// This build's version, as `presence --version` prints it.
let presenceVersion = "0.9.0"

@main
struct PresenceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "presence",
        abstract: "PresenceLog: a durable, Kafka-format log of who is online, and the tools around it.",
        discussion: """
            Every command takes --data DIR, the data directory (created on first ingest). Events go to \
            the log DIR/presence.

            \(ExitStatus.summary)
            """,
        version: presenceVersion,
        subcommands: [IngestCommand.self, DumpCommand.self, LogInfoCommand.self, ReplayCommand.self, StateCommand.self, HistoryCommand.self, MessagesCommand.self, AuditCommand.self, RetainCommand.self, ForgetCommand.self, ServeCommand.self, TokenCommand.self, APICommand.self]
    )

    /// ArgumentParser's `help` shows the top-level help, and exits 0, for a topic it does not know:
    /// `presence help nosuch` is a mistake, said as one.
    static func main() async {
        let arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.first == "help", let topic = arguments.dropFirst().first(where: { !$0.hasPrefix("-") }),
           !configuration.subcommands.contains(where: { $0.configuration.commandName == topic }) {
            let topics = configuration.subcommands.compactMap { $0.configuration.commandName }.joined(separator: ", ")
            printError("error: no help topic '\(topic)': use one of \(topics)")
            Glibc.exit(ExitStatus.badArguments.rawValue)
        }
        await main(nil)
    }
}

/// The exit codes every command uses, and their documentation (README "Exit codes", `presence help`).
enum ExitStatus: Int32 {
    case success = 0
    /// I/O, a data directory in use, the port taken: the command was right, the machine said no.
    case failure = 1
    /// Input lines rejected (ingest).
    case rejected = 2
    /// The log (or a checkpoint, for audit) is corrupt.
    case corrupt = 3
    /// Bad arguments: an unknown or missing option, a value out of range, a --data with no log. The
    /// same code ArgumentParser gives its own parse errors (sysexits' EX_USAGE).
    case badArguments = 64

    var exitCode: ExitCode { ExitCode(rawValue) }

    static let summary = """
        Exit codes: 0 success, 1 failure (I/O, the data directory in use, the port taken), 2 input lines \
        rejected, 3 the log is corrupt, 64 bad arguments (an unknown or missing option, a value out of \
        range, a --data without a log). `audit` answers with its own: 0 clean, 1 anomalies, 2 corrupt.
        """
}

/// A failure that is not the arguments' fault (I/O on the input or output): exit 1.
struct CommandFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Maps a failure to the exit codes the commands document, after printing it.
func fail(_ error: any Error) -> ExitCode {
    if let error = error as? LogError {
        printError("error: \(error.message)")
        switch error.code {
        case .corrupt: return ExitStatus.corrupt.exitCode
        case .invalidArgument: return ExitStatus.badArguments.exitCode
        default: return ExitStatus.failure.exitCode
        }
    }
    if let error = error as? ValidationError { printError("error: \(error.message)"); return ExitStatus.badArguments.exitCode }
    if let error = error as? ServerError {
        printError("error: \(error.description)")
        return error.isUsage ? ExitStatus.badArguments.exitCode : ExitStatus.failure.exitCode
    }
    printError("error: \(error)")
    return ExitStatus.failure.exitCode
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
            throw CommandFailure("write to output failed: \(String(cString: strerror(errno)))")
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

/// 1 -> "1 event", 1234 -> "1,234 events": a count with its noun, singular for one.
func counted(_ n: Int, _ noun: String) -> String {
    "\(grouped(n)) \(noun)\(n == 1 ? "" : "s")"
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
