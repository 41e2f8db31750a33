import Chat
import Foundation
import Presence
import SegmentLog

/// `presence audit --privacy`: checks the privacy log the server's answers were decided by, and
/// re-derives from the logs who could see whom.
///
/// The server logs no answers. What makes every answer checkable is that each one was decided by the
/// rule (`Access.visibility`) from three logs: the presence log at the answer's cursor, the settings in
/// force (the privacy log, whose record times say from when) and the conversations created by then
/// (the messages log). This audit checks the privacy log can be read that way: every record readable
/// and valid, in time order (so "the settings in force at T" has one answer); then re-derives, with the
/// same rule (`AccessAt`), what each user's settings hide at the end of the history, as a summary.
/// `presence state --viewer V --at T` answers for one viewer at any time.
struct PrivacyAudit {
    var records = 0
    var users = Set<String>()
    /// Records that are not settings, or whose settings break the limits: (offset, reason).
    var invalid: [(offset: Int64, reason: String)] = []
    /// Records dated before the record before them: (offset, reason).
    var outOfOrder: [(offset: Int64, reason: String)] = []
    /// At the end of the history: for each field, the (viewer, subject) pairs of contacts the settings hide.
    var hiddenLastSeen = 0
    var hiddenOnline = 0
    var contactPairs = 0

    static func run(data: String) throws -> PrivacyAudit {
        var audit = PrivacyAudit()
        let root = data.hasSuffix("/") ? String(data.dropLast()) : data
        var previous: Int64?
        try PrivacyStore.forEachChange(logDirectory: root + "/" + PrivacyStore.logName, unreadable: { record in
            audit.records += 1
            audit.invalid.append((record.offset, record.reason))
        }) { change in
            audit.records += 1
            audit.users.insert(change.user)
            if let problem = change.settings.problem { audit.invalid.append((change.offset, "\(change.user)'s settings: \(problem)")) }
            if let previous, change.timestamp < previous {
                audit.outOfOrder.append((change.offset, "dated \(Timestamp.format(change.timestamp)), before the record before it (\(Timestamp.format(previous)))"))
            }
            previous = max(previous ?? change.timestamp, change.timestamp)
            return true
        }
        // Every pair of contacts at the end of the history, as the rule shows them to each other.
        let access = try AccessAt.read(data: data, at: nil)
        var members: [String: Set<String>] = [:]
        try ConversationStore.forEachCreation(logDirectory: root + "/" + ConversationStore.logName) { creation in
            for member in creation.members { members[member, default: []].formUnion(creation.members) }
            return true
        }
        for (viewer, contacts) in members {
            for subject in contacts where subject != viewer {
                audit.contactPairs += 1
                let shown = access.visibility(of: subject, to: viewer)
                if !shown.lastSeen { audit.hiddenLastSeen += 1 }
                if !shown.online { audit.hiddenOnline += 1 }
            }
        }
        return audit
    }

    var exitCode: Int32 { invalid.isEmpty && outOfOrder.isEmpty ? 0 : 1 }

    func printText() {
        print("privacy: \(counted(records, "settings change")) by \(counted(users.count, "user"))"
              + (exitCode == 0 ? ": every record valid and in time order" : ""))
        for (offset, reason) in invalid.prefix(10) { print("  INVALID record at offset \(offset): \(reason)") }
        for (offset, reason) in outOfOrder.prefix(10) { print("  OUT OF ORDER record at offset \(offset): \(reason)") }
        print("  re-derived at the end of the history: of \(grouped(contactPairs)) (viewer, contact) pairs, last seen hidden from \(grouped(hiddenLastSeen)), online from \(grouped(hiddenOnline))")
    }

    func json() -> String {
        func list(_ items: [(offset: Int64, reason: String)]) -> String {
            "[" + items.map { item in
                var reason: [UInt8] = []
                EventJSON.appendString(item.reason, to: &reason)
                return "{\"offset\":\(item.offset),\"reason\":\(String(decoding: reason, as: UTF8.self))}"
            }.joined(separator: ",") + "]"
        }
        return "{\"records\":\(records),\"users\":\(users.count),\"invalid\":\(list(invalid)),\"out_of_order\":\(list(outOfOrder)),"
            + "\"contact_pairs\":\(contactPairs),\"last_seen_hidden\":\(hiddenLastSeen),\"online_hidden\":\(hiddenOnline)}"
    }
}
