import Chat
import Foundation
import SegmentLog
import Testing
import TestSupport

/// The chat domain without HTTP: its rules, the access engine, and the store over a real messages log.
@Suite struct ChatRulesTests {
    @Test func aNewConversationsMembersAreUniqueWithinLimitsAndIncludeTheCreator() throws {
        #expect(try ChatRules.members(["alice", "bob", "alice"], creator: "alice") == ["alice", "bob"])
        func refusal(_ members: [String], _ creator: String = "alice") -> ChatError? {
            do { _ = try ChatRules.members(members, creator: creator); return nil } catch { return error }
        }
        #expect(refusal([])?.kind == .invalid)
        #expect(refusal(["alice"])?.message == "a conversation has 2 to 256 members")
        #expect(refusal(["alice", ""])?.kind == .invalid)
        #expect(refusal(["alice", String(repeating: "x", count: 257)])?.kind == .invalid)
        #expect(refusal(["alice"] + (0..<256).map { "u\($0)" })?.kind == .invalid)
        #expect(refusal(["bob", "carol"])?.kind == .forbidden)
    }

    @Test func aMessageHasContentAndAClientIdWithinLimits() throws {
        try ChatRules.message(content: "hi", clientID: nil)
        try ChatRules.message(content: String(repeating: "x", count: 16 * 1024), clientID: String(repeating: "c", count: 256))
        for (content, clientID) in [("", nil), (String(repeating: "x", count: 16 * 1024 + 1), nil), ("hi", ""), ("hi", String(repeating: "c", count: 257))] {
            #expect(throws: ChatError.self) { try ChatRules.message(content: content, clientID: clientID) }
        }
    }
}

@Suite struct ConversationStoreTests {
    func open(_ scratch: Scratch) throws -> (DataDirectory, ConversationStore) {
        let directory = try DataDirectory(path: scratch.path)
        return (directory, try ConversationStore(directory: directory, configuration: LogConfiguration()) { _ in })
    }

    @Test func membershipsMessagesPairsAndClientIdsComeBackFromTheLog() async throws {
        let scratch = Scratch()
        let (chat, group) = try await firstRun(scratch)
        // A new store over the same log (the first one closed, its lock let go): the same answers.
        let (directory, store) = try open(scratch)
        #expect(store.members(of: chat) == ["alice", "bob"])
        #expect(store.lastSeq(of: chat) == 2)
        #expect(try await store.create(members: ["alice", "bob"], by: "alice") == (chat, false))
        let again = try await store.post(to: chat, sender: "alice", content: "hi", clientID: "c-1")
        #expect(again.seq == 1 && again.repeated)
        #expect(store.conversations(of: "carol").map(\.id) == [group])
        try store.close()
        _ = directory
    }

    func firstRun(_ scratch: Scratch) async throws -> (chat: String, group: String) {
        let (directory, store) = try open(scratch)
        let (chat, created) = try await store.create(members: ["alice", "bob"], by: "alice")
        #expect(created)
        #expect(try await store.create(members: ["bob", "alice"], by: "bob") == (chat, false))
        let (group, _) = try await store.create(members: ["alice", "bob", "carol"], by: "carol")
        #expect(group != chat)
        #expect(try await store.post(to: chat, sender: "alice", content: "hi", clientID: "c-1").seq == 1)
        #expect(try await store.post(to: chat, sender: "alice", content: "hi", clientID: "c-1").repeated)
        #expect(try await store.post(to: chat, sender: "bob", content: "hello").seq == 2)
        try store.close()
        _ = directory
        return (chat, group)
    }

    @Test func theAccessEngineAnswersForConversationsAndPresence() async throws {
        let scratch = Scratch()
        let (directory, store) = try open(scratch)
        let (chat, _) = try await store.create(members: ["alice", "bob"], by: "alice")
        let access = Access(chat: store)
        #expect(try access.conversation(chat, for: "bob").get() == ["alice", "bob"])
        #expect(throws: ChatError(.forbidden, "you are not a member of '\(chat)'")) { try access.conversation(chat, for: "carol").get() }
        #expect(throws: ChatError(.notFound, "no conversation 'conv_none'")) { try access.conversation("conv_none", for: "bob").get() }
        #expect(access.areContacts("alice", "bob") && access.areContacts("carol", "carol"))
        #expect(!access.areContacts("alice", "carol"))
        // With the default settings (contacts), a contact sees both fields, a stranger neither, oneself all.
        #expect(access.visibility(of: "bob", to: "alice") == .all)
        #expect(access.visibility(of: "carol", to: "alice") == .none)
        #expect(access.visibility(of: "carol", to: "carol") == .all)
        // Posting is a member's: the store asks the same engine.
        await #expect(throws: ChatError(.forbidden, "you are not a member of '\(chat)'")) {
            try await store.post(to: chat, sender: "carol", content: "hi")
        }
        try store.close()
        _ = directory
    }
}

@Suite struct InFlightClaimsTests {
    /// Requests holding a key run one after the other; disjoint keys run together.
    @Test func requestsForOneKeyAreDecidedOneAfterTheOther() async {
        let claims = InFlightClaims<String>()
        let inside = Counter()
        await withTaskGroup(of: Void.self) { group in
            for i in 0..<50 {
                group.addTask {
                    await claims.holding(i % 2 == 0 ? ["a"] : ["a", "b"]) {
                        #expect(inside.enter() == 1, "two holders of one key at once")
                        try? await Task.sleep(for: .milliseconds(1))
                        inside.leave()
                    }
                }
            }
        }
    }

    final class Counter: @unchecked Sendable {
        private let lock = NSLock()
        private var value = 0
        func enter() -> Int { lock.withLock { value += 1; return value } }
        func leave() { lock.withLock { value -= 1 } }
    }
}
