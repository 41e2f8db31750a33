import Chat
import Foundation
import SegmentLog
import Testing
import TestSupport

/// The privacy rule (`Access.visibility`), the settings' validation and the privacy log, without HTTP.
@Suite struct PrivacyRuleTests {
    static func settings(_ lastSeen: Audience, _ online: Audience, lastSeenExcept: [String] = [], onlineExcept: [String] = []) -> PrivacySettings {
        PrivacySettings(lastSeen: AudienceRule(who: lastSeen, except: lastSeenExcept), online: AudienceRule(who: online, except: onlineExcept))
    }

    /// Every row of the rule table, for one field, against the table written out by hand: the subject's
    /// audience × the viewer in the subject's exceptions × contacts, and the viewer's own rule (reciprocity).
    @Test func theRuleTableHoldsForEveryCombination() {
        for subjectWho in Audience.allCases {
            for excepted in [false, true] {
                for contacts in [false, true] {
                    for viewerWho in Audience.allCases {
                        for viewerExcepts in [false, true] {
                            let subject = Self.settings(subjectWho, .everyone, lastSeenExcept: excepted ? ["v"] : [])
                            let viewer = Self.settings(viewerWho, .everyone, lastSeenExcept: viewerExcepts ? ["s"] : [])
                            func shows(_ who: Audience, _ except: Bool) -> Bool {
                                !except && (who == .everyone || (who == .contacts && contacts))
                            }
                            let expected = shows(subjectWho, excepted) && shows(viewerWho, viewerExcepts)
                            let seen = Access.visibility(of: "s", to: "v", subjectSettings: subject, viewerSettings: viewer, contacts: contacts)
                            #expect(seen.lastSeen == expected, "\(subjectWho) except=\(excepted) contacts=\(contacts) viewer \(viewerWho) except=\(viewerExcepts)")
                            // The online field has its own rule (everyone on both sides here): shown.
                            #expect(seen.online)
                            // Visibility between two users is symmetric per field.
                            let back = Access.visibility(of: "v", to: "s", subjectSettings: viewer, viewerSettings: subject, contacts: contacts)
                            #expect(back.lastSeen == seen.lastSeen)
                        }
                    }
                }
            }
        }
    }

    @Test func theFieldsAreDecidedSeparatelyAndOneSeesAllOfOneself() {
        let subject = Self.settings(.nobody, .everyone)
        let seen = Access.visibility(of: "s", to: "v", subjectSettings: subject, viewerSettings: .default, contacts: true)
        #expect(seen == Visibility(lastSeen: false, online: true))
        #expect(Access.visibility(of: "s", to: "s", subjectSettings: subject, viewerSettings: subject, contacts: false) == .all)
        // A hidden field reads as unknown: offline with no connections, no last seen.
        let hidden = Visibility.none.shown(online: true, lastSeen: 42, connections: 3)
        #expect(hidden.online == false && hidden.lastSeen == nil && hidden.connections == 0)
        let onlyLastSeen = Visibility(lastSeen: true, online: false).shown(online: true, lastSeen: 42, connections: 3)
        #expect(onlyLastSeen.online == false && onlyLastSeen.lastSeen == 42 && onlyLastSeen.connections == 0)
    }

    /// The engine over a real messages log: contacts are users who share a conversation.
    @Test func theEngineTakesContactsFromTheConversations() async throws {
        let scratch = Scratch()
        let directory = try DataDirectory(path: scratch.path)
        let store = try ConversationStore(directory: directory, configuration: LogConfiguration()) { _ in }
        _ = try await store.create(members: ["alice", "bob"], by: "alice")
        var table = PrivacyTable()
        table["carol"] = Self.settings(.everyone, .everyone)
        table["dave"] = Self.settings(.everyone, .contacts, lastSeenExcept: ["alice"])
        let access = Access(chat: store, privacy: table)
        #expect(access.visibility(of: "bob", to: "alice") == .all)  // contacts, both default
        #expect(access.visibility(of: "carol", to: "alice") == .none)  // carol shows everyone, but alice's default hides from non-contacts
        #expect(access.visibility(of: "dave", to: "carol") == Visibility(lastSeen: true, online: false))
        #expect(access.visibility(of: "dave", to: "alice") == .none)
        try store.writer.close()
    }
}

@Suite struct PrivacyUpdateTests {
    func refusal(_ body: String) -> String? {
        do { _ = try PrivacyUpdate.parse(Array(body.utf8)); return nil } catch { return error.message }
    }

    @Test func aBodyIsReadWholeOrRefused() throws {
        let both = try PrivacyUpdate.parse(Array(PrivacyUpdate.example.utf8))
        #expect(both == PrivacyUpdate(lastSeen: AudienceRule(who: .contacts, except: ["carol"]), online: AudienceRule(who: .everyone)))
        // Either key may be left out; the other keeps its value.
        let onlineOnly = try PrivacyUpdate.parse(Array(#"{"online":{"who":"nobody"}}"#.utf8))
        #expect(onlineOnly.applied(to: both.applied(to: .default)).lastSeen == AudienceRule(who: .contacts, except: ["carol"]))
        #expect(onlineOnly.applied(to: .default).online.who == .nobody)
        // Exceptions are kept sorted, without repeats.
        #expect(try PrivacyUpdate.parse(Array(#"{"last_seen":{"who":"everyone","except":["b","a","b"]}}"#.utf8)).lastSeen?.except == ["a", "b"])
        #expect(refusal(#"{"last_seen":{"who":"contacts"},"typo":1}"#) == #"unknown key "typo": the settings are "last_seen" and "online""#)
        #expect(refusal(#"{"online":{"who":"friends"}}"#) == #""online"."who" must be "everyone", "contacts" or "nobody""#)
        #expect(refusal(#"{"online":{"who":"everyone","extra":[]}}"#)?.contains("unknown key \"extra\"") == true)
        #expect(refusal(#"{"online":"everyone"}"#)?.hasPrefix("\"online\" must be an object") == true)
        #expect(refusal(#"{"online":{"who":"everyone","except":"carol"}}"#)?.contains("must be a list") == true)
        #expect(refusal(#"{"online":{"who":"everyone","except":[""]}}"#)?.contains("1 to 256 bytes") == true)
        #expect(refusal(#"{"online":{"who":"everyone","except":[7]}}"#)?.contains("1 to 256 bytes") == true)
        #expect(refusal("[1]")?.hasPrefix("the body must be a JSON object") == true)
        #expect(refusal("5")?.hasPrefix("the body must be a JSON object") == true)
        #expect(refusal(#"{"online":null}"#)?.hasPrefix("\"online\" must be an object") == true)
        #expect(refusal(#"{"online":{"except":[]}}"#)?.contains("\"who\" must be") == true)
        #expect(refusal("{\"online\":")?.hasPrefix("the body is not valid JSON") == true)
        #expect(try PrivacyUpdate.parse(Array(#"{"online":{"who":"everyone","except":null}}"#.utf8)).online == AudienceRule(who: .everyone))
        let tooMany = (0...PrivacySettings.maxExceptions).map { "\"u\($0)\"" }.joined(separator: ",")
        #expect(refusal(#"{"last_seen":{"who":"everyone","except":[\#(tooMany)]}}"#) == "\"last_seen\".\"except\" holds 1025 ids; at most 1024")
    }
}

@Suite struct PrivacyStoreTests {
    @Test func settingsAreKeptInTheirLogAndReadBackAtAnyTime() async throws {
        let scratch = Scratch()
        var times: [Int64] = []
        do {
            let directory = try DataDirectory(path: scratch.path)
            let store = try PrivacyStore(directory: directory, configuration: LogConfiguration()) { _ in }
            #expect(store.current["alice"] == .default)
            _ = try await store.update("alice", PrivacyUpdate(lastSeen: AudienceRule(who: .nobody)))
            times.append(Int64(Date().timeIntervalSince1970 * 1000))
            try await Task.sleep(for: .milliseconds(5))
            let now = try await store.update("alice", PrivacyUpdate(online: AudienceRule(who: .everyone, except: ["carol"])))
            // A PUT of one field keeps the other as the previous one left it.
            #expect(now == PrivacySettings(lastSeen: AudienceRule(who: .nobody), online: AudienceRule(who: .everyone, except: ["carol"])))
            #expect(store.version == 2)
            try store.writer.close()
        }
        // Reopened (the lock let go): the same table; and the one in force at the first change's time.
        let directory = try DataDirectory(path: scratch.path)
        let store = try PrivacyStore(directory: directory, configuration: LogConfiguration()) { _ in }
        #expect(store.current["alice"].online == AudienceRule(who: .everyone, except: ["carol"]))
        let log = try directory.logPath(PrivacyStore.logName)
        let then = try PrivacyStore.table(logDirectory: log, until: times[0])
        #expect(then["alice"] == PrivacySettings(lastSeen: AudienceRule(who: .nobody), online: AudienceRule(who: .contacts)))
        #expect(try PrivacyStore.table(logDirectory: log, until: 0)["alice"] == .default)
        try store.writer.close()
    }
}
