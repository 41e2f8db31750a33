import Foundation
import Testing

/// The golden fixtures in fixtures/ (made by fixtures/make.sh): a committed log that every later build
/// must read the same way, and the same log damaged in the two ways that matter.
@Suite struct FixtureTests {
    static let fixtures = CLI.repository.appendingPathComponent("fixtures").path

    /// A copy of a fixture log (tests must not change the committed files).
    func copy(_ name: String) throws -> (Scratch, String) {
        let dir = Scratch()
        let data = dir.file(name)
        try FileManager.default.copyItem(atPath: Self.fixtures + "/logs/" + name, toPath: data)
        return (dir, data)
    }

    func expected(_ file: String) throws -> String {
        try String(contentsOfFile: Self.fixtures + "/" + file, encoding: .utf8)
    }

    @Test func theGoldenLogGivesTheGoldenStateAndHistory() throws {
        let (dir, data) = try copy("small")
        _ = dir
        #expect(try CLI.presence(["state", "--data", data, "--format", "json"]).stdout == expected("expected-state.json"))
        #expect(try CLI.presence(["state", "--data", data, "--format", "json", "--at", "2024-01-15T09:30:00Z"]).stdout
                == expected("expected-state-at-0930.json"))
        #expect(try CLI.presence(["history", "--data", data, "--user", "bob", "--format", "json"]).stdout == expected("expected-history-bob.json"))
        // And it holds exactly the events it was made from.
        let dump = try CLI.presence(["dump", "--data", data])
        let events = try expected("events.ndjson").lines
        #expect(dump.stdout.lines.count == events.count)
        #expect(try CLI.presence(["audit", "--data", data]).stdout.contains("every batch verified"))
    }

    @Test func theFlippedByteIsLocated() throws {
        let (dir, data) = try copy("flipped-byte")
        _ = dir
        let audit = try CLI.presence(["audit", "--data", data])
        #expect(audit.status == 2)
        #expect(audit.stdout.contains("CORRUPT \(data)/presence/00000000000000000000.log: batch 1 at byte 367: bad CRC"), "\(audit.stdout)")
        #expect(audit.stdout.components(separatedBy: "  CORRUPT ").count == 2, "only the damaged segment is blamed: \(audit.stdout)")
        let dump = try CLI.presence(["dump", "--data", data])
        #expect(dump.status == 3)
        #expect(dump.stderr.contains("00000000000000000000.log: batch has a bad CRC at byte 367"))
        // A replay stops at the damage with the same error, whether a second thread reads ahead or not.
        for mode in [[], ["--single-thread"]] {
            let replay = try CLI.presence(["replay", "--data", data] + mode)
            #expect(replay.status == 3, "\(mode): \(replay.stderr)")
            #expect(replay.stderr.contains("00000000000000000000.log: batch has a bad CRC at byte 367"), "\(mode): \(replay.stderr)")
        }
    }

    @Test func theTornTailIsIgnoredByReadersAndCutByTheNextWriter() throws {
        let (dir, data) = try copy("torn-tail")
        _ = dir
        let dump = try CLI.presence(["dump", "--data", data])
        #expect(dump.status == 0)
        #expect(dump.stderr.contains("ignored 40 bytes at byte 687"))
        #expect(dump.stdout.lines.count == 207)
        let audit = try CLI.presence(["audit", "--data", data])
        #expect(audit.status == 1)
        #expect(audit.stdout.contains("torn tail"))
        let reopen = try CLI.presence(["ingest", "--data", data, "-"], input: Data())
        #expect(reopen.stderr.contains("recovery: \(data)/presence/00000000000000000200.log"))
        #expect(reopen.stderr.contains("truncated 40 bytes"))
        #expect(try CLI.presence(["audit", "--data", data]).status == 0)
        #expect(try CLI.presence(["state", "--data", data, "--format", "json"]).stdout == expected("expected-state.json"))
    }
}
