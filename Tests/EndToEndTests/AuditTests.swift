import Foundation
import Testing

@Suite struct AuditTests {
    /// A log of several sealed segments of several batches each.
    func segmentedLog() throws -> (Scratch, String) {
        let dir = Scratch()
        let data = dir.file("data")
        let events = try CLI.run(CLI.generator, ["--events", "3000", "--users", "300", "--seed", "5"]).stdout
        let result = try CLI.presence(["ingest", "--data", data, "--segment-bytes", "8KiB", "--batch-records", "100"], input: Data(events.utf8))
        #expect(result.status == 0, "\(result.stderr)")
        return (dir, data)
    }

    @Test func aCleanLogAuditsClean() throws {
        let (dir, data) = try segmentedLog()
        _ = dir
        let audit = try CLI.presence(["audit", "--data", data])
        #expect(audit.status == 0, "\(audit.stdout)")
        #expect(audit.stdout.contains("every batch verified"))
        #expect(audit.stdout.contains("result: clean"))
    }

    @Test func everyFlippedByteInASealedSegmentIsFoundAndLocated() throws {
        let (dir, data) = try segmentedLog()
        _ = dir
        let segment = data + "/presence/00000000000000000000.log"
        let original = try Data(contentsOf: URL(fileURLWithPath: segment))
        // Batch boundaries, to check the reported batch number and position.
        var starts: [Int] = []
        var position = 0
        while position + 12 <= original.count {
            starts.append(position)
            let length = original[(position + 8)..<(position + 12)].reduce(0) { $0 << 8 | Int($1) }
            position += 12 + length
        }
        for flip in stride(from: 5, to: original.count, by: max(1, original.count / 37)) {
            var damaged = original
            damaged[flip] ^= 0x08
            try damaged.write(to: URL(fileURLWithPath: segment))
            let audit = try CLI.presence(["audit", "--data", data, "--json"])
            #expect(audit.status == 2, "flipping byte \(flip) went unnoticed: \(audit.stdout)")
            let batch = (starts.lastIndex { $0 <= flip }) ?? 0
            #expect(audit.stdout.contains("\"file\":\"\(segment)\""), "byte \(flip): \(audit.stdout)")
            // The damaged batch is named by its number and the byte where it starts, whichever field was hit.
            #expect(audit.stdout.contains("\"batch\":\(batch),\"position\":\(starts[batch])"),
                    "byte \(flip) in batch \(batch) at \(starts[batch]): \(audit.stdout)")
        }
        try original.write(to: URL(fileURLWithPath: segment))
        #expect(try CLI.presence(["audit", "--data", data]).status == 0)
    }

    @Test func damagedIndexesAreAnomaliesNotCorruption() throws {
        let (dir, data) = try segmentedLog()
        _ = dir
        try Data([0, 0, 0, 1, 0, 0, 0, 9]).write(to: URL(fileURLWithPath: data + "/presence/00000000000000000000.index"))
        let audit = try CLI.presence(["audit", "--data", data])
        #expect(audit.status == 1)
        #expect(audit.stdout.contains("index   \(data)/presence/00000000000000000000.index"))
    }

    @Test func aCheckpointThatDisagreesWithTheLogIsCorruption() throws {
        let (dir, data) = try segmentedLog()
        #expect(try CLI.presence(["replay", "--data", data, "--checkpoint"]).status == 0)
        let good = try CLI.presence(["audit", "--data", data])
        #expect(good.stdout.contains("equals a fresh fold at its offset"), "\(good.stdout)")
        // A valid checkpoint of another log with as many events.
        let other = dir.file("other")
        let events = try CLI.run(CLI.generator, ["--events", "3000", "--users", "300", "--seed", "6"]).stdout
        #expect(try CLI.presence(["ingest", "--data", other], input: Data(events.utf8)).status == 0)
        #expect(try CLI.presence(["replay", "--data", other, "--checkpoint"]).status == 0)
        let name = "presence-00000000000000003000.ckpt"
        try FileManager.default.removeItem(atPath: data + "/checkpoints/" + name)
        try FileManager.default.copyItem(atPath: other + "/checkpoints/" + name, toPath: data + "/checkpoints/" + name)
        let audit = try CLI.presence(["audit", "--data", data])
        #expect(audit.status == 2)
        #expect(audit.stdout.contains("DIFFERS from a fresh fold"), "\(audit.stdout)")
    }
}
