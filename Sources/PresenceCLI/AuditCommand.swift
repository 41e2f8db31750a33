import ArgumentParser
import Chat
import Erasure
import Presence
import Projector
import SegmentLog

struct AuditCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Verify the log and the newest checkpoint, and report anomalies.",
        discussion: """
            Checks every batch of every segment (framing, CRC, every record, offsets contiguous, record \
            timestamps within the batch's bounds) and the index files against the log; folds the whole \
            log and checks that the newest checkpoint equals the fold at its offset; and counts anomalies \
            with examples: disconnects without a connect, repeated events, connections open for long, \
            events far out of order, and events refused by the late-arrival horizon; and, for information, \
            the sessions of reused connection ids (a device that reconnects with the same id: not an \
            anomaly). With --privacy, also the privacy log: every settings record readable, within the \
            limits and in time order (so the settings in force at any time have one answer), and, re-derived \
            from the logs by the server's rule, what the settings hide between contacts. A damaged batch is \
            located by file, batch number and byte position. When the data directory has conversations, \
            the messages log is checked the same way and the message index and its checkpoint \
            (DATA/messages-index) against a fold of it: every indexed message's entry must name its \
            record's offset and batch, the checkpoint the conversations the log has at its offset. \
            After an erasure (presence forget) the presence log has gaps: every missing offset must be named \
            by an erasure record in DATA/erasures/, else it is corruption; an erasure that did not finish is \
            reported (run presence forget again). \
            Exit 0 when clean, 1 for anomalies only (including index files or a message index to \
            rebuild, a torn tail and an unfinished erasure), 2 for corruption (also an index entry that \
            disagrees with the log, and a gap no erasure accounts for).
            """
    )

    @Option(name: .long, help: ArgumentHelp("The data directory.", valueName: "dir"))
    var data: String

    @Flag(help: "One JSON object instead of the text report.")
    var json = false

    @Option(help: ArgumentHelp("Report connections open longer than this (e.g. 24h).", valueName: "duration"))
    var openLongerThan = DurationArgument(default: "24h")

    @Option(help: ArgumentHelp("Report events more than this behind the newest event time (e.g. 5m).", valueName: "duration"))
    var outOfOrder = DurationArgument(default: "5m")

    @Flag(help: "Also check the privacy log and re-derive what the settings hide (see above).")
    var privacy = false

    @OptionGroup var horizon: HorizonOption

    func run() throws {
        let report: Audit.Report
        var privacyAudit: PrivacyAudit?
        let messages: MessageAudit.Report?
        let erasures: ErasureAudit
        do {
            var options = Audit.Options()
            options.openLongerThan = openLongerThan.milliseconds
            options.outOfOrder = outOfOrder.milliseconds
            options.horizon = try horizon.forReading(data: data)
            report = try Audit.run(data: data, logDirectory: presenceLogPath(data), options: options)
            erasures = try ErasureAudit.check(data: data.hasSuffix("/") ? String(data.dropLast()) : data, gaps: report.storage.gaps)
            messages = try MessageAudit.run(data: data.hasSuffix("/") ? String(data.dropLast()) : data)
            if privacy { privacyAudit = try PrivacyAudit.run(data: data) }
        } catch {
            throw fail(error)
        }
        // While an erasure is unfinished the checkpoints still hold the user and the log no longer does:
        // a checkpoint that differs is then expected (forget replaces them), not corruption.
        var presenceExit = report.exitCode
        if presenceExit == 2 && report.storage.corruption.isEmpty && !erasures.summary.unfinished.isEmpty { presenceExit = 1 }
        let exitCode = max(presenceExit, messages?.exitCode ?? 0, privacyAudit?.exitCode ?? 0, erasures.exitCode)
        if json {
            printJSON(report, messages, privacyAudit, erasures, exitCode: exitCode)
        } else {
            printText(report, messages, privacyAudit, erasures, exitCode: exitCode)
        }
        if exitCode != 0 { throw ExitCode(exitCode) }
    }

    private func printText(_ report: Audit.Report, _ messages: MessageAudit.Report?, _ privacyAudit: PrivacyAudit?,
                           _ erasures: ErasureAudit, exitCode: Int32) {
        let storage = report.storage
        print("audit of \(presenceLogPath(data))")
        print("storage: \(grouped(storage.segments)) segments, \(grouped(storage.batches)) batches, \(grouped(storage.records)) records, \(bytesText(storage.bytes))"
              + (storage.corruption.isEmpty ? ": every batch verified" : ""))
        for finding in storage.corruption { print("  CORRUPT \(finding)") }
        for finding in storage.indexProblems { print("  index   \(finding) (the next writer rebuilds it)") }
        if let torn = storage.tornTail { print("  torn tail \(torn) (never acknowledged; the next writer removes it)") }
        printText(erasures)
        if let check = report.checkpoint {
            let stale = erasures.summary.unfinished.isEmpty ? "" : " (expected while an erasure is unfinished: run presence forget again)"
            print("checkpoint \(check.path): " + (check.problem.map { "DIFFERS from a fresh fold: \($0)\(stale)" } ?? "equals a fresh fold at its offset"))
        } else {
            print("checkpoint: none")
        }
        print("fold: \(grouped(report.eventsFolded)) events, \(grouped(report.users)) users")
        print("anomalies:")
        for anomaly in report.anomalies {
            let examples = anomaly.examples.isEmpty ? "" : " (e.g. \(anomaly.examples.joined(separator: "; ")))"
            print("  \(anomaly.name): \(grouped(anomaly.count))\(anomaly.count > 0 ? examples : "")")
        }
        print("information:")
        for count in report.information {
            let examples = count.examples.isEmpty ? "" : " (e.g. \(count.examples.joined(separator: "; ")))"
            print("  \(count.name): \(grouped(count.count))\(count.count > 0 ? examples : "")")
        }
        if let messages { printText(messages) }
        privacyAudit?.printText()
        switch exitCode {
        case 0: print("result: clean")
        case 1: print("result: anomalies (exit 1)")
        default: print("result: CORRUPT (exit 2)")
        }
    }

    private func printText(_ erasures: ErasureAudit) {
        let summary = erasures.summary
        guard summary.users > 0 || !erasures.gaps.isEmpty else { return }
        let missing = erasures.gaps.reduce(Int64(0)) { $0 + Int64($1.count) }
        print("erasures: \(counted(summary.users, "user")) erased, \(grouped(summary.recordsRemoved)) records removed; "
              + "\(grouped(Int(missing))) offsets missing from the presence log, "
              + (erasures.unaccounted.isEmpty ? "every one named by an erasure record" : "SOME NAMED BY NO ERASURE RECORD"))
        for range in erasures.unaccounted.prefix(10) {
            print("  CORRUPT offsets \(ErasureAudit.text(range)) are missing and no erasure removed them")
        }
        if erasures.unaccounted.count > 10 { print("  ... and \(erasures.unaccounted.count - 10) more ranges") }
        for name in summary.unfinished {
            print("  unfinished erasure (user \(name.prefix(16))…): run presence forget again for that user to complete it")
        }
    }

    private func printText(_ report: MessageAudit.Report) {
        let storage = report.storage
        print("audit of \(report.logDirectory)")
        print("storage: \(grouped(storage.segments)) segments, \(grouped(storage.batches)) batches, \(grouped(storage.records)) records, \(bytesText(storage.bytes))"
              + (storage.corruption.isEmpty ? ": every batch verified" : ""))
        for finding in storage.corruption { print("  CORRUPT \(finding)") }
        for finding in storage.indexProblems { print("  index   \(finding) (the next writer rebuilds it)") }
        if let torn = storage.tornTail { print("  torn tail \(torn) (never acknowledged; the next writer removes it)") }
        guard storage.corruption.isEmpty else { return }
        print("conversations: \(grouped(report.conversations)), messages: \(grouped(report.messages))")
        for problem in report.cacheProblems { print("  message index: \(problem)") }
        if let offset = report.checkpointOffset {
            print("message index: \(grouped(report.entriesChecked)) entries checked against the log, checkpoint at offset \(offset) "
                  + (report.disagreementCount == 0 ? "equals the log's conversations" : "(\(grouped(report.disagreementCount)) DISAGREEMENTS)")
                  + (report.recordsAfterCheckpoint > 0 ? "; \(grouped(report.recordsAfterCheckpoint)) records after it (the next start replays them)" : ""))
        }
        for disagreement in report.disagreements { print("  DIFFERS \(disagreement)") }
        if report.disagreementCount > report.disagreements.count { print("  ... and \(grouped(report.disagreementCount - report.disagreements.count)) more") }
        if report.disagreementCount > 0 { print("  remove \(data)/messages-index and restart the server to rebuild it from the log") }
    }

    private func printJSON(_ report: Audit.Report, _ messages: MessageAudit.Report?, _ privacyAudit: PrivacyAudit?,
                           _ erasures: ErasureAudit, exitCode: Int32) {
        func string(_ text: String) -> String {
            var out: [UInt8] = []
            EventJSON.appendString(text, to: &out)
            return String(decoding: out, as: UTF8.self)
        }
        func findings(_ list: [LogVerifier.Finding]) -> String {
            "[" + list.map { "{\"file\":\(string($0.path)),\"batch\":\($0.batch.map(String.init) ?? "null"),\"position\":\($0.position),\"reason\":\(string($0.reason))}" }.joined(separator: ",") + "]"
        }
        let storage = report.storage
        var fields = [
            "\"exit\":\(exitCode)",
            "\"segments\":\(storage.segments)", "\"batches\":\(storage.batches)", "\"records\":\(storage.records)", "\"bytes\":\(storage.bytes)",
            "\"corruption\":\(findings(storage.corruption))", "\"index_problems\":\(findings(storage.indexProblems))",
            "\"torn_tail\":\(storage.tornTail.map { findings([$0]) } ?? "null")",
        ]
        if let check = report.checkpoint {
            fields.append("\"checkpoint\":{\"file\":\(string(check.path)),\"problem\":\(check.problem.map(string) ?? "null")}")
        } else {
            fields.append("\"checkpoint\":null")
        }
        let missing = erasures.gaps.reduce(0) { $0 + $1.count }
        let unaccounted = erasures.unaccounted.map { "[\($0.lowerBound),\($0.upperBound)]" }.joined(separator: ",")
        var erasureFields = "\"users\":\(erasures.summary.users),\"records_removed\":\(erasures.summary.recordsRemoved),"
        erasureFields += "\"missing_offsets\":\(missing),\"unaccounted\":[\(unaccounted)],\"unfinished\":\(erasures.summary.unfinished.count)"
        fields.append("\"erasures\":{\(erasureFields)}")
        fields.append("\"events\":\(report.eventsFolded)")
        fields.append("\"users\":\(report.users)")
        func counts(_ list: [PresenceProjection.Anomaly]) -> String {
            "[" + list.map {
                "{\"name\":\(string($0.name)),\"count\":\($0.count),\"examples\":[\($0.examples.map(string).joined(separator: ","))]}"
            }.joined(separator: ",") + "]"
        }
        fields.append("\"anomalies\":" + counts(report.anomalies))
        fields.append("\"information\":" + counts(report.information))
        if let messages {
            let storage = messages.storage
            fields.append("\"messages\":{" + [
                "\"exit\":\(messages.exitCode)", "\"segments\":\(storage.segments)", "\"batches\":\(storage.batches)",
                "\"records\":\(storage.records)", "\"bytes\":\(storage.bytes)", "\"corruption\":\(findings(storage.corruption))",
                "\"index_problems\":\(findings(storage.indexProblems))", "\"torn_tail\":\(storage.tornTail.map { findings([$0]) } ?? "null")",
                "\"conversations\":\(messages.conversations)", "\"messages\":\(messages.messages)",
                "\"checkpoint_offset\":\(messages.checkpointOffset.map(String.init) ?? "null")",
                "\"records_after_checkpoint\":\(messages.recordsAfterCheckpoint)", "\"entries_checked\":\(messages.entriesChecked)",
                "\"cache_problems\":[\(messages.cacheProblems.map(string).joined(separator: ","))]",
                "\"disagreements\":\(messages.disagreementCount)",
                "\"disagreement_examples\":[\(messages.disagreements.map(string).joined(separator: ","))]",
            ].joined(separator: ",") + "}")
        } else {
            fields.append("\"messages\":null")
        }
        if let privacyAudit { fields.append("\"privacy\":" + privacyAudit.json()) }
        print("{" + fields.joined(separator: ",") + "}")
    }
}
