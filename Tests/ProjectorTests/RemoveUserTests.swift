import Foundation
import Presence
import Testing
import TestSupport
@testable import Projector

/// `PresenceProjection.removeUser` (erasure of a retention base): the projection afterwards is the one
/// a log without the user's events folds to, and its checkpoint holds no byte of the user's id.
@Suite struct RemoveUserTests {
    /// Events of three users, the erased one with a long connection id (kept in the arena), a reused id
    /// (a key history) and a connection still open.
    func events(without erased: String? = nil) -> [PresenceEvent] {
        let long = "erased-user-laptop-with-a-very-long-connection-identifier"
        let all = [
            connect("alice", "alice-web-1", 1_000),
            connect("erased-user", long, 1_100),
            connect("bob", "bob-phone-1", 1_200),
            disconnect("erased-user", long, 1_300),
            connect("erased-user", "erased-user-web-2", 1_400),
            disconnect("erased-user", "erased-user-web-2", 1_500),
            connect("erased-user", "erased-user-web-2", 1_600),
            disconnect("alice", "alice-web-1", 1_700),
            connect("erased-user", long, 1_800),
            connect("carol", "carol-web-1", 1_900),
        ]
        return all.filter { $0.user != erased }
    }

    @Test func aRemovedUserLeavesTheStateALogWithoutThemFoldsTo() throws {
        let full = PresenceProjection()
        for (i, event) in events().enumerated() { full.apply(event, offset: Int64(i)) }
        let without = PresenceProjection()
        for (i, event) in events(without: "erased-user").enumerated() { without.apply(event, offset: Int64(i)) }
        #expect(full.state(of: "erased-user")?.online == true)

        #expect(full.removeUser("erased-user"))
        #expect(!full.removeUser("erased-user"), "the second time the user is unknown")
        #expect(full.state(of: "erased-user") == nil)
        #expect(full.allStates() == without.allStates())
        #expect(full.onlineUsers == without.onlineUsers && full.openConnectionCount == without.openConnectionCount)
        #expect(full.userCount == 3 && full.connectionCount == without.connectionCount)
        // It goes on folding as the other does.
        for projection in [full, without] {
            projection.apply(disconnect("bob", "bob-phone-1", 2_000), offset: 100)
            projection.apply(connect("dave", "dave-web-1", 2_100), offset: 101)
        }
        #expect(full.allStates() == without.allStates())

        // Saved and loaded: the same state, and not a byte of the id in the file.
        let dir = Scratch()
        let written = try Checkpoint.write(full, to: dir.path)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: written.path))
        #expect(bytes.range(of: Data("erased-user".utf8)) == nil)
        #expect(try Checkpoint.load(written.path).allStates() == without.allStates())
    }
}
