import ArgumentParser
import Logging
import SegmentLog

// The command line's value types: each parses and checks its own text, so ArgumentParser refuses a bad
// value before `run()` (naming the option and showing its help) and `run()` gets a checked value.
// The text given is kept as the description, which is what `--help` shows as the default.

/// A duration: a positive whole number with ms, s, m, h or d (500ms, 30s, 15m, 1h, 30d).
struct DurationArgument: ExpressibleByArgument, CustomStringConvertible, Sendable, Equatable {
    let milliseconds: Int64
    let description: String

    init?(argument: String) {
        guard let milliseconds = Self.milliseconds(argument) else { return nil }
        self.milliseconds = milliseconds
        description = argument
    }

    /// `text` as milliseconds, or nil when it is not a duration.
    static func milliseconds(_ text: String) -> Int64? {
        let units: [(String, Int64)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)]
        for (suffix, factor) in units where text.hasSuffix(suffix) {
            if let n = Int64(text.dropLast(suffix.count)), n > 0, n <= Int64.max / factor { return n * factor }
        }
        return nil
    }

    static let format = "a number with ms, s, m, h or d"
}

/// A size in bytes: a positive whole number, with KiB, MiB or GiB (K, M, G) or none (4096, 64KiB, 4MiB).
struct SizeArgument: ExpressibleByArgument, CustomStringConvertible, Sendable, Equatable {
    let bytes: Int
    let description: String

    init?(argument: String) {
        guard let bytes = Self.bytes(argument) else { return nil }
        self.bytes = bytes
        description = argument
    }

    static func bytes(_ text: String) -> Int? {
        let units: [(String, Int)] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10), ("B", 1)]
        for (suffix, factor) in units where text.hasSuffix(suffix) {
            if let n = Int(text.dropLast(suffix.count)), n > 0, n <= Int.max / factor { return n * factor }
        }
        if let n = Int(text), n > 0 { return n }
        return nil
    }
}

/// When the log fsyncs: `always`, `interval:MS` or `never` (`Durability`).
struct FsyncArgument: ExpressibleByArgument, CustomStringConvertible, Sendable {
    let durability: Durability
    var description: String { durability.description }

    init?(argument: String) {
        guard let durability = Durability(parsing: argument) else { return nil }
        self.durability = durability
    }

    static let always = FsyncArgument(.always)
    private init(_ durability: Durability) { self.durability = durability }
}

/// A swift-log level: trace, debug, info, notice, warning, error or critical.
struct LogLevelArgument: ExpressibleByArgument, CustomStringConvertible, CaseIterable, Sendable {
    let level: Logger.Level
    var description: String { level.rawValue }

    init?(argument: String) {
        guard let level = Logger.Level(rawValue: argument) else { return nil }
        self.level = level
    }

    private init(_ level: Logger.Level) { self.level = level }
    static let info = LogLevelArgument(.info)
    static var allCases: [LogLevelArgument] { Logger.Level.allCases.map(LogLevelArgument.init) }
    static var allValueStrings: [String] { allCases.map(\.description) }
}

extension DurationArgument {
    /// A default written in code; `text` must be a duration (checked by the CLI's unit tests).
    init(default text: String) {
        milliseconds = Self.milliseconds(text) ?? 0
        description = text
    }
}

extension SizeArgument {
    /// A default written in code; `text` must be a size (checked by the CLI's unit tests).
    init(default text: String) {
        bytes = Self.bytes(text) ?? 0
        description = text
    }
}
