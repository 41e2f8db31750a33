import Presence
import SegmentLog

/// The projection's data, as one value so that a batch is applied under one exclusive access.
struct ProjectionState {
    static let none = Int64.min
    static let noStart = Int64.max

    struct User {
        var hash: UInt64
        var lastSeen: Int64 = ProjectionState.none
        var keyOffset: UInt32
        var open: Int32 = 0
        var firstConnection: Int32 = -1
        var keyLength: UInt16
    }

    /// A connection key (user, conn): one 64-byte line, key included when it is short. The key is the
    /// user id followed by the connection identity (`EventCodec.View.writeConnIdentity`); up to
    /// `inlineKeyBytes` long it lies in `key`, zero-padded, so that finding a connection reads its slot
    /// and this line and nothing else; a longer one lies in `connectionArena`, at the offset in `key.0`.
    /// No hash is stored: a rehash computes it again from the key, split after its user id
    /// (`userLengthLessOne`).
    ///
    /// A *simple* key has at most one connect and at most one disconnect, no earlier than the connect:
    /// one session, whose times lie here. Any other key is a history (`reusedKey` set in `reason`,
    /// its events in `histories[disconnect]`, see `KeyHistory`); then `start` is the open session's
    /// start (`noStart` when none is open), `end` the key's latest end while none is open, `gateway` the
    /// gateway of its latest session.
    struct Connection {
        /// The connect's ts, or `noStart`.
        var start: Int64 = ProjectionState.noStart
        /// The disconnect's ts, or `none`; for a history, its index in `histories`.
        var disconnect: Int64 = ProjectionState.none
        /// The session's end, or `none` while open.
        var end: Int64 = ProjectionState.none
        var key: (UInt64, UInt64, UInt64)
        var user: Int32
        var gateway: Int32
        var nextOfUser: Int32
        var keyLength: UInt16
        /// `ConnectionRules.EndReason` of the end, or 0; with `reusedKey` set for a history.
        var reason: UInt8 = 0
        /// The user id's length in the key, less one (ids are 1 to 256 bytes).
        var userLengthLessOne: UInt8
    }

    /// Connection keys up to this long are kept in their record.
    static let inlineKeyBytes = 24

    /// One event of the batch being applied, decoded.
    struct Pending {
        var offset: Int64
        var timestamp: Int64
        /// The user id (the start of `key`; empty for gateway events).
        var user: UnsafeRawBufferPointer
        /// The connection's key: the user id, then the connection identity. The memory after it is
        /// zero up to `inlineKeyBytes` (and to a multiple of eight bytes), so that its words can be
        /// read whole.
        var key: UnsafeRawBufferPointer
        var gateway: UnsafeRawBufferPointer
        var hash: UInt64 = 0
        var userHash: UInt64 = 0
        var candidate: Int32 = -1
        var userCandidate: Int32 = -1
        /// When pass 2 found no candidate: the empty slot that ended the probe (where the connection
        /// goes if nothing has been placed there since), or -1.
        var emptySlot: Int32 = -1
        var kind: EventKind
    }

    var userSlots = FlatStorage<UInt64>(capacity: 1 << 12, count: 1 << 12)
    var users = FlatStorage<User>(capacity: 1 << 12)
    var userArena = FlatStorage<UInt8>(capacity: 1 << 16)
    /// 32-bit slots with as many index bits as the table has slots' bits (`Slots`).
    var connectionSlots = FlatStorage<UInt32>(capacity: 1 << 12, count: 1 << 12) {
        didSet { connectionSlotsEpoch &+= 1 }
    }
    /// The index bits of a connection slot: log2 of the table's size.
    var connectionIndexBits: Int { connectionSlots.count.trailingZeroBitCount }
    /// The index bits of a user slot (64-bit slots, 32-bit tags).
    static let userIndexBits = 32
    /// Changes whenever `connectionSlots` is replaced (growth, sweep): slots found before then are void.
    var connectionSlotsEpoch = 0
    var connections = FlatStorage<Connection>(capacity: 1 << 12)
    var connectionArena = FlatStorage<UInt8>(capacity: 1 << 16)
    var gateways = ByteTable(capacity: 64)
    /// Gateway names of up to 15 bytes seen lately, with their index (`gatewayIndex`): each entry is the
    /// name's two words (the length in the top byte of the second) and the index. Derived, not saved.
    let gatewayMemo = FlatStorage<UInt64>(capacity: 3 * 64, count: 3 * 64)
    /// Each gateway's gateway_down times, ascending, without repeats.
    var gatewayDowns: [[Int64]] = []
    /// Keys that are not simple (`KeyHistory`), by the index their record holds, and their events.
    var histories = FlatStorage<KeyHistory>(capacity: 1 << 10)
    var historyEvents = BlockArena<ConnectionRules.KeyEvent>(smallest: 4)
    var historySnapshots = BlockArena<ConnectionRules.Sessions>(smallest: 1)
    /// Indices of `histories` free for reuse.
    var freeHistories: [Int32] = []
    var gatewayHeartbeat: [Int64] = []
    /// Where `apply(batch:)` decodes a batch.
    let prepared = PreparedBatch()
    /// Anomaly counters, only while auditing.
    var audit: AuditTally?

    var eventsApplied = 0
    var refusedEvents = 0
    var horizon: Int64 = defaultLateArrivalHorizon
    var nextOffset: Int64 = 0
    var maxTimestamp = Int64.min
    var onlineUsers = 0
    var openConnections = 0
    /// Connections removed by sweeps (since this projection was built or loaded).
    var forgottenConnections = 0
    /// The connection count at which the next sweep runs.
    var nextSweep = ProjectionState.minimumSweep
    /// The offset at or past which the next event is preceded by a sweep check (`sweepCheckInterval`).
    var nextSweepCheck: Int64 = 0

    /// Bytes in use (untouched capacity costs no memory): slots, records and id bytes.
    var memoryBytes: (users: Int, connections: Int) {
        (userSlots.bytesInUse + users.bytesInUse + userArena.bytesInUse,
         connectionSlots.bytesInUse + connections.bytesInUse + connectionArena.bytesInUse
            + histories.bytesInUse + historyEvents.bytesInUse + historySnapshots.bytesInUse)
    }
}
