import ArgumentParser
import Presence
import Projector
import SegmentLog

#if canImport(Glibc)
import Glibc
#endif

struct ReplayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Rebuild the presence state from the log and summarize it.",
        discussion: """
            Folds every event of the log (or those up to --until / --until-offset) into the online and \
            last-seen state, by the rules in docs/ARCHITECTURE.md, and prints how many events, users and \
            online users there are, how long it took, and the memory the state holds. Reads only: it can \
            run beside a writer.
            """
    )

    @Option(name: .long, help: ArgumentHelp("The data directory.", valueName: "dir"))
    var data: String

    @Option(help: ArgumentHelp("Fold only events whose time is at or before this (ISO-8601 or epoch ms).", valueName: "time"))
    var until: String?

    @Option(parsing: .unconditional, help: ArgumentHelp("Fold only records below this log offset (0 or more).", valueName: "offset"))
    var untilOffset: Int64?

    @OptionGroup var horizon: HorizonOption

    @Flag(help: "Write a checkpoint of the result into DIR/checkpoints (keeps the newest two).")
    var checkpoint = false

    @Flag(help: "Start from the newest valid checkpoint and replay only the log after it (a restart).")
    var resume = false

    @Flag(help: "Keep the replay on one thread: read and decode on the thread that folds, and let it fault in its own fresh memory (by default a second thread reads ahead and a third prepares pages). For a machine shared with other work, or to measure a replay on one core.")
    var singleThread = false

    @Flag(help: "No progress line, even on a terminal.")
    var quiet = false

    func run() throws {
        do {
            // Writing a checkpoint makes this a writer of DIR: a running server (or ingest) holds the
            // writer lock, and checkpoints appearing under it would be loaded by its next start. Take the
            // lock for the whole replay, and refuse before reading or writing anything if another has it.
            let writerLock = checkpoint ? try lockForCheckpoint() : nil
            try withExtendedLifetime(writerLock) { try replay() }
        } catch {
            throw fail(error)
        }
    }

    private func replay() throws {
        if until != nil && untilOffset != nil { throw ValidationError("give --until or --until-offset, not both") }
        if let untilOffset, untilOffset < 0 { throw ValidationError("--until-offset must be a log offset ≥ 0, not \(untilOffset)") }
        let time = try until.map { try parseTime($0, option: "--until") }
        let started = now()
        let horizonMilliseconds = try horizon.forReading(data: data)
        if singleThread { PresenceProjection.warmsPagesInBackground = false }
        let progress = Progress(enabled: !quiet && isatty(2) == 1, started: started)
        let restored = try Replay.restore(data: data, logDirectory: presenceLogPath(data), horizon: horizonMilliseconds, fromCheckpoint: resume,
                                          untilOffset: untilOffset, at: time, readAhead: !singleThread) {
            progress.update(events: $0, bytesRead: 0)
        }
        let projection = restored.projection, summary = restored.summary
        if resume {
            for skipped in restored.checkpoint.skipped { printError("checkpoint skipped: \(skipped)") }
            if let used = restored.checkpoint.used {
                let checkpointOffset = summary.endOffset - Int64(summary.events + summary.skippedAfterTime)
                print("resumed from \(used) (offset \(checkpointOffset)) in \(fixed(now() - started, 2)) s")
            } else {
                print("no checkpoint; replaying the whole log")
            }
        }
        progress.finish()
        let elapsed = max(now() - started, 1e-9)
        let memory = projection.memoryBytes
        let firstOffset = summary.endOffset - Int64(summary.events + summary.skippedAfterTime)
        if summary.events + summary.skippedAfterTime == 0 {
            print("replayed no events: the log has none after offset \(projection.nextOffset - 1) (ready in \(fixed(elapsed, 2)) s)")
        } else {
            print("replayed \(counted(summary.events, "event")) (offsets \(firstOffset)-\(summary.endOffset - 1)) in \(fixed(elapsed, 2)) s: \(rateText(Double(summary.events) / elapsed)) events/s")
        }
        if summary.skippedAfterTime > 0 { print("skipped \(counted(summary.skippedAfterTime, "event")) after \(until ?? "")") }
        if projection.refusedEvents > 0 {
            print("refused \(counted(projection.refusedEvents, "event")) older than the late-arrival horizon (\(LateArrivalGuard.durationText(horizonMilliseconds)))")
        }
        print("\(counted(projection.userCount, "user")), \(grouped(projection.onlineUsers)) online now, \(counted(projection.openConnectionCount, "connection")) open, \(counted(projection.connectionCount, "connection")) remembered" + (projection.forgottenConnectionCount > 0 ? " (\(grouped(projection.forgottenConnectionCount)) closed before the horizon forgotten)" : ""))
        if projection.maxTimestamp != Int64.min { print("newest event time \(Timestamp.format(projection.maxTimestamp))") }
        let perUser = projection.userCount > 0 ? Double(memory.users) / Double(projection.userCount) : 0
        let perConnection = projection.connectionCount > 0 ? Double(memory.connections) / Double(projection.connectionCount) : 0
        print("memory: users \(bytesText(Int64(memory.users))) (\(fixed(perUser, 1)) bytes/user), connections \(bytesText(Int64(memory.connections))) (\(fixed(perConnection, 1)) bytes/connection)")
        if let torn = summary.tornTail { printError("warning: \(torn)") }
        if checkpoint {
            let written = try Checkpoint.write(projection, to: Checkpoint.directory(data: data))
            print("checkpoint \(written.path): \(bytesText(Int64(written.bytes))), through offset \(projection.nextOffset - 1)")
        }
    }
}

extension ReplayCommand {
    /// The data directory's writer lock, for `--checkpoint`; an existing DIR only (a replay creates nothing).
    private func lockForCheckpoint() throws -> DataDirectory {
        _ = try LogReader(directory: presenceLogPath(data))  // the log must be there: no directory is created
        do {
            return try DataDirectory(path: data)
        } catch {
            guard error.code == .locked else { throw error }
            throw LogError(.locked, "--checkpoint: \(error.message), or replay without --checkpoint (which only reads); nothing was written")
        }
    }
}

struct StateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "state",
        abstract: "Who is online and when each user was last seen, now or at a time.",
        discussion: """
            Folds the log (events up to --at, when given) and prints each user's state, sorted by user id. \
            --format json prints one object per line, such as:

              {"user":"bob","online":false,"last_seen":"2024-01-15T09:42:00.000Z",
               "connections":0}

            A user the log never mentions is offline with a null last_seen.
            """
    )

    enum Format: String, ExpressibleByArgument, CaseIterable { case table, json }

    @Option(name: .long, help: ArgumentHelp("The data directory.", valueName: "dir"))
    var data: String

    @Option(help: ArgumentHelp("Only this user (repeat for several).", valueName: "user"))
    var user: [String] = []

    @Option(help: ArgumentHelp("The state at this time (ISO-8601 or epoch ms): the fold of the events up to it.", valueName: "time"))
    var at: String?

    @Option(help: "table or json.")
    var format: Format = .table

    @Flag(help: "Fold the whole log instead of starting from the newest checkpoint.")
    var noCheckpoint = false

    @OptionGroup var horizon: HorizonOption

    func validate() throws {
        for id in user { try validateUserOption(id) }
    }

    func run() throws {
        do {
            try state()
        } catch {
            throw fail(error)
        }
    }

    private func state() throws {
        let time = try at.map { try parseTime($0, option: "--at") }
        let horizonMilliseconds = try horizon.forReading(data: data)
        let restored = try Replay.restore(data: data, logDirectory: presenceLogPath(data), horizon: horizonMilliseconds,
                                          fromCheckpoint: !noCheckpoint, at: time)
        // A checkpoint newer than --at is the usual case for a state in the past, not news; any other skip
        // (damage, another layout or horizon) is still said.
        for skipped in restored.checkpoint.skipped where !(time != nil && skipped.hasSuffix(": holds events after the requested time")) {
            printError("checkpoint skipped: \(skipped)")
        }
        let projection = restored.projection, summary = restored.summary
        var states: [PresenceProjection.UserState]
        if user.isEmpty {
            states = projection.allStates()
        } else {
            states = Set(user).sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }.map {
                projection.state(of: $0) ?? .init(user: $0, online: false, lastSeen: nil, connections: 0)
            }
        }
        var out: [UInt8] = []
        switch format {
        case .json:
            for state in states {
                out.append(contentsOf: "{\"user\":".utf8)
                EventJSON.appendString(state.user, to: &out)
                out.append(44)
                state.appendJSONFields(to: &out)
                out.append(contentsOf: "}\n".utf8)
                if out.count >= 1 << 20 {
                    try out.withUnsafeBytes { try writeAll(1, $0) }
                    out.removeAll(keepingCapacity: true)
                }
            }
        case .table:
            // Columns line up on a terminal by display width: 用 and 🙂 take two columns, a combining accent none.
            let width = max(4, states.map { displayWidth($0.user) }.max() ?? 0)
            out.append(contentsOf: ("user".padding(toWidth: width) + "  online  last seen                 connections\n").utf8)
            for state in states {
                let lastSeen = state.lastSeen.map(Timestamp.format) ?? "-"
                let line = state.user.padding(toWidth: width) + "  " + (state.online ? "yes" : "no").padding(toLength: 6) + "  "
                    + lastSeen.padding(toLength: 24) + "  " + String(state.connections) + "\n"
                out.append(contentsOf: line.utf8)
            }
            let at = time.map { " at \(Timestamp.format($0))" } ?? ""
            // Both counts are of the users shown (with --user, of those users; else of every user).
            let online = states.reduce(0) { $0 + ($1.online ? 1 : 0) }
            out.append(contentsOf: "\(counted(states.count, "user")) shown\(at); \(grouped(online)) of \(grouped(states.count)) online; state through offset \(max(summary.endOffset, projection.nextOffset) - 1)\n".utf8)
        }
        try out.withUnsafeBytes { try writeAll(1, $0) }
        if let torn = summary.tornTail { printError("warning: \(torn)") }
    }
}

struct HistoryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "history",
        abstract: "A user's sessions: device (conn), gateway, start, end, end reason, duration.",
        discussion: """
            Answers "was Bob online at 09:30?": every session that overlaps --from ... --to, in order of \
            start, by the rules in docs/ARCHITECTURE.md (a device that reconnects with the same conn id \
            has one session per connect after an end). A session whose start is unknown (a disconnect \
            with no connect before it: the log began mid-session) is listed with start "-" (null in \
            JSON) and counts only for last seen.
            """
    )

    enum Format: String, ExpressibleByArgument, CaseIterable { case table, json }

    @Option(name: .long, help: ArgumentHelp("The data directory.", valueName: "dir"))
    var data: String

    // An array, so that a second --user is seen and refused rather than silently replacing the first.
    @Option(name: .customLong("user"), help: ArgumentHelp("The user (once: run history once per user).", valueName: "user"))
    var users: [String] = []

    /// The one user asked about (`validate` saw to it).
    var user: String { users.first ?? "" }

    @Option(help: ArgumentHelp("Only sessions still open at or after this time.", valueName: "time"))
    var from: String?

    @Option(help: ArgumentHelp("Only sessions that began at or before this time.", valueName: "time"))
    var to: String?

    @Option(help: "table or json.")
    var format: Format = .table

    @OptionGroup var horizon: HorizonOption

    func validate() throws {
        guard users.count == 1 else {
            throw ValidationError(users.isEmpty ? "Missing expected argument '--user <user>'"
                                  : "--user is given \(users.count) times (\(users.joined(separator: ", "))); history shows one user's sessions: run it once per user")
        }
        try validateUserOption(user)
    }

    func run() throws {
        do {
            try history()
        } catch {
            throw fail(error)
        }
    }

    private func history() throws {
        let fromTime = try from.map { try parseTime($0, option: "--from") }
        let toTime = try to.map { try parseTime($0, option: "--to") }
        let sessions = try History.sessions(logDirectory: presenceLogPath(data), user: user, horizon: try horizon.forReading(data: data),
                                            from: fromTime, to: toTime)
        switch format {
        case .json:
            for session in sessions {
                var out: [UInt8] = []
                session.appendJSON(to: &out)
                print(String(decoding: out, as: UTF8.self))
            }
        case .table:
            let width = max(4, sessions.map { $0.conn.count }.max() ?? 0)
            let gatewayWidth = max(7, sessions.map { $0.gateway.count }.max() ?? 0)
            print("conn".padding(toLength: width) + "  " + "gateway".padding(toLength: gatewayWidth)
                  + "  start                     end                       reason        duration")
            for session in sessions {
                print(session.conn.padding(toLength: width) + "  " + session.gateway.padding(toLength: gatewayWidth) + "  "
                      + (session.start.map(Timestamp.format) ?? "-").padding(toLength: 24) + "  "
                      + (session.end.map(Timestamp.format) ?? "(open)").padding(toLength: 24) + "  "
                      + (session.reason?.name ?? "-").padding(toLength: 12) + "  " + (session.duration.map(durationText) ?? "-"))
            }
            print("\(sessions.count) session\(sessions.count == 1 ? "" : "s") of \(user)")
        }
    }
}

/// 3723004 ms -> "1h 2m 3.004s".
func durationText(_ ms: Int64) -> String {
    var parts: [String] = []
    let hours = ms / 3_600_000, minutes = ms / 60_000 % 60
    if hours > 0 { parts.append("\(hours)h") }
    if minutes > 0 || hours > 0 { parts.append("\(minutes)m") }
    let seconds = Double(ms % 60_000) / 1000
    parts.append(fixed(seconds, ms % 1000 == 0 ? 0 : 3) + "s")
    return parts.joined(separator: " ")
}

/// A `--user` value must be a user id the log can hold: 1 to 256 bytes.
func validateUserOption(_ user: String) throws {
    guard !user.isEmpty else { throw ValidationError("--user must not be empty") }
    guard user.utf8.count <= PresenceEvent.Limits.userBytes else {
        throw ValidationError("--user is \(user.utf8.count) bytes; user ids are at most \(PresenceEvent.Limits.userBytes)")
    }
}
