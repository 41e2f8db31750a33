import Chat
import Foundation
import Logging
import Presence
@testable import PresenceServer
import SegmentLog
import Synchronization
import Testing
import TestSupport

/// The push fan-out runs after a commit is acknowledged, off the commit thread (`PushFeed`, `PushHub`):
/// a real node in a scratch folder, real sessions, frames read from their queues. The push queue is
/// suspended where a test needs changes to wait for the fan-out.
@Suite(.timeLimit(.minutes(1)))
struct PushFanOutTests {
    @Test func changesQueuedBeforeAnOpenGoAheadOfItsOpenedFrameAndNoneBeforeItsCursorAfter() async throws {
        let scratch = Scratch()
        let node = try makeNode(scratch)
        let withBob = try await node.conversations.create(members: ["alice", "bob"], by: "alice").id
        let withBoth = try await node.conversations.create(members: ["alice", "bob", "carol"], by: "alice").id
        let erinsCarol = try await node.conversations.create(members: ["erin", "carol"], by: "erin").id
        let alice = try await node.openSession(user: "alice"), aliceFrames = FrameLog(alice)
        let erin = try await node.openSession(user: "erin"), erinFrames = FrameLog(erin)
        node.watch(alice, conversation: withBob, members: ["alice", "bob"])
        node.watch(erin, conversation: erinsCarol, members: ["erin", "carol"])

        node.pushQueue.suspend()
        let bobOn = try await node.append(own: [event(.connect, "bob")]).offsets.lowerBound
        let carolOn = try await node.append(own: [event(.connect, "carol")]).offsets.lowerBound
        // Acknowledged means applied, though nothing is fanned out yet.
        #expect(node.read { $0.state(of: "carol")?.online } == true)
        // Alice opens a conversation with both: Bob's change (she watched him) comes before its frame;
        // Carol's (watched by Erin only then) is in the frame and never pushed to Alice.
        node.watch(alice, conversation: withBoth, members: ["alice", "bob", "carol"])
        let carolOff = try await node.append(own: [event(.disconnect, "carol")]).offsets.lowerBound
        node.pushQueue.resume()

        let seen = try await aliceFrames.first(5)
        #expect(seen.map { $0["type"] as? String } == ["ready", "opened", "presence", "opened", "presence"])
        #expect(seen[2]["user"] as? String == "bob" && seen[2]["online"] as? Bool == true && offset(seen[2]) == bobOn)
        let opened = seen[3]
        #expect(opened["conversation"] as? String == withBoth)
        #expect(offset(opened, "presence_cursor") == carolOn + 1)
        let shown = opened["presence"] as? [String: [String: Any]]
        #expect(shown?["carol"]?["online"] as? Bool == true && shown?["bob"]?["online"] as? Bool == true)
        #expect(seen[4]["user"] as? String == "carol" && seen[4]["online"] as? Bool == false && offset(seen[4]) == carolOff)
        // Erin watched Carol all along: both changes, in log order.
        let erins = try await erinFrames.first(4)
        #expect(erins.dropFirst(2).map { offset($0) } == [carolOn, carolOff])
        #expect(aliceFrames.count == 5)
    }

    @Test func aCommitIsAcknowledgedAndSnapshotsReadWhileTheFanOutHoldsItsLock() async throws {
        let scratch = Scratch()
        let node = try makeNode(scratch)
        let withBob = try await node.conversations.create(members: ["alice", "bob"], by: "alice").id
        let alice = try await node.openSession(user: "alice"), frames = FrameLog(alice)
        node.watch(alice, conversation: withBob, members: ["alice", "bob"])

        // Another thread holds the hub's lock, as a long fan-out would.
        let release = DispatchSemaphore(value: 0)
        await withCheckedContinuation { (held: CheckedContinuation<Void, Never>) in
            Thread.detachNewThread {
                node.hubLock.lock()
                held.resume()
                release.wait()
                node.hubLock.unlock()
            }
        }
        let bobOn = try await node.append(own: [event(.connect, "bob")]).offsets.lowerBound
        #expect(node.read { $0.state(of: "bob")?.online } == true)
        #expect(frames.count == 2)  // ready and opened: the push waits for the lock
        release.signal()
        let seen = try await frames.first(3)
        #expect(seen[2]["user"] as? String == "bob" && offset(seen[2]) == bobOn)
    }

    @Test func aFullQueueIsFannedOutByTheCommitThreadItself() async throws {
        let scratch = Scratch()
        let node = try makeNode(scratch)
        let withBob = try await node.conversations.create(members: ["alice", "bob"], by: "alice").id
        let alice = try await node.openSession(user: "alice"), frames = FrameLog(alice)
        node.watch(alice, conversation: withBob, members: ["alice", "bob"])
        node.withLock { node.feed.pendingFrameLimit = 0 }

        node.pushQueue.suspend()
        let bobOn = try await node.append(own: [event(.connect, "bob")]).offsets.lowerBound
        // Past the limit the commit thread fans out before it takes the next commit: no push queue needed.
        let seen = try await frames.first(3)
        #expect(seen[2]["user"] as? String == "bob" && offset(seen[2]) == bobOn)
        node.pushQueue.resume()
    }

    @Test func aPrivacyChangeSendsTheQueuedChangesFirstAsTheOldSettingsShowedThem() async throws {
        let scratch = Scratch()
        let node = try makeNode(scratch)
        let withBob = try await node.conversations.create(members: ["alice", "bob"], by: "alice").id
        try await node.append(own: [event(.connect, "bob")])
        let alice = try await node.openSession(user: "alice"), frames = FrameLog(alice)
        node.watch(alice, conversation: withBob, members: ["alice", "bob"])

        node.pushQueue.suspend()
        let bobOff = try await node.append(own: [event(.disconnect, "bob")]).offsets.lowerBound
        _ = try await node.privacy.update("bob", PrivacyUpdate(lastSeen: AudienceRule(who: .nobody)))
        node.pushQueue.resume()

        let seen = try await frames.first(4)
        // Bob's disconnect as his settings then showed it (a last seen), then the change hiding it.
        #expect(seen[2]["user"] as? String == "bob" && offset(seen[2]) == bobOff && seen[2]["last_seen"] is String)
        #expect(seen[3]["user"] as? String == "bob" && seen[3]["last_seen"] is NSNull && offset(seen[3]) == bobOff + 1)
    }

    // MARK: Helpers

    private func makeNode(_ scratch: Scratch) throws -> PresenceNode {
        try PresenceNode(data: scratch.file("data"), configuration: LogConfiguration(), horizon: nil,
                         logger: Logger(label: "push-fan-out-tests"))
    }

    private func event(_ kind: EventKind, _ user: String) -> PresenceEvent {
        PresenceEvent(kind: kind, user: user, conn: user + "-phone", gateway: "gw-1", timestamp: PresenceNode.now())
    }

    private func offset(_ frame: [String: Any], _ key: String = "offset") -> Int64? {
        (frame[key] as? NSNumber)?.int64Value
    }
}

/// Every frame a session was sent, read as JSON by a task of its own.
private final class FrameLog: Sendable {
    private let frames = Mutex<[String]>([])

    init(_ session: PushSession) {
        Task { [self] in
            for await frame in session.frames { frames.withLock { $0.append(frame) } }
        }
    }

    var count: Int { frames.withLock { $0.count } }

    /// The first `n` frames, parsed, once they have come (at most 20 s).
    func first(_ n: Int) async throws -> [[String: Any]] {
        let deadline = ContinuousClock.now + .seconds(20)
        while count < n && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        let texts = frames.withLock { Array($0.prefix(n)) }
        try #require(texts.count == n, "only \(texts.count) of \(n) frames: \(texts)")
        return try texts.map { try #require(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
    }
}
