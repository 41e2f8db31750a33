import Foundation
import Presence
import Testing

@Suite struct IngestDumpTests {
    func generate(_ events: Int, seed: Int = 7, extra: [String] = []) throws -> String {
        let result = try CLI.run(CLI.generator, ["--events", "\(events)", "--users", "2000", "--seed", "\(seed)"] + extra)
        #expect(result.status == 0, "presence-gen failed: \(result.stderr)")
        return result.stdout
    }

    func parseAll(_ ndjson: String) throws -> [PresenceEvent] {
        let parser = NDJSONEventParser()
        return try ndjson.lines.map { try parser.parse($0) }
    }

    @Test func aDataDirectoryIsCreatedWithItsMissingParents() throws {
        let dir = Scratch()
        let data = dir.file("a/b/data")
        let result = try CLI.presence(["ingest", "--data", data], input: Data(#"{"type":"connect","user":"bob","conn":"c","gateway":"g","ts":1}"#.utf8))
        #expect(result.status == 0, "\(result.stderr)")
        #expect(try CLI.presence(["dump", "--data", data]).stdout.lines.count == 1)
    }

    @Test func ingestThenDumpGivesBackTheSameEvents() throws {
        let dir = Scratch()
        let input = try generate(20_000)
        try input.write(toFile: dir.file("in.ndjson"), atomically: true, encoding: .utf8)
        let ingest = try CLI.presence(["ingest", "--data", dir.file("data"), "--segment-bytes", "64KiB", dir.file("in.ndjson")])
        #expect(ingest.status == 0, "\(ingest.stderr)")
        #expect(ingest.stderr.contains("ingested 20,000 events"))
        #expect(ingest.stderr.contains("bytes/event"))
        let dump = try CLI.presence(["dump", "--data", dir.file("data")])
        #expect(dump.status == 0, "\(dump.stderr)")
        #expect(try parseAll(dump.stdout) == parseAll(input))
        // Integer-millisecond input comes back as the same instants.
        let millis = try generate(3000, seed: 9, extra: ["--ms"])
        let second = try CLI.presence(["ingest", "--data", dir.file("data"), "-"], input: Data(millis.utf8))
        #expect(second.status == 0, "\(second.stderr)")
        let all = try CLI.presence(["dump", "--data", dir.file("data"), "--from-offset", "20000"])
        #expect(try parseAll(all.stdout) == parseAll(millis))
    }

    @Test func badLinesAreReportedWithTheirNumberAndGoodOnesKept() throws {
        let dir = Scratch()
        let input = """
            {"type":"connect","user":"bob","conn":"bob-phone-1","gateway":"gw-1","ts":"2024-01-15T09:41:03.120Z"}
            {"type":"teleport","user":"bob","conn":"bob-phone-1","gateway":"gw-1","ts":1}
            not json

            {"type":"disconnect","user":"bob","conn":"bob-phone-1","gateway":"gw-1","ts":"2024-01-15T09:42:00Z"}
            {"type":"connect","user":"","conn":"x","gateway":"gw-1","ts":1}
            """
        let result = try CLI.presence(["ingest", "--data", dir.file("data")], input: Data(input.utf8))
        #expect(result.status == 2)
        #expect(result.stderr.contains("line 2: unknown event type \"teleport\""))
        #expect(result.stderr.contains("line 3: malformed JSON"))
        #expect(result.stderr.contains("line 6: user id is empty"))
        #expect(result.stderr.contains("ingested 2 events, rejected 3 lines"))
        let dump = try CLI.presence(["dump", "--data", dir.file("data")])
        #expect(dump.stdout.lines == [
            #"{"type":"connect","user":"bob","conn":"bob-phone-1","gateway":"gw-1","ts":"2024-01-15T09:41:03.120Z"}"#,
            #"{"type":"disconnect","user":"bob","conn":"bob-phone-1","gateway":"gw-1","ts":"2024-01-15T09:42:00.000Z"}"#,
        ])
    }

    @Test func strictModeWritesNothingWhenAnyLineIsBad() throws {
        let dir = Scratch()
        let good = try generate(500)
        let input = good + #"{"type":"connect","user":"bob","conn":"c","gateway":"g","ts":"2024-99-01T00:00:00Z"}"# + "\n"
        let result = try CLI.presence(["ingest", "--strict", "--data", dir.file("data")], input: Data(input.utf8))
        #expect(result.status == 2)
        #expect(result.stderr.contains("line 501: bad timestamp"))
        #expect(result.stderr.contains("nothing was written"))
        let info = try CLI.presence(["log-info", "--json", "--data", dir.file("data")])
        #expect(info.stdout.lines.last?.contains("\"events\":0") == true, "\(info.stdout)")
        let ok = try CLI.presence(["ingest", "--strict", "--data", dir.file("data")], input: Data(good.utf8))
        #expect(ok.status == 0)
        #expect(ok.stderr.contains("ingested 500 events"))
    }

    @Test func overlongLinesAreRejectedAndReadingGoesOn() throws {
        let dir = Scratch()
        let huge = #"{"type":"connect","user":"bob","conn":"c","gateway":"g","ts":1,"pad":""# + String(repeating: "x", count: 200_000) + "\"}"
        let input = huge + "\n" + #"{"type":"connect","user":"amy","conn":"c","gateway":"g","ts":2}"# + "\n"
        let result = try CLI.presence(["ingest", "--data", dir.file("data")], input: Data(input.utf8))
        #expect(result.status == 2)
        #expect(result.stderr.contains("line 1: line is longer than 65536 bytes"))
        let dump = try CLI.presence(["dump", "--data", dir.file("data")])
        #expect(dump.stdout.lines.count == 1)
        #expect(dump.stdout.contains("\"user\":\"amy\""))
    }

    @Test func dumpFiltersByTimeUserAndOffset() throws {
        let dir = Scratch()
        let input = try generate(5000)
        try CLI.presence(["ingest", "--data", dir.file("data"), "--segment-bytes", "16KiB"], input: Data(input.utf8))
        let events = try parseAll(input)
        let from = events[2000].timestamp, to = events[3000].timestamp
        let window = try CLI.presence(["dump", "--data", dir.file("data"), "--from", Timestamp.format(from), "--to", "\(to)"])
        #expect(window.status == 0, "\(window.stderr)")
        #expect(try parseAll(window.stdout) == events.filter { $0.timestamp >= from && $0.timestamp <= to })
        let user = events[10].user
        let mine = try CLI.presence(["dump", "--data", dir.file("data"), "--user", user])
        #expect(try parseAll(mine.stdout) == events.filter { $0.user == user })
        let tail = try CLI.presence(["dump", "--data", dir.file("data"), "--from-offset", "4990", "--offsets"])
        #expect(tail.stdout.lines.count == 10)
        #expect(tail.stdout.lines.first?.hasPrefix("{\"offset\":4990,") == true)
        let bad = try CLI.presence(["dump", "--data", dir.file("data"), "--from", "last tuesday"])
        #expect(bad.status == 64)  // bad arguments
        #expect(bad.stderr.contains("--from 'last tuesday' is not a time"))
    }

    @Test func logInfoDescribesEverySegment() throws {
        let dir = Scratch()
        try CLI.presence(["ingest", "--data", dir.file("data"), "--segment-bytes", "32KiB"], input: Data(try generate(8000).utf8))
        let table = try CLI.presence(["log-info", "--data", dir.file("data")])
        #expect(table.status == 0)
        #expect(table.stdout.contains("00000000000000000000"))
        #expect(table.stdout.contains("bytes/event"))
        let json = try CLI.presence(["log-info", "--json", "--verify", "--data", dir.file("data")]).stdout.lines
        #expect(json.count >= 3)
        #expect(json.last?.contains("\"events\":8000") == true)
        #expect(json.last?.contains("\"end_offset\":8000") == true)
    }

    @Test func missingDataOrInputGiveClearErrors() throws {
        let dir = Scratch()
        let noLog = try CLI.presence(["dump", "--data", dir.file("nothing-here")])
        #expect(noLog.status == 64)  // a --data without a log is a bad argument
        #expect(noLog.stderr.contains("no log at"))
        let noInput = try CLI.presence(["ingest", "--data", dir.file("data"), dir.file("missing.ndjson")])
        #expect(noInput.status == 1)
        #expect(noInput.stderr.contains("cannot open input"))
        let dirInput = try CLI.presence(["ingest", "--data", dir.file("data"), dir.path])
        #expect(dirInput.status == 1)
        #expect(dirInput.stderr.contains("is a directory"))
        let badPolicy = try CLI.presence(["ingest", "--data", dir.file("data"), "--fsync", "sometimes"], input: Data())
        // Refused by the parser, naming the option and showing its help (the policies there are).
        #expect(badPolicy.status == 64)
        #expect(badPolicy.stderr.contains("The value 'sometimes' is invalid for '--fsync <policy>'") && badPolicy.stderr.contains("interval:MS"),
                "\(badPolicy.stderr)")
    }
}
