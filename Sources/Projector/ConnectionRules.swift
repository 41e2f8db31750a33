/// The one definition of presence, applied by the projector, the history and the tests' reference fold.
///
/// For each connection, keyed by (user, conn):
/// 1. Its start is the smallest ts among its connect events; its end the largest ts among its
///    disconnect events, if any.
/// 2. If a `gateway_down` of the connection's gateway has ts >= start, the connection ends at the
///    smallest such ts when that is earlier than the end from rule 1 (or there was none). The end
///    reason is recorded: `disconnect` or `gatewayDown`.
/// 3. A connection with a start and no end is open. One with only disconnect events is closed.
/// 4. A user is online while at least one of their connections is open; `connections` counts them.
/// 5. last_seen is the latest max(start, end) over the user's closed connections; none if none.
/// 6. The state at time T is given by the same rules over the events with ts <= T.
///
/// The state is a function of the set of events: arrival order and repeats do not change it, and
/// nothing in it reads a clock. A consequence worth knowing: a late event can move last_seen back
/// (a gateway_down that arrives after a disconnect it precedes shortens that connection); within the
/// late-arrival horizon the fold always agrees with the rules, not with the arrival order.
public enum ConnectionRules {
    /// Why a connection ended.
    public enum EndReason: UInt8, Sendable {
        case disconnect = 1
        case gatewayDown = 2

        public var name: String { self == .disconnect ? "disconnect" : "gateway_down" }
    }

    /// A connection's resolved state.
    public struct Resolution: Equatable, Sendable {
        /// nil while the connection is open.
        public var end: Int64?
        public var reason: EndReason?
        public var isOpen: Bool { end == nil }
    }

    /// Applies rules 1-3 to a connection with `start` (smallest connect ts) and `disconnect` (largest
    /// disconnect ts), given its gateway's `gateway_down` times in ascending order.
    @inline(__always)
    public static func resolve(start: Int64?, disconnect: Int64?, gatewayDowns: UnsafeBufferPointer<Int64>) -> Resolution {
        guard let start else {
            // Rule 3: only disconnects: closed at the last of them.
            return Resolution(end: disconnect, reason: .disconnect)
        }
        if let down = firstAtOrAfter(start, in: gatewayDowns), disconnect.map({ down < $0 }) ?? true {
            return Resolution(end: down, reason: .gatewayDown)
        }
        if let disconnect { return Resolution(end: disconnect, reason: .disconnect) }
        return Resolution(end: nil, reason: nil)
    }

    /// Rule 5's contribution of a closed connection: max(start, end).
    @inline(__always)
    public static func lastSeen(start: Int64?, end: Int64) -> Int64 {
        guard let start else { return end }
        return max(start, end)
    }

    /// The smallest element >= `value` of an ascending buffer.
    @inline(__always)
    static func firstAtOrAfter(_ value: Int64, in sorted: UnsafeBufferPointer<Int64>) -> Int64? {
        var low = 0, high = sorted.count
        while low < high {
            let mid = (low + high) >> 1
            if sorted[mid] < value { low = mid + 1 } else { high = mid }
        }
        return low < sorted.count ? sorted[low] : nil
    }
}
