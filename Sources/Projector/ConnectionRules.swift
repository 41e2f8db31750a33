/// The one definition of presence (rules v2), applied by the projector, `History` and the audit; the
/// tests' reference fold writes the same rules the plain way.
///
/// For each connection key (user, conn), its events are taken in the rules' order: by event time, at
/// equal times connects first (so a connect and a disconnect or gateway_down at the same millisecond
/// make a zero-length session), and equal events are one event:
/// 1. A `connect` while the key has no open session starts a session at its ts; one while a session is
///    open is a repeat and changes nothing.
/// 2. A `disconnect` while a session is open ends it at its ts (reason `disconnect`). One while none is
///    open ends a session whose start is unknown if the key had no session before it (the device was
///    there until then), and otherwise changes nothing.
/// 3. A `gateway_down` of gateway g at ts ends, at ts, every session open at ts whose starting connect
///    named g (reason `gateway_down`). At equal times it comes after the key's events.
/// 4. A user is online at T when one of their sessions has start <= T and no end or end > T;
///    `connections` counts such sessions.
/// 5. last_seen at T is the latest end <= T over the user's sessions (none when there is none).
/// 6. The state at T depends only on the set of events with ts <= T: not on arrival order or repeats.
///
/// A connection id may be reused: every connect after an end starts a new session. Nothing in the
/// rules reads a clock.
public enum ConnectionRules {
    /// Why a session ended.
    public enum EndReason: UInt8, Sendable {
        case disconnect = 1
        case gatewayDown = 2

        public var name: String { self == .disconnect ? "disconnect" : "gateway_down" }
    }

    /// A key's sessions when it has at most one connect and at most one disconnect, no earlier than the
    /// connect (nearly every key, when ids are not reused): then it has one session, which this gives.
    public struct Resolution: Equatable, Sendable {
        /// nil while the session is open.
        public var end: Int64?
        public var reason: EndReason?
        public var isOpen: Bool { end == nil }
    }

    /// The one session of a key whose only events are a connect at `start` and a disconnect at
    /// `disconnect` (>= start), either possibly missing, given the connect's gateway's `gateway_down`
    /// times in ascending order. A key with only a disconnect has a session of unknown start ending there.
    @inline(__always)
    public static func resolve(start: Int64?, disconnect: Int64?, gatewayDowns: UnsafeBufferPointer<Int64>) -> Resolution {
        guard let start else {
            return Resolution(end: disconnect, reason: .disconnect)
        }
        // Rule 3: the first gateway_down at or after the start, unless the disconnect comes first (at
        // equal times the disconnect is applied first).
        if let down = firstAtOrAfter(start, in: gatewayDowns), disconnect.map({ down < $0 }) ?? true {
            return Resolution(end: down, reason: .gatewayDown)
        }
        if let disconnect { return Resolution(end: disconnect, reason: .disconnect) }
        return Resolution(end: nil, reason: nil)
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

    // MARK: Any key

    /// One event of a connection key, as the rules see it.
    public struct KeyEvent: Equatable, Sendable, BitwiseCopyable {
        public var timestamp: Int64
        /// A connect's gateway, as an index into the caller's gateway table. The rules ignore a
        /// disconnect's gateway (callers keep -1 there, or what they need for display).
        public var gateway: Int32
        /// 1 for a connect, 2 for a disconnect (plain bytes: the projector checkpoints these as they lie).
        var kind: UInt8

        public var isConnect: Bool { kind == 1 }

        /// Its fields' offsets, for the checkpoint's layout fingerprint.
        static var fieldOffsets: [Int?] {
            [\KeyEvent.timestamp, \KeyEvent.gateway, \KeyEvent.kind].map(MemoryLayout<KeyEvent>.offset(of:))
        }

        public init(timestamp: Int64, gateway: Int32, isConnect: Bool) {
            self.timestamp = timestamp
            self.gateway = gateway
            self.kind = isConnect ? 1 : 2
        }
    }

    /// The order of a key's events: time, then connects before disconnects, then connects at the same
    /// time by gateway name (`gatewayPrecedes`), so that the first of two is the same whatever order
    /// they arrived in. nil when the two are the same event (a repeat).
    @inline(__always)
    public static func precedes(_ a: KeyEvent, _ b: KeyEvent, gatewayPrecedes: (Int32, Int32) -> Bool) -> Bool? {
        if a.timestamp != b.timestamp { return a.timestamp < b.timestamp }
        if a.isConnect != b.isConnect { return a.isConnect }
        guard a.isConnect, a.gateway != b.gateway else { return nil }
        return gatewayPrecedes(a.gateway, b.gateway)
    }

    /// A session that has ended, as `Sessions` reports it.
    public struct EndedSession: Equatable, Sendable {
        /// nil for a session whose start is unknown (rule 2).
        public var start: Int64?
        public var end: Int64
        public var reason: EndReason
        /// The gateway of its connect; -1 when the start is unknown.
        public var gateway: Int32
    }

    /// Rules 1-3 as a state machine over one key's events, fed in the rules' order (`precedes`), with
    /// `settle` before each event and once at the end for the gateway_downs in between. A plain value
    /// of fixed size: the projector keeps one per key whose ids are reused, and checkpoints it as it is.
    public struct Sessions: Equatable, Sendable, BitwiseCopyable {
        public static let noTime = Int64.min

        /// The open session's start (meaningful while `isOpen`).
        public private(set) var start: Int64 = 0
        /// The latest end so far, or `noTime`.
        public private(set) var lastEnd: Int64 = Sessions.noTime
        /// The gateway of the session started last (the open one while `isOpen`), or -1.
        public private(set) var gateway: Int32 = -1
        /// Sessions so far, those of unknown start included.
        public private(set) var count: Int32 = 0
        /// Sessions of unknown start so far (at most one: only a key's first session can be one).
        public private(set) var unknownStarts: Int32 = 0
        /// 1 while a session is open (a plain byte: the projector checkpoints these as they lie).
        private var open: UInt8 = 0
        /// `EndReason` of the latest end, or 0.
        public private(set) var lastReason: UInt8 = 0

        public var isOpen: Bool { open != 0 }

        public init() {}

        /// Its fields' offsets, for the checkpoint's layout fingerprint.
        static var fieldOffsets: [Int?] {
            [\Sessions.start, \Sessions.lastEnd, \Sessions.gateway, \Sessions.count, \Sessions.unknownStarts, \Sessions.open,
             \Sessions.lastReason].map(MemoryLayout<Sessions>.offset(of:))
        }

        /// Whether its fields could come from a fold (a checkpoint's are checked with it).
        var isValid: Bool {
            open <= 1 && lastReason <= 2 && gateway >= -1 && count >= 0 && (unknownStarts == 0 || unknownStarts == 1)
        }

        /// Rule 3: ends the open session at the first gateway_down of its gateway at or after its start,
        /// if that comes before `time` (pass `Int64.max` at the end). `downs`: the open session's gateway's
        /// gateway_down times, ascending.
        @inline(__always)
        public mutating func settle(before time: Int64, downs: UnsafeBufferPointer<Int64>) -> EndedSession? {
            guard isOpen, !downs.isEmpty, let down = ConnectionRules.firstAtOrAfter(start, in: downs), down < time else { return nil }
            open = 0
            lastEnd = down
            lastReason = EndReason.gatewayDown.rawValue
            return EndedSession(start: start, end: down, reason: .gatewayDown, gateway: gateway)
        }

        /// Rules 1 and 2 for the next event; returns the session it ended, if any.
        @inline(__always)
        @discardableResult
        public mutating func apply(_ event: KeyEvent) -> EndedSession? {
            if event.isConnect {
                guard !isOpen else { return nil }  // a repeat
                open = 1
                start = event.timestamp
                gateway = event.gateway
                count += 1
                return nil
            }
            if isOpen {
                open = 0
                lastEnd = event.timestamp
                lastReason = EndReason.disconnect.rawValue
                return EndedSession(start: start, end: event.timestamp, reason: .disconnect, gateway: gateway)
            }
            guard count == 0 else { return nil }  // after a session: changes nothing
            count = 1
            unknownStarts = 1
            lastEnd = event.timestamp
            lastReason = EndReason.disconnect.rawValue
            return EndedSession(start: nil, end: event.timestamp, reason: .disconnect, gateway: -1)
        }
    }
}
