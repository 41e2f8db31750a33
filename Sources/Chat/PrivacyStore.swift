import Foundation
import SegmentLog
import Synchronization

/// Users' privacy settings, event-sourced in their own log `privacy/` (same engine, same data-directory
/// lock as the presence and messages logs).
///
/// Each record's key is the user id, its timestamp the server's time of the change (ms, never earlier
/// than the record before it, so "the settings in force at T" is the last record at or before T), and
/// its value a JSON object, keys sorted:
///
///     {"settings":{"last_seen":{"except":["carol"],"who":"contacts"},"online":{"except":[],"who":"everyone"}},"type":"settings"}
///
/// The whole settings after the change, not a difference, so a record is read on its own. The table is
/// rebuilt from the log at start and changed on the writer's commit thread, after the record is durable
/// and before the request is answered; a server installs it under its own lock (`applyHook`) so that
/// its pushes and snapshots see each change at one point of their order.
public final class PrivacyStore: @unchecked Sendable {
    // @unchecked: `table` and `lastTimestamp` are touched only under `lock`; `applyHook` is set once before use.
    private let lock = NSLock()
    private var table = PrivacyTable()
    private var lastTimestamp: Int64 = 0
    private let changes = Atomic<Int64>(0)
    public let writer: LogWriter

    public static let logName = "privacy"

    /// Called on the commit thread with each durable change, in log order, with `install` (which puts the
    /// new settings in the table and returns the old ones). Unset, the store installs them itself.
    public var applyHook: (@Sendable (_ user: String, _ install: () -> (old: PrivacySettings, new: PrivacySettings)) -> Void)?

    /// A privacy log record's value.
    struct Record: Codable {
        var type: String
        var settings: PrivacySettings?
    }

    /// Opens the privacy log (creating it) and rebuilds the table from it.
    public init(directory: DataDirectory, configuration: LogConfiguration, report: (String) -> Void) throws {
        let log = try directory.openLog(Self.logName, configuration: configuration, report: report)
        writer = LogWriter(log: log)
        table = try Self.table(logDirectory: log.directory, until: nil)
        lastTimestamp = log.maxTimestamp ?? 0
    }

    /// Drops `user`'s settings (an erasure removed their records from the log: they have the defaults
    /// again) and counts a change, so answers cached with the table are built again. Call with the
    /// writer paused (`LogWriter.pause()`) and the user's changes held (`holdingChanges`).
    public func forget(_ user: String) {
        lock.withLock { table.remove(user) }
        changes.add(1, ordering: .releasing)
    }

    /// The settings in force now (a copy).
    public var current: PrivacyTable { lock.withLock { table } }

    /// How many changes were installed since start: a reader that cached an answer built from the table
    /// compares it (read before building) to know the answer is still current.
    public var version: Int64 { changes.load(ordering: .acquiring) }

    /// Cluster mode: publishes records of `PrivacyStore.updateRecord` to the cluster's PRIVACY stream and
    /// returns what this node's materializer made of them (`commitUpdates`, the settings then in force).
    /// Unset (one node), `update` appends to the local log itself.
    public var replicate: (@Sendable (RecordBuffer) async throws -> [PrivacySettings?])?

    /// A change as it travels through the cluster's stream: the update, not the settings after it, so two
    /// nodes changing one user's two fields at once both count (each node applies them in stream order).
    struct UpdateRecord: Codable {
        var type = "update"
        var lastSeen: AudienceRule?
        var online: AudienceRule?
        enum CodingKeys: String, CodingKey { case type, lastSeen = "last_seen", online }
    }

    /// Applies `update` to `user`'s settings durably; returns the settings now in force.
    public func update(_ user: String, _ update: PrivacyUpdate) async throws -> PrivacySettings {
        if let replicate {
            var records = RecordBuffer()
            let value = Array(try JSONEncoder.sorted.encode(UpdateRecord(lastSeen: update.lastSeen, online: update.online)))
            records.append(timestamp: Self.now(), key: Array(user.utf8), value: value)
            guard let settings = try await replicate(records).first ?? nil else {
                throw LogError(.refused, "the cluster's privacy stream did not apply the change")
            }
            return settings
        }
        // Changes of one user are decided one after the other: a PUT of one field keeps the other as the
        // previous PUT left it.
        return try await claims.holding([user]) {
            let settings = update.applied(to: current[user])
            let value = Array(try JSONEncoder.sorted.encode(Record(type: "settings", settings: settings)))
            let result: Result<Void, LogError> = await withCheckedContinuation { continuation in
                // The time and the append are taken under the lock: records are appended in time order.
                lock.lock()
                let timestamp = max(lastTimestamp, Self.now())
                lastTimestamp = timestamp
                var records = RecordBuffer()
                records.append(timestamp: timestamp, key: Array(user.utf8), value: value)
                writer.append(records) { [self] result in
                    switch result {
                    case .success:
                        install(settings, of: user)
                        continuation.resume(returning: .success(()))
                    case .failure(let error):
                        continuation.resume(returning: .failure(error))
                    }
                }
                lock.unlock()
            }
            try result.get()
            return settings
        }
    }

    private let claims = InFlightClaims<String>()

    /// Runs `body` with `user`'s settings changes held off: one under way is finished (written and
    /// installed) first, and one asked meanwhile reads the settings only once `body` is done (an erasure
    /// of the user then leaves no change made from their erased settings).
    public func holdingChanges<T>(of user: String, _ body: () async throws -> T) async rethrows -> T {
        try await claims.holding([user], body)
    }

    /// Puts a durable change in the table, through `applyHook` when the server set one (commit thread).
    private func install(_ settings: PrivacySettings, of user: String) {
        let install = { [self] () -> (old: PrivacySettings, new: PrivacySettings) in
            lock.withLock {
                let old = table[user]
                table[user] = settings
                changes.add(1, ordering: .releasing)
                return (old, settings)
            }
        }
        if let applyHook { applyHook(user, install) } else { _ = install() }
    }

    private static func now() -> Int64 { Int64((Date().timeIntervalSince1970 * 1000).rounded(.down)) }

    /// Cluster mode, on the PRIVACY stream's materializer (one message at a time, in stream order, alike
    /// on every node): each update record of `records` applied to the settings in force, the settings
    /// after it appended to the local log (at the record's time, or the log's last time if that is
    /// later: the log stays in time order whatever the nodes' clocks say) and installed. The settings per
    /// record, nil for one that is not an update (skipped: the same on every node).
    public func commitUpdates(_ records: RecordBuffer) async throws -> [PrivacySettings?] {
        var out = RecordBuffer()
        var results: [PrivacySettings?] = []
        var changed: [(user: String, settings: PrivacySettings)] = []
        var overlay: [String: PrivacySettings] = [:]
        var timestamp = lock.withLock { lastTimestamp }
        for index in 0..<records.count {
            guard let key = records.key(at: index), let user = String(validating: key, as: UTF8.self), !user.isEmpty,
                  let update = records.withRecord(at: index, { _, value in
                      try? JSONDecoder().decode(UpdateRecord.self, from: Data(value))
                  }), update.type == "update"
            else {
                results.append(nil)
                continue
            }
            let settings = PrivacyUpdate(lastSeen: update.lastSeen, online: update.online).applied(to: overlay[user] ?? current[user])
            overlay[user] = settings
            timestamp = max(timestamp, records.timestamp(at: index))
            out.append(timestamp: timestamp, key: key, value: Array(try JSONEncoder.sorted.encode(Record(type: "settings", settings: settings))))
            results.append(settings)
            changed.append((user, settings))
        }
        guard !changed.isEmpty else { return results }
        let installs = changed, newest = timestamp
        let result: Result<Void, LogError> = await withCheckedContinuation { continuation in
            writer.append(out) { [self] result in
                if case .success = result {
                    lock.withLock { lastTimestamp = max(lastTimestamp, newest) }
                    for (user, settings) in installs {
                        install(settings, of: user)
                    }
                }
                continuation.resume(returning: result.map { _ in () })
            }
        }
        try result.get()
        return results
    }

    /// The settings in force at `until` (ms; nil: all of the log) as the privacy log in `logDirectory`
    /// says. A record this build cannot read is skipped (the log's CRCs vouch for its bytes; `presence
    /// audit --privacy` reports it).
    public static func table(logDirectory: String, until: Int64?) throws -> PrivacyTable {
        var table = PrivacyTable()
        try forEachChange(logDirectory: logDirectory) { change in
            if let until, change.timestamp > until { return false }
            table[change.user] = change.settings
            return true
        }
        return table
    }

    /// One settings change of the privacy log.
    public struct Change: Sendable {
        public var offset: Int64
        public var timestamp: Int64
        public var user: String
        public var settings: PrivacySettings
    }

    /// A record of the privacy log this build cannot read: its offset and why.
    public struct Unreadable: Sendable {
        public var offset: Int64
        public var reason: String
    }

    /// Calls `body` with every settings change in log order until it returns false; `unreadable` gets
    /// each record that is not one.
    public static func forEachChange(logDirectory: String, unreadable: (Unreadable) -> Void = { _ in },
                                     _ body: (Change) throws -> Bool) throws {
        guard FileSystem.isDirectory(logDirectory) else { return }
        let reader = try LogReader(directory: logDirectory)
        _ = try reader.forEachRecord { record in
            guard let key = record.key, let user = String(validating: key, as: UTF8.self), !user.isEmpty else {
                unreadable(Unreadable(offset: record.offset, reason: "the record has no user id as its key"))
                return true
            }
            guard let value = record.value, let decoded = try? JSONDecoder().decode(Record.self, from: Data(value)) else {
                unreadable(Unreadable(offset: record.offset, reason: "the value of \(user)'s record is not a settings record"))
                return true
            }
            guard decoded.type == "settings", let settings = decoded.settings else {
                unreadable(Unreadable(offset: record.offset, reason: "\(user)'s record has type \"\(decoded.type)\", not settings"))
                return true
            }
            return try body(Change(offset: record.offset, timestamp: record.timestamp, user: user, settings: settings))
        }
    }
}

extension JSONEncoder {
    /// Keys sorted, slashes left alone: the same value always has the same bytes.
    static var sorted: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }
}
