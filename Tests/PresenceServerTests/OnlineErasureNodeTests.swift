import Chat
import Erasure
import Foundation
import Logging
import Presence
import Projector
@testable import PresenceServer
import SegmentLog
import Testing
import TestSupport

/// `PresenceNode.forget` (the online erasure behind `POST /v1/admin/forget`) on a real node in a
/// scratch folder, with real sessions and appends: what a client, a gateway or an admin sees after it.
@Suite(.timeLimit(.minutes(10)))
struct OnlineErasureNodeTests {
    /// A client whose socket died unnoticed (the server still held its session, so the erasure's push
    /// went nowhere) comes back with the cursor of its last `opened` frame, which is the erasure's cut.
    /// It must not keep showing the erased user: either a fresh view (`resumed:false`) or the user
    /// pushed as never seen before `opened`.
    @Test func aClientResumingFromTheCutIsToldTheErasedUserIsGone() async throws {
        let scratch = Scratch()
        let node = try makeNode(scratch)
        let conversation = try await node.conversations.create(members: ["alice", "bob"], by: "alice").id
        _ = try await node.append(own: [event(.connect, "bob")])
        let lost = try await node.openSession(user: "alice")
        var lostFrames = lost.frames.makeAsyncIterator()
        node.watch(lost, conversation: conversation, members: ["alice", "bob"])
        let opened = try await next(2, of: &lostFrames)[1]
        let cursor = try #require(offset(opened, "presence_cursor"))
        #expect((opened["presence"] as? [String: [String: Any]])?["bob"]?["online"] as? Bool == true)

        let report = try await node.forget(user: "bob")
        #expect(report.cut == cursor)

        let again = try await node.openSession(user: "alice")
        var frames = again.frames.makeAsyncIterator()
        #expect(try await next(1, of: &frames).first?["type"] as? String == "ready")
        node.watch(again, conversation: conversation, members: ["alice", "bob"], resumeFrom: cursor)
        var bobShown: [String: Any]?
        var resumed: Bool?
        while resumed == nil {
            let frame = try #require(try await next(1, of: &frames).first)
            if frame["type"] as? String == "presence", frame["user"] as? String == "bob" { bobShown = frame }
            if frame["type"] as? String == "opened" { resumed = frame["resumed"] as? Bool }
        }
        if resumed == true {
            let shown = try #require(bobShown, "resumed from the cut without being told Bob was erased: the client keeps him")
            #expect(shown["online"] as? Bool == false && shown["last_seen"] is NSNull)
        }
    }

    /// An erasure that stopped part way (here: a snapshot it could not remove) and was finished by the
    /// same request again leaves the event-id index as a restart would: the gateway's retry of an erased
    /// event is written anew, not answered with the offset of a record that is gone.
    @Test func anEventOfTheUserRetriedAfterAnErasureFinishedBySecondRequestIsWrittenAnew() async throws {
        let scratch = Scratch()
        let data = scratch.file("data")
        let node = try makeNode(scratch)
        let connect = PresenceEvent(kind: .connect, user: "bob", conn: "bob-phone", gateway: "gw-1", timestamp: PresenceNode.now(), id: "gw-1-e1")
        var records = RecordBuffer()
        EventCodec.append(connect, to: &records)
        let first = try await node.appendEvents(records)
        #expect(first.repeats.isEmpty)
        _ = try await node.append(own: [event(.connect, "carol")])

        // Something in the snapshot folder the erasure cannot remove: it fails after rewriting the log.
        let blocker = data + "/checkpoints/presence-" + Log.segmentName(0) + ".ckpt"
        try FileManager.default.createDirectory(atPath: blocker, withIntermediateDirectories: true)
        await #expect(throws: (any Error).self) { try await node.forget(user: "bob") }
        #expect(node.read { $0.state(of: "bob") } != nil, "a failed erasure leaves the state the node had")
        try FileManager.default.removeItem(atPath: blocker)
        let report = try await node.forget(user: "bob")
        #expect(report.outcome.resumed)
        #expect(node.read { $0.state(of: "bob") } == nil)

        let retried = try await node.appendEvents(records)
        #expect(retried.repeats.isEmpty, "the retry was answered as a repeat of offset \(first.offsets) (erased), not written")
        #expect(retried.offsets.allSatisfy { $0 >= report.cut })
        #expect(node.read { $0.state(of: "bob")?.online } == true)
    }

    /// A request whose fold of the rewritten log failed (after `Erasure.run` completed) leaves the files
    /// without the user and the live state with them; the same request again must take the state from
    /// the files, not answer "unknown user" and leave the user shown until a restart (whose checkpoint,
    /// written from that state, would bring them back).
    @Test func aSecondRequestAfterTheFoldFailedTakesTheStateFromTheFiles() async throws {
        let scratch = Scratch()
        let node = try makeNode(scratch)
        _ = try await node.append(own: [event(.connect, "bob"), event(.connect, "carol")])
        // What such a request leaves: forget's own steps on the paused writers, the live state not replaced.
        let privacyLog = try await node.privacy.writer.pause()
        let presenceLog = try await node.writer.pause()
        try presenceLog.log.sealActiveSegment()
        try privacyLog.log.sealActiveSegment()
        let erased = try Erasure.run(node.directory, user: "bob", horizon: node.horizon, now: PresenceNode.now(), logsAreOpen: true)
        presenceLog.resume()
        privacyLog.resume()
        #expect(erased.presenceRecords == 1)
        #expect(node.read { $0.state(of: "bob")?.online } == true)

        let report = try await node.forget(user: "bob")
        #expect(report.outcome.resumed && report.outcome.presenceRecords == 0)
        #expect(node.read { $0.state(of: "bob") } == nil)
        #expect(node.read { $0.state(of: "carol")?.online } == true)
        // A user neither the files nor the state know is still refused.
        await #expect(throws: Erasure.Refusal.self) { try await node.forget(user: "nobody") }
        try await node.shutdown()
    }

    /// A settings change is written as the whole settings after it, made from those in force. One asked
    /// while an erasure of the user runs must be made from what the erasure leaves (the defaults), not
    /// from the erased settings read before the writer paused and written after it resumed.
    @Test func aSettingsChangeAskedDuringAnErasureDoesNotBringTheErasedSettingsBack() async throws {
        let scratch = Scratch()
        let node = try makeNode(scratch)
        let hidden = AudienceRule(who: .nobody, except: ["carol"])
        _ = try await node.privacy.update("bob", PrivacyUpdate(lastSeen: hidden))
        // A log long enough that the erasure takes a while.
        var records = RecordBuffer()
        let now = PresenceNode.now()
        for index in 0..<20_000 {
            EventCodec.append(PresenceEvent(kind: index % 2 == 0 ? .connect : .disconnect, user: index % 10 == 0 ? "bob" : "user-\(index % 97)",
                                            conn: "c\(index % 50)", gateway: "gw-1", timestamp: now), to: &records)
        }
        _ = try await node.append(records)

        let erasure = Task { try await node.forget(user: "bob") }
        while !node.erasing.load(ordering: .acquiring) { await Task.yield() }
        try await Task.sleep(for: .milliseconds(2))
        _ = try await node.privacy.update("bob", PrivacyUpdate(online: AudienceRule(who: .everyone)))
        let report = try await erasure.value
        #expect(report.outcome.privacyRecords >= 1)
        #expect(node.privacy.current["bob"].lastSeen != hidden, "the erased settings are in force again")
        try await node.shutdown()
    }

    /// A retention pass (`serve --retention`) may start at any moment of an erasure: the erasure and the
    /// pass take turns, and the erasure's fold of the rewritten log never reads a segment the pass is
    /// removing. Bounded: a few erasures, each with a pass racing it.
    @Test func anErasureAndRetentionPassesTakeTurns() async throws {
        let scratch = Scratch()
        var configuration = LogConfiguration()
        configuration.segmentBytes = 4096
        let node = try PresenceNode(data: scratch.file("data"), configuration: configuration, horizon: 1_000,
                                    logger: Logger(label: "online-erasure-node-tests"))
        for round in 0..<4 {
            let user = "erased-\(round)"
            for index in 0..<200 {
                _ = try await node.append(own: [event(index % 2 == 0 ? .connect : .disconnect, index % 5 == 0 ? user : "other-\(index % 7)")])
            }
            // `serve --retention` with nothing kept: a pass every millisecond while the erasure runs.
            let retention = Task { await node.retain(keeping: 0, every: .milliseconds(1)) }
            try? await Task.sleep(for: .milliseconds(Int.random(in: 0...5)))
            let report = try await node.forget(user: user)
            retention.cancel()
            await retention.value
            #expect(report.cut == node.nextOffset)
            #expect(node.read { $0.state(of: user) } == nil)
        }
    }

    /// Randomized, bounded: gateways write for other users, the erased user's sockets open and close,
    /// erasures of that user run, all at once. After each round, with the user's sockets closed: the user
    /// is nobody's "online", and the live state is what a fresh fold of the log gives (every acknowledged
    /// write applied, nothing of the erased past left), as a node started on the folder sees it.
    @Test func writesSocketsAndErasuresAtOnceLeaveTheStateAFreshFoldGives() async throws {
        let scratch = Scratch()
        let target = "erased-user"
        let users = [target] + (0..<5).map { "user-\($0)" }
        var node: PresenceNode? = try makeNode(scratch)
        for round in 0..<6 {
            let (live, liveNext) = try await Self.race(on: try #require(node), erasing: target, others: Array(users.dropFirst()))
            #expect(live[0]?.online != true, "round \(round): the erased user stays online with no socket")
            // A node started on the folder, folding the whole log (no checkpoint), once this one is gone
            // (it holds the folder's lock until then).
            node = nil
            try FileManager.default.removeItem(atPath: scratch.file("data") + "/checkpoints")
            node = try makeNode(scratch)
            #expect(node?.nextOffset == liveNext)
            #expect(node?.read { projection in users.map { projection.state(of: $0) } } == live, "round \(round)")
        }
        try await node?.shutdown()
    }

    /// One round: three gateways' writes, the target's sockets opened and closed, an erasure of the target
    /// at a random moment; then every socket closed and the node stopped. The state it had then.
    private static func race(on node: PresenceNode, erasing target: String, others: [String]) async throws
        -> (states: [PresenceProjection.UserState?], next: Int64) {
        let forgetAfter = Int.random(in: 0...8)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for writer in 0..<3 {
                group.addTask {
                    for index in 0..<40 {
                        let user = others[(writer + index) % others.count]
                        let kind: EventKind = index % 3 == 2 ? .disconnect : .connect
                        _ = try await node.append(own: [PresenceEvent(kind: kind, user: user, conn: "\(user)-\(writer)-\(index / 3)",
                                                                      gateway: "gw-\(writer)", timestamp: PresenceNode.now())])
                    }
                }
            }
            group.addTask {
                var open: [PushSession] = []
                for _ in 0..<12 {
                    open.append(try await node.openSession(user: target))
                    if Bool.random() { await node.closeSession(open.removeFirst()) }
                }
                for session in open { await node.closeSession(session) }
            }
            group.addTask {
                try await Task.sleep(for: .milliseconds(forgetAfter))
                // Before the target's first socket of the first round there is nothing to erase.
                do { _ = try await node.forget(user: target) } catch let refusal as Erasure.Refusal where refusal.unknownUser {}
            }
            try await group.waitForAll()
        }
        #expect(node.openSessionCount == 0)
        let states = node.read { projection in ([target] + others).map { projection.state(of: $0) } }
        let next = node.nextOffset
        try await node.shutdown()
        return (states, next)
    }

    private func makeNode(_ scratch: Scratch) throws -> PresenceNode {
        try PresenceNode(data: scratch.file("data"), configuration: LogConfiguration(), horizon: nil,
                         logger: Logger(label: "online-erasure-node-tests"))
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
