import ArgumentParser
import Presence
import Projector
import SegmentLog

struct RetainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "retain",
        abstract: "Delete the presence history older than a time (whole sealed segments).",
        discussion: """
            Removes, from the front of the presence log, the sealed segments whose events are all before \
            --before. First the state after them is kept as the base checkpoint (DATA/retained/), so the \
            current state stays exact and every later fold starts from it; then DATA/retention records the \
            first retained offset and the cut; then the segments go, oldest first. A crash at any point \
            loses nothing that should stay: run retain again to finish. Afterwards state --at and history \
            for times before the cut, and dump of offsets before it, say the history was not retained; \
            log-info shows the retained range. Takes the data directory's lock: stop the server first.
            """
    )

    @Option(name: .long, help: ArgumentHelp("The data directory.", valueName: "dir"))
    var data: String

    @Option(help: ArgumentHelp("Delete history before this time (ISO-8601 or epoch ms).", valueName: "time"))
    var before: String

    @OptionGroup var horizon: HorizonOption

    func run() throws {
        do {
            let cut = try parseTime(before, option: "--before")
            let horizonMilliseconds = try horizon.forReading(data: data)
            let directory = try DataDirectory(path: data)
            let logDirectory = try directory.logPath(presenceLogName)
            guard FileSystem.isDirectory(logDirectory) else { throw LogError(.invalidArgument, "no presence log in \(data)") }
            guard let pass = try Retention.run(directory, logDirectory: logDirectory, before: cut, horizon: horizonMilliseconds) else {
                let range = try Retention.read(data: data)
                print("nothing to remove: no sealed segment holds only events before \(Timestamp.format(cut))"
                      + (range.map { "; the log is retained from offset \($0.firstOffset)" } ?? ""))
                return
            }
            print("removed \(counted(pass.segments, "segment")) (\(bytesText(pass.bytes))): the log is retained from offset \(pass.range.firstOffset); "
                  + "history before \(Timestamp.format(pass.range.cut)) is gone; \(counted(pass.kept, "sealed segment")) kept")
        } catch {
            throw fail(error)
        }
    }
}
