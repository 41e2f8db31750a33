import ArgumentParser
import Presence
import SegmentLog

/// `--horizon`, the late-arrival horizon, as every command that writes or folds the presence log takes
/// it. The log keeps its own in DIR/horizon (see `StoredHorizon`).
struct HorizonOption: ParsableArguments {
    @Option(help: ArgumentHelp("The late-arrival horizon (e.g. 24h). The first writer (ingest, serve) stores it in DIR/horizon (default 24h) and later writers must agree; replay, state and audit fold with the stored one unless given another.", valueName: "duration"))
    var horizon: DurationArgument?

    /// The horizon asked for, if any, in ms.
    var requested: Int64? { horizon?.milliseconds }

    /// The horizon a reader folds with: the one asked for, else the stored one, else the default.
    func forReading(data: String) throws -> Int64 {
        try StoredHorizon.forReading(data: data, requested: requested)
    }
}
