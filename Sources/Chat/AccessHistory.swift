import Foundation
import SegmentLog

/// Who could see what at a past time, re-derived from the logs alone: the conversations created up to
/// then (the messages log: who were contacts) and the settings in force then (the privacy log). It asks
/// the same rule the server asks (`Access.visibility`), so `presence state --viewer V --at T` and
/// `presence audit --privacy` answer with the server's rule, not a copy of it.
public struct AccessAt: Sendable {
    /// The time it answers for (ms); nil: after every record.
    public let time: Int64?
    /// The settings in force at `time`.
    public let privacy: PrivacyTable
    /// Each user's conversations created at or before `time`.
    let memberships: [String: Set<String>]

    public init(time: Int64?, privacy: PrivacyTable, memberships: [String: Set<String>]) {
        self.time = time
        self.privacy = privacy
        self.memberships = memberships
    }

    /// Reads the messages and privacy logs of a data directory up to `time` (a missing log is empty).
    public static func read(data: String, at time: Int64?) throws -> AccessAt {
        let root = data.hasSuffix("/") ? String(data.dropLast()) : data
        let privacy = try PrivacyStore.table(logDirectory: root + "/" + PrivacyStore.logName, until: time)
        var memberships: [String: Set<String>] = [:]
        try ConversationStore.forEachCreation(logDirectory: root + "/" + ConversationStore.logName) { creation in
            if let time, creation.timestamp > time { return false }
            for member in creation.members { memberships[member, default: []].insert(creation.id) }
            return true
        }
        return AccessAt(time: time, privacy: privacy, memberships: memberships)
    }

    /// Whether `a` and `b` shared a conversation at `time` (or are the same user).
    public func areContacts(_ a: String, _ b: String) -> Bool {
        if a == b { return true }
        guard let mine = memberships[a], let theirs = memberships[b] else { return false }
        return !mine.isDisjoint(with: theirs)
    }

    /// Which of `subject`'s fields `viewer` was shown at `time`.
    public func visibility(of subject: String, to viewer: String) -> Visibility {
        Access.visibility(of: subject, to: viewer, subjectSettings: privacy[subject], viewerSettings: privacy[viewer],
                          contacts: areContacts(viewer, subject))
    }
}

extension ConversationStore {
    /// One conversation's creation in the messages log.
    public struct Creation: Sendable {
        public var id: String
        public var members: [String]
        public var timestamp: Int64
    }

    /// Calls `body` with every conversation's creation in log order until it returns false (the same
    /// reading of a `created` record as the store's).
    public static func forEachCreation(logDirectory: String, _ body: (Creation) throws -> Bool) throws {
        guard FileSystem.isDirectory(logDirectory) else { return }
        var seen = Set<String>()
        _ = try LogReader(directory: logDirectory).forEachRecord { record in
            guard let key = record.key, let value = record.value,
                  case .created(let members, _)? = value.withUnsafeBytes({ MessageRecord.parse($0) }) else { return true }
            let id = String(decoding: key, as: UTF8.self)
            guard seen.insert(id).inserted else { return true }
            return try body(Creation(id: id, members: members, timestamp: record.timestamp))
        }
    }
}
