import ArgumentParser
@testable import PresenceCLI
import Testing

/// The command line's value types, in process: what they accept, what they refuse, and the defaults
/// written in code (which bypass the parser, so a typo there would read as 0).
@Suite struct ArgumentTypesTests {
    @Test(arguments: [("500ms", 500), ("30s", 30_000), ("15m", 900_000), ("1h", 3_600_000), ("30d", 2_592_000_000)] as [(String, Int64)])
    func durationsAreReadInMilliseconds(text: String, milliseconds: Int64) throws {
        #expect(DurationArgument(argument: text)?.milliseconds == milliseconds)
        #expect(DurationArgument(argument: text)?.description == text)
    }

    @Test(arguments: ["", "5", "5x", "0s", "-1s", "1.5h", "s", "99999999999999999d", " 5s"])
    func notDurationsAreRefused(text: String) {
        #expect(DurationArgument(argument: text) == nil)
    }

    @Test func sizesAreReadInBytesAndNonsenseIsRefused() {
        #expect(SizeArgument(argument: "4096")?.bytes == 4096)
        #expect(SizeArgument(argument: "64KiB")?.bytes == 65_536)
        #expect(SizeArgument(argument: "4MiB")?.bytes == 4 << 20)
        #expect(SizeArgument(argument: "1G")?.bytes == 1 << 30)
        for bad in ["", "0", "-5", "4MB", "MiB", "9999999999999999999GiB"] { #expect(SizeArgument(argument: bad) == nil, "\(bad)") }
    }

    @Test func everyDefaultWrittenInCodeIsAValue() throws {
        let serve = try ServeCommand.parse(["--data", "d"])
        #expect(serve.lease.milliseconds == 60_000 && serve.heartbeatInterval.milliseconds == 5_000)
        #expect(serve.clientIDWindow.milliseconds == 86_400_000 && serve.messageCache.bytes == 64 << 20 && serve.maxBody.bytes == 4 << 20)
        #expect(serve.fsync.description == "always" && serve.logLevel.description == "info")
        #expect(serve.shutdownTimeout.milliseconds == 10_000)
        let ingest = try IngestCommand.parse(["--data", "d"])
        #expect(ingest.segmentBytes.bytes == 64 << 20 && ingest.segmentAge.milliseconds == 3_600_000)
        let audit = try AuditCommand.parse(["--data", "d"])
        #expect(audit.openLongerThan.milliseconds == 86_400_000 && audit.outOfOrder.milliseconds == 300_000)
        #expect(try TokenCommand.parse(["--user", "alice"]).ttl.milliseconds == 3_600_000)
    }

    @Test func optionsThatDisagreeAreRefusedBeforeAnythingRuns() {
        #expect(throws: (any Error).self) { try ServeCommand.parse(["--data", "d", "--heartbeat-interval", "2m", "--lease", "60s"]) }
        #expect(throws: (any Error).self) { try ServeCommand.parse(["--data", "d", "--retention", "30d", "--cluster", "nats://127.0.0.1:4222"]) }
        #expect(throws: (any Error).self) { try ServeCommand.parse(["--data", "d", "--port", "70000"]) }
        #expect(throws: (any Error).self) { try ServeCommand.parse(["--data", "d", "--log-level", "loud"]) }
    }

    /// serve's stop deadline: a duration like the others, at most an hour (an operator's grace period
    /// is seconds to minutes; a longer one is a typo, and would stall a stop as before).
    @Test func theShutdownTimeoutIsADurationOfAtMostAnHour() throws {
        #expect(try ServeCommand.parse(["--data", "d", "--shutdown-timeout", "500ms"]).shutdownTimeout.milliseconds == 500)
        #expect(try ServeCommand.parse(["--data", "d", "--shutdown-timeout", "1h"]).shutdownTimeout.milliseconds == 3_600_000)
        for bad in ["0s", "-2s", "2", "soon", "61m"] {
            #expect(throws: (any Error).self, "\(bad)") { try ServeCommand.parse(["--data", "d", "--shutdown-timeout", bad]) }
        }
    }
}
