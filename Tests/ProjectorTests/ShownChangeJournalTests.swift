import Presence
import Testing
@testable import Projector

/// The journal a resuming WebSocket client is answered from: every change at or after its cursor, of
/// the users it watches, oldest first, or nil once some have fallen out.
struct ShownChangeJournalTests {
    static func change(_ offset: Int64, _ user: String, online: Bool = true) -> ShownChangeJournal.Change {
        .init(offset: offset, user: user, state: .init(user: user, online: online, lastSeen: online ? nil : offset * 1000, connections: online ? 1 : 0))
    }

    @Test func aCursorGetsTheChangesOfItsUsersFromItOnOldestFirst() {
        var journal = ShownChangeJournal(capacity: 8, completeFrom: 10)
        for (offset, user) in [(10, "bob"), (11, "carol"), (12, "bob"), (14, "dave"), (15, "bob")] {
            journal.record(Self.change(Int64(offset), user, online: offset % 2 == 0))
        }
        #expect(journal.changes(from: 11, of: ["bob", "carol"])?.map(\.offset) == [11, 12, 15])
        #expect(journal.changes(from: 10, of: ["bob"])?.map(\.offset) == [10, 12, 15])
        #expect(journal.changes(from: 16, of: ["bob"]) == [])
        #expect(journal.changes(from: 13, of: ["erin"]) == [])
        // Before the journal began (the node started at offset 10): it cannot say what happened.
        #expect(journal.changes(from: 9, of: ["bob"]) == nil)
        let bob = journal.changes(from: 12, of: ["bob"])?.first
        #expect(bob?.state == .init(user: "bob", online: true, lastSeen: nil, connections: 1))
    }

    @Test func changesThatFallOutMakeOlderCursorsUnanswerable() {
        var journal = ShownChangeJournal(capacity: 3, completeFrom: 0)
        for offset in 0..<5 { journal.record(Self.change(Int64(offset), "bob")) }
        #expect(journal.count == 3)
        #expect(journal.completeFrom == 2)
        #expect(journal.changes(from: 1, of: ["bob"]) == nil)
        #expect(journal.changes(from: 2, of: ["bob"])?.map(\.offset) == [2, 3, 4])
        // Two changes at one offset (a gateway_down ends several users): losing one loses the offset.
        journal.record(Self.change(7, "bob"))
        journal.record(Self.change(7, "carol"))
        #expect(journal.completeFrom == 4)
        #expect(journal.changes(from: 4, of: ["bob", "carol"])?.map(\.user) == ["bob", "bob", "carol"])
        journal.record(Self.change(8, "dave"))
        #expect(journal.changes(from: 5, of: ["bob", "carol", "dave"])?.map(\.offset) == [7, 7, 8])
        #expect(journal.changes(from: 4, of: ["bob"]) == nil)
    }

    @Test func aJournalOfNoCapacityAnswersNoCursor() {
        var journal = ShownChangeJournal(capacity: 0, completeFrom: 0)
        journal.record(Self.change(1, "bob"))
        #expect(journal.count == 0)
        #expect(journal.changes(from: 0, of: ["bob"]) == nil)
        #expect(journal.changes(from: Int64.max - 1, of: ["bob"]) == nil)
    }
}
