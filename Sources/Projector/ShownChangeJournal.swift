/// The newest changes of shown presence (`ShownPresence`), every user's, in log order, up to a bounded
/// count: what a client that comes back with the cursor it had reached (after its node died, to any
/// node of a cluster, where offsets are the same) is sent of what it missed, each change once, instead
/// of a fresh snapshot. Older changes fall out; `changes(from:of:)` then says it cannot answer.
public struct ShownChangeJournal: Sendable {
    public struct Change: Sendable, Equatable {
        /// The offset of the record that made the change (a `gateway_down`'s for all it ended).
        public var offset: Int64
        public var user: String
        public var online: Bool
        public var lastSeen: Int64?
        public var connections: Int32

        /// The change to `state` (nil: a user never seen, shown as offline without a last seen).
        public init(offset: Int64, user: String, state: PresenceProjection.UserState?) {
            self.offset = offset
            self.user = user
            online = state?.online ?? false
            lastSeen = state?.lastSeen
            connections = Int32(clamping: state?.connections ?? 0)
        }

        /// The user's state after the change.
        public var state: PresenceProjection.UserState {
            PresenceProjection.UserState(user: user, online: online, lastSeen: lastSeen, connections: Int(connections))
        }
    }

    /// How many changes are kept (0: none, and no resume is ever answered).
    public let capacity: Int
    private var ring: [Change] = []
    /// The oldest change's index once the ring is full.
    private var oldest = 0
    /// Every shown change at or after this offset is here.
    public private(set) var completeFrom: Int64

    /// A journal of the changes from `offset` on (a node's projection's next offset when it starts).
    public init(capacity: Int, completeFrom offset: Int64) {
        self.capacity = max(0, capacity)
        completeFrom = capacity > 0 ? offset : Int64.max
        ring.reserveCapacity(min(self.capacity, 1 << 16))
    }

    public var count: Int { ring.count }

    /// Whether changes are being noted (`pause`, `resume`).
    public private(set) var isRecording = true

    /// Stops noting changes (a node catching up with its cluster's stream before it serves: nobody can
    /// have a cursor from that stretch on this node's clients, and noting costs more than the fold).
    public mutating func pause() {
        isRecording = false
    }

    /// Notes changes again from `offset` on; a cursor before it is not answered.
    public mutating func resume(completeFrom offset: Int64) {
        guard capacity > 0 else { return }
        ring.removeAll(keepingCapacity: true)
        oldest = 0
        completeFrom = offset
        isRecording = true
    }

    /// Notes a change; changes come in log order (offsets never decrease).
    public mutating func record(_ change: Change) {
        guard capacity > 0 else { return }
        if ring.count < capacity {
            ring.append(change)
            return
        }
        // The oldest falls out: the journal no longer holds every change at its offset.
        completeFrom = max(completeFrom, ring[oldest].offset + 1)
        ring[oldest] = change
        oldest = (oldest + 1) % capacity
    }

    /// The changes of `users` at or after `cursor`, oldest first; nil when some may have fallen out (the
    /// cursor is older than what the journal holds in full).
    public func changes(from cursor: Int64, of users: Set<String>) -> [Change]? {
        guard cursor >= completeFrom else { return nil }
        var found: [Change] = []
        var index = ring.count
        while index > 0 {
            index -= 1
            let change = ring[(oldest + index) % max(ring.count, 1)]
            if change.offset < cursor { break }
            if users.contains(change.user) { found.append(change) }
        }
        return found.reversed()
    }
}
