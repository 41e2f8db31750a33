import Chat
import Foundation
import Logging
import Presence
@testable import PresenceServer
import SegmentLog
import Testing
import TestSupport

/// The push fan-out runs after a commit is acknowledged, off the commit thread (`PushFeed`, `PushHub`):
/// a real node in a scratch folder, real sessions, frames read from their queues. The push queue is
/// suspended where a test needs changes to wait for the fan-out. Frames are awaited, never polled
/// against a clock: in the full suite these tests may wait minutes for a thread of the cooperative pool
/// (the end-to-end tests hold them), so the bound is the time limit.
@Suite(.timeLimit(.minutes(10)))
struct PushFanOutTests {
    @Test func changesQueuedBeforeAnOpenGoAheadOfItsOpenedFrameAndNoneBeforeItsCursorAfter() async throws {
        let scratch = Scratch()
        let node = try makeNode(scratch)
        let withBob = try await node.conversations.create(members: ["alice", "bob"], by: "alice").id
        let withBoth = try await node.conversations.create(members: ["alice", "bob", "carol"], by: "alice").id
        let erinsCarol = try await node.conversations.create(members: ["erin", "carol"], by: "erin").id
        let alice = try await node.openSession(user: "alice")
        var aliceFrames = alice.frames.makeAsyncIterator()
        let erin = try await node.openSession(user: "erin")
        var erinFrames = erin.frames.makeAsyncIterator()
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

        let seen = try await next(5, of: &aliceFrames)
        #expect(seen.map { $0["type"] as? String } == ["ready", "opened", "presence", "opened", "presence"])
        #expect(seen[2]["user"] as? String == "bob" && seen[2]["online"] as? Bool == true && offset(seen[2]) == bobOn)
        let opened = seen[3]
        #expect(opened["conversation"] as? String == withBoth)
        #expect(offset(opened, "presence_cursor") == carolOn + 1)
        let shown = opened["presence"] as? [String: [String: Any]]
        #expect(shown?["carol"]?["online"] as? Bool == true && shown?["bob"]?["online"] as? Bool == true)
        #expect(seen[4]["user"] as? String == "carol" && seen[4]["online"] as? Bool == false && offset(seen[4]) == carolOff)
        // Erin watched Carol all along: both changes, in log order.
        let erins = try await next(4, of: &erinFrames)
        #expect(erins.dropFirst(2).map { offset($0) } == [carolOn, carolOff])
        // Nothing else was pushed to Alice: a reply queued now comes next.
        node.reply(alice, #"{"type":"marker"}"#)
        #expect(try await next(1, of: &aliceFrames).first?["type"] as? String == "marker")
    }

    @Test func aCommitIsAcknowledgedAndSnapshotsReadWhileTheFanOutHoldsItsLock() async throws {
        let scratch = Scratch()
        let (node, opened) = try await aliceWatchingBob(scratch)
        var frames = opened

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
        release.signal()
        let seen = try await next(1, of: &frames)
        #expect(seen[0]["user"] as? String == "bob" && offset(seen[0]) == bobOn)
    }

    @Test func aFullQueueIsFannedOutByTheCommitThreadItself() async throws {
        let scratch = Scratch()
        let (node, opened) = try await aliceWatchingBob(scratch)
        var frames = opened
        node.withLock { node.feed.pendingFrameLimit = 0 }

        node.pushQueue.suspend()
        let bobOn = try await node.append(own: [event(.connect, "bob")]).offsets.lowerBound
        // Past the limit the commit thread fans out before it takes the next commit: no push queue needed.
        let seen = try await next(1, of: &frames)
        #expect(seen[0]["user"] as? String == "bob" && offset(seen[0]) == bobOn)
        node.pushQueue.resume()
    }

    @Test func aPrivacyChangeSendsTheQueuedChangesFirstAsTheOldSettingsShowedThem() async throws {
        let scratch = Scratch()
        let (node, opened) = try await aliceWatchingBob(scratch)
        var frames = opened
        try await node.append(own: [event(.connect, "bob")])
        _ = try await next(1, of: &frames)

        node.pushQueue.suspend()
        let bobOff = try await node.append(own: [event(.disconnect, "bob")]).offsets.lowerBound
        _ = try await node.privacy.update("bob", PrivacyUpdate(lastSeen: AudienceRule(who: .nobody)))
        node.pushQueue.resume()

        let seen = try await next(2, of: &frames)
        // Bob's disconnect as his settings then showed it (a last seen), then the change hiding it.
        #expect(seen[0]["user"] as? String == "bob" && offset(seen[0]) == bobOff && seen[0]["last_seen"] is String)
        #expect(seen[1]["user"] as? String == "bob" && seen[1]["last_seen"] is NSNull && offset(seen[1]) == bobOff + 1)
    }

    @Test func aStopSendsTheQueuedChangesBeforeItClosesTheSessions() async throws {
        let scratch = Scratch()
        let (node, opened) = try await aliceWatchingBob(scratch)
        var frames = opened
        node.pushQueue.suspend()
        let bobOn = try await node.append(own: [event(.connect, "bob")]).offsets.lowerBound
        try await node.shutdown()
        let seen = try await next(1, of: &frames)
        #expect(seen[0]["user"] as? String == "bob" && offset(seen[0]) == bobOn)
        #expect(await frames.next() == nil, "the session's queue is closed after it")
        node.pushQueue.resume()
    }

    // MARK: Helpers

    private func makeNode(_ scratch: Scratch) throws -> PresenceNode {
        try PresenceNode(data: scratch.file("data"), configuration: LogConfiguration(), horizon: nil,
                         logger: Logger(label: "push-fan-out-tests"))
    }

    /// A node in `scratch` where Alice's session has her conversation with Bob open; its frames after
    /// `ready` and `opened`.
    private func aliceWatchingBob(_ scratch: Scratch) async throws -> (PresenceNode, AsyncStream<String>.Iterator) {
        let node = try makeNode(scratch)
        let withBob = try await node.conversations.create(members: ["alice", "bob"], by: "alice").id
        let alice = try await node.openSession(user: "alice")
        var frames = alice.frames.makeAsyncIterator()
        node.watch(alice, conversation: withBob, members: ["alice", "bob"])
        #expect(try await next(2, of: &frames).map { $0["type"] as? String } == ["ready", "opened"])
        return (node, frames)
    }

    private func event(_ kind: EventKind, _ user: String) -> PresenceEvent {
        PresenceEvent(kind: kind, user: user, conn: user + "-phone", gateway: "gw-1", timestamp: PresenceNode.now())
    }

    private func offset(_ frame: [String: Any], _ key: String = "offset") -> Int64? {
        (frame[key] as? NSNumber)?.int64Value
    }

    /// The session's next `n` frames, parsed, waiting for each.
    private func next(_ n: Int, of frames: inout AsyncStream<String>.Iterator) async throws -> [[String: Any]] {
        var parsed: [[String: Any]] = []
        for _ in 0..<n {
            let text = try #require(await frames.next(), "the session's queue ended after \(parsed.count) of \(n) frames")
            parsed.append(try #require(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]))
        }
        return parsed
    }
}
