import Foundation
import Testing

/// Rules v2 through the real binary: a device that reconnects with the same id, as a user of `ingest`,
/// `state`, `history` and `audit` sees it.
@Suite struct ReusedConnectionTests {
    /// The issue's Bob: his phone's id names the device; it comes back at 11:00, and again two days later.
    static let events = """
        {"type":"connect","user":"bob","conn":"phone","gateway":"gw-1","ts":"2024-01-15T09:00:00.000Z"}
        {"type":"disconnect","user":"bob","conn":"phone","gateway":"gw-1","ts":"2024-01-15T10:00:00.000Z"}
        {"type":"connect","user":"bob","conn":"phone","gateway":"gw-1","ts":"2024-01-15T11:00:00.000Z"}
        {"type":"disconnect","user":"bob","conn":"phone","gateway":"gw-1","ts":"2024-01-15T11:30:00.000Z"}
        {"type":"connect","user":"bob","conn":"phone","gateway":"gw-1","ts":"2024-01-17T11:00:00.000Z"}
        {"type":"disconnect","user":"amy","conn":"tab","gateway":"gw-2","ts":"2024-01-17T11:05:00.000Z"}
        {"type":"connect","user":"amy","conn":"tab","gateway":"gw-2","ts":"2024-01-17T11:10:00.000Z"}
        """

    @Test func aReconnectingDeviceIsOnlineAndHistoryAndStateTellOneStory() throws {
        let dir = Scratch()
        let data = dir.file("data")
        #expect(try CLI.presence(["ingest", "--data", data], input: Data(Self.events.utf8)).status == 0)
        let now = try CLI.presence(["state", "--data", data, "--format", "json"])
        #expect(now.stdout.lines == [
            #"{"user":"amy","online":true,"last_seen":"2024-01-17T11:05:00.000Z","connections":1}"#,
            #"{"user":"bob","online":true,"last_seen":"2024-01-15T11:30:00.000Z","connections":1}"#,
        ], "\(now.stdout)")
        let history = try CLI.presence(["history", "--data", data, "--user", "bob", "--format", "json"])
        #expect(history.stdout.lines == [
            #"{"conn":"phone","gateway":"gw-1","start":"2024-01-15T09:00:00.000Z","end":"2024-01-15T10:00:00.000Z","end_reason":"disconnect","duration_ms":3600000}"#,
            #"{"conn":"phone","gateway":"gw-1","start":"2024-01-15T11:00:00.000Z","end":"2024-01-15T11:30:00.000Z","end_reason":"disconnect","duration_ms":1800000}"#,
            #"{"conn":"phone","gateway":"gw-1","start":"2024-01-17T11:00:00.000Z","end":null,"end_reason":null,"duration_ms":null}"#,
        ], "\(history.stdout)")
        // "Was Bob online on the night of the 16th?" No, in both answers.
        let night = try CLI.presence(["state", "--data", data, "--format", "json", "--user", "bob", "--at", "2024-01-16T22:00:00Z"])
        #expect(night.stdout.lines == [#"{"user":"bob","online":false,"last_seen":"2024-01-15T11:30:00.000Z","connections":0}"#], "\(night.stdout)")
        let overlapping = try CLI.presence(["history", "--data", data, "--user", "bob", "--from", "2024-01-16T22:00:00Z", "--to", "2024-01-16T22:00:00Z"])
        #expect(overlapping.stdout.lines == ["0 sessions of bob"] || overlapping.stdout.hasSuffix("0 sessions of bob\n"), "\(overlapping.stdout)")
        // Amy's first event is a disconnect: a session of unknown start, listed without one.
        let amy = try CLI.presence(["history", "--data", data, "--user", "amy"])
        #expect(amy.stdout.lines.count == 4 && amy.stdout.lines[1].hasPrefix("tab   gw-2     -   "), "\(amy.stdout)")
        let audit = try CLI.presence(["audit", "--data", data])
        #expect(audit.status == 1, "a disconnect without a connect is an anomaly: \(audit.stdout)")
        #expect(audit.stdout.contains("disconnect without connect: 1"), "\(audit.stdout)")
        // Bob's phone has three sessions (two after its first), Amy's tab two (its session of unknown
        // start, then the connect's): three sessions of a reused id, for information.
        #expect(audit.stdout.contains("sessions of a reused connection id: 3"), "\(audit.stdout)")
        let json = try CLI.presence(["audit", "--data", data, "--json"])
        #expect(json.stdout.contains(#""information":[{"name":"sessions of a reused connection id","count":3"#), "\(json.stdout)")
    }

    @Test func aCheckpointHoldingKeyHistoriesGivesTheStateOfAFreshFold() throws {
        let dir = Scratch()
        let data = dir.file("data")
        #expect(try CLI.presence(["ingest", "--data", data], input: Data(Self.events.utf8)).status == 0)
        #expect(try CLI.presence(["replay", "--data", data, "--checkpoint"]).status == 0)
        let fromCheckpoint = try CLI.presence(["state", "--data", data, "--format", "json"])
        let fresh = try CLI.presence(["state", "--data", data, "--format", "json", "--no-checkpoint"])
        #expect(fromCheckpoint.stdout == fresh.stdout)
        #expect(try CLI.presence(["audit", "--data", data]).stdout.contains("equals a fresh fold at its offset"))
    }
}
