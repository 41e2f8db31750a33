import ArgumentParser
import Erasure
import Presence
import SegmentLog

#if canImport(Glibc)
import Glibc
#endif

struct ForgetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "forget",
        abstract: "Erase one user: every record of theirs, from the logs and the snapshots.",
        discussion: """
            Removes every record of --user from the presence log (their connects and disconnects; gateway_down \
            and every other user's records stay, each at its offset), from the privacy log (their settings), \
            and from the snapshots: the retention base in DATA/retained/ is rewritten without them, and the \
            checkpoints in DATA/checkpoints/ are replaced by one fresh checkpoint folded from the rewritten \
            log. Offsets are not renumbered: the removed ones become gaps, as in Kafka's compacted logs, and \
            every reader (dump, history, state, replay, audit, serve, kafka-python) passes over them.

            Each segment that held the user is written anew beside the old one (NNN.log.forget), fsynced and \
            renamed over it: a crash leaves every segment either old or new, and running forget again \
            finishes the erasure. Before any segment changes, an erasure record is written to DATA/erasures/: \
            the removed offsets and counts, under a keyed hash of the user id (HMAC-SHA256 with the secret in \
            DATA/erasure.key, made at the first erasure; never the id itself), so that audit can account for \
            every gap; a completion record follows the last step.

            Kept: the user's conversations, memberships and messages (they are the other members' history \
            too), other users' privacy settings that name the user in an exception list, and the newest \
            event time. It cannot be undone: the records are rewritten, not hidden (restore a backup taken \
            before to get them back). Copies outside this data directory (backups, a cluster's JetStream \
            stream, Kafka consumers that already read the records) are not touched: forget is refused on a \
            cluster node's data folder.

            Takes the data directory's lock: stop the server (and any ingest) first, or erase through the \
            running server instead: POST /v1/admin/forget {"user":"<id>"} with an admin token (presence \
            token --admin) does the same while it serves. Exit 1 when the user has no record (nothing is \
            changed) or the directory is in use.
            """
    )

    @Option(name: .long, help: ArgumentHelp("The data directory.", valueName: "dir"))
    var data: String

    @Option(help: ArgumentHelp("The user id to erase.", valueName: "id"))
    var user: String

    @OptionGroup var horizon: HorizonOption

    func validate() throws {
        guard !user.isEmpty else { throw ValidationError("--user is empty") }
    }

    func run() throws {
        do {
            guard FileSystem.isDirectory(presenceLogPath(data)) else { throw LogError(.invalidArgument, "no presence log in \(data)") }
            let horizonMilliseconds = try horizon.forReading(data: data)
            let directory: DataDirectory
            do {
                directory = try DataDirectory(path: data)
            } catch {
                guard error.code == .locked else { throw error }
                throw LogError(.locked, "\(error.message); nothing was erased")
            }
            var now = timespec()
            clock_gettime(CLOCK_REALTIME, &now)
            let milliseconds = Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
            let outcome = try Erasure.run(directory, user: user, horizon: horizonMilliseconds, now: milliseconds) { printError($0) }
            var parts = ["removed \(counted(outcome.presenceRecords, "presence record")) and \(counted(outcome.privacyRecords, "privacy record")) of '\(user)'"]
            if outcome.segmentsRewritten > 0 {
                parts.append("\(counted(outcome.segmentsRewritten, "segment")) rewritten (\(bytesText(outcome.bytesBefore)) → \(bytesText(outcome.bytesAfter)))")
            }
            if outcome.baseCheckpoints > 0 { parts.append("\(counted(outcome.baseCheckpoints, "retention base")) rewritten") }
            if let checkpoint = outcome.checkpoint {
                parts.append("fresh checkpoint \(checkpoint)" + (outcome.checkpointsRemoved > 0 ? " (\(counted(outcome.checkpointsRemoved, "older one")) removed)" : ""))
            }
            print(parts.joined(separator: "; ") + (outcome.resumed ? "; an interrupted erasure is now complete" : ""))
        } catch let refusal as Erasure.Refusal {
            printError("error: \(refusal.description)")
            throw ExitStatus.failure.exitCode
        } catch {
            throw fail(error)
        }
    }
}
