import SegmentLog

/// `presence audit`'s account of the presence log's gaps: every offset missing inside a batch must be
/// named by an erasure record (else it is corruption: records vanished that nobody erased), and an
/// erasure without its completion is reported so that someone runs `presence forget` again.
public struct ErasureAudit: Sendable {
    public var summary: ErasureLog.Summary
    /// The gaps found in the presence log, adjacent ones merged.
    public var gaps: [ClosedRange<Int64>]
    /// Gaps (or parts of them) that no erasure record names.
    public var unaccounted: [ClosedRange<Int64>]

    /// 2 when a gap is unaccounted for, 1 when an erasure is unfinished, else 0.
    public var exitCode: Int32 {
        if !unaccounted.isEmpty { return 2 }
        return summary.unfinished.isEmpty ? 0 : 1
    }

    /// Checks `gaps` (from `LogVerifier.Report.gaps`) against the erasure log of the data folder `data`.
    public static func check(data: String, gaps: [ClosedRange<Int64>]) throws -> ErasureAudit {
        let summary = ErasureLog.summarize(try ErasureLog.read(data: data))
        var unaccounted: [ClosedRange<Int64>] = []
        for gap in gaps where !summary.accounts(for: gap) {
            // Which parts: every offset not inside a named range.
            var next = gap.lowerBound
            for range in summary.presenceRanges where range.upperBound >= next && range.lowerBound <= gap.upperBound {
                if range.lowerBound > next { unaccounted.append(next...(range.lowerBound - 1)) }
                next = range.upperBound + 1
            }
            if next <= gap.upperBound { unaccounted.append(next...gap.upperBound) }
        }
        return ErasureAudit(summary: summary, gaps: gaps, unaccounted: unaccounted)
    }

    /// A range as `a-b` (or `a`).
    public static func text(_ range: ClosedRange<Int64>) -> String {
        range.lowerBound == range.upperBound ? "\(range.lowerBound)" : "\(range.lowerBound)-\(range.upperBound)"
    }
}
