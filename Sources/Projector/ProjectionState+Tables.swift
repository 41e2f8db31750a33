import Presence
import SegmentLog

/// The tables: finding and placing users, connection keys and gateways by their bytes (`Slots`,
/// `ByteTable`), the hashes they are placed by, and reading a user's state back.
extension ProjectionState {
    // MARK: Tables

    /// Whether connection `index` has `key` (a prepared key: zero-padded to `inlineKeyBytes`).
    @inline(__always)
    func connectionMatches(_ index: Int, _ key: UnsafeRawBufferPointer) -> Bool {
        let record = connections[index]
        guard Int(record.keyLength) == key.count, let base = key.baseAddress else { return false }
        if key.count <= Self.inlineKeyBytes {
            return record.key.0 == base.loadUnaligned(as: UInt64.self)
                && record.key.1 == base.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
                && record.key.2 == base.loadUnaligned(fromByteOffset: 16, as: UInt64.self)
        }
        return Self.equal(UnsafeRawBufferPointer(connectionArena.buffer), Int(record.key.0), key, UnsafeRawBufferPointer(start: nil, count: 0))
    }

    /// The hash connection `c` is placed by, from its stored key.
    func connectionHash(of c: Int) -> UInt64 {
        let record = connections[c]
        let length = Int(record.keyLength), userLength = Int(record.userLengthLessOne) + 1
        if length > Self.inlineKeyBytes {
            let key = UnsafeRawBufferPointer(start: connectionArena.pointer + Int(record.key.0), count: length)
            return Self.connectionHash(key: key, userLength: userLength)
        }
        var words = record.key
        return withUnsafeBytes(of: &words) { Self.connectionHash(key: UnsafeRawBufferPointer(rebasing: $0[..<length]), userLength: userLength) }
    }

    /// The hash of a connection key from its parts: the user id's mixed bytes (`ByteTable.prefix`, what
    /// the user's own hash finishes), and the identity's (`EventCodec.View.writeConnIdentity`: marker,
    /// packed digits' count, packed digits, text).
    @inline(__always)
    static func connectionHash(userPrefix: UInt64, relative: Bool, connHex: UnsafeRawBufferPointer,
                               storedConn: UnsafeRawBufferPointer) -> UInt64 {
        nonzero(ByteTable.hash(connHex, storedConn, seed: userPrefix ^ (relative ? 0x2545_F491_4F6C_DD1D : 0)))
    }

    /// `connectionHash` of a stored key: the user id (`userLength` bytes), then the identity (its
    /// marker, 0xFF for a conn stored relative to the user id, the packed digits' count, the digits,
    /// the text). A key too short for that (only a damaged checkpoint could hold one; loading checks)
    /// gets a hash of its bytes: placed, never matched by an event.
    static func connectionHash(key: UnsafeRawBufferPointer, userLength: Int) -> UInt64 {
        let marker = userLength
        guard marker + 2 <= key.count, let base = key.baseAddress else { return hash(key) }
        let packed = Int(key[marker + 1])
        let hexStart = marker + 2, textStart = min(key.count, hexStart + packed)
        return connectionHash(userPrefix: ByteTable.prefix(UnsafeRawBufferPointer(start: base, count: marker)), relative: key[marker] == 0xFF,
                              connHex: UnsafeRawBufferPointer(start: base + hexStart, count: textStart - hexStart),
                              storedConn: UnsafeRawBufferPointer(start: base + textStart, count: key.count - textStart))
    }

    func findConnection(_ key: UnsafeRawBufferPointer, hash: UInt64) -> Int? {
        let mask = connectionSlots.count - 1, bits = connectionIndexBits
        var slot = Int(truncatingIfNeeded: hash) & mask
        while true {
            let entry = connectionSlots[slot]
            if entry == 0 { return nil }
            if Slots.matches(entry, hash, indexBits: bits) {
                let index = Slots.index(entry, indexBits: bits)
                if connectionMatches(index, key) { return index }
            }
            slot = (slot + 1) & mask
        }
    }

    /// Grows the connection slot table (load at most 1/2) to hold `expected` connections.
    mutating func reserveConnections(_ expected: Int) {
        var size = connectionSlots.count
        while expected > 0 && expected * 2 > size && size < 1 << 32 { size *= 2 }
        guard size > connectionSlots.count else { return }
        connectionSlots = rehashedConnections(size: size)
    }

    /// A connection slot table of `size` slots holding every connection.
    func rehashedConnections(size: Int) -> FlatStorage<UInt32> {
        Slots.rehash(UInt32.self, count: connections.count, size: size, indexBits: size.trailingZeroBitCount) { connectionHash(of: $0) }
    }

    /// Appends a new connection and places it in the slot table: at `slot` when the caller knows it to
    /// be the first empty slot of the hash's probe sequence, else where a probe finds one.
    mutating func insertConnection(_ key: UnsafeRawBufferPointer, userLength: Int, hash: UInt64, user u: Int,
                                           gateway: UnsafeRawBufferPointer, slot: Int?) -> Int {
        // The gateway first: a call that may change `self` between loading `connections` and appending
        // to it would make the compiler retain the table around it.
        let g = gatewayIndex(gateway)
        let c = connections.count
        var words: (UInt64, UInt64, UInt64) = (0, 0, 0)
        if key.count > Self.inlineKeyBytes {
            words.0 = UInt64(connectionArena.count)
            connectionArena.append(bytes: key)
        } else if let base = key.baseAddress {
            words = (base.loadUnaligned(as: UInt64.self), base.loadUnaligned(fromByteOffset: 8, as: UInt64.self),
                     base.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
        }
        connections.append(Connection(key: words, user: Int32(u), gateway: Int32(g), nextOfUser: users[u].firstConnection,
                                      keyLength: UInt16(key.count), userLengthLessOne: UInt8(userLength - 1)))
        users[u].firstConnection = Int32(c)
        if let slot {
            connectionSlots[slot] = Slots.entry(hash, index: c, indexBits: connectionIndexBits)
        } else {
            Slots.place(hash, index: c, in: connectionSlots, indexBits: connectionIndexBits)
        }
        if connections.count * 2 > connectionSlots.count { reserveConnections(connections.count) }
        return c
    }

    func findUser(_ user: UnsafeRawBufferPointer, hash: UInt64) -> Int? {
        let mask = userSlots.count - 1
        var slot = Int(truncatingIfNeeded: hash) & mask
        while true {
            let entry = userSlots[slot]
            if entry == 0 { return nil }
            if Slots.matches(entry, hash, indexBits: Self.userIndexBits) {
                let index = Slots.index(entry, indexBits: Self.userIndexBits)
                if userMatches(index, hash: hash, user) { return index }
            }
            slot = (slot + 1) & mask
        }
    }

    @inline(__always)
    func userMatches(_ index: Int, hash: UInt64, _ user: UnsafeRawBufferPointer) -> Bool {
        let record = users[index]
        guard record.hash == hash, Int(record.keyLength) == user.count else { return false }
        return Self.equal(UnsafeRawBufferPointer(userArena.buffer), Int(record.keyOffset), user, UnsafeRawBufferPointer(start: nil, count: 0))
    }

    mutating func insertUser(_ user: UnsafeRawBufferPointer, hash: UInt64) -> Int {
        let u = users.count
        users.append(User(hash: hash, keyOffset: UInt32(userArena.count), keyLength: UInt16(user.count)))
        userArena.append(bytes: user)
        Slots.place(hash, index: u, in: userSlots, indexBits: Self.userIndexBits)
        if users.count * 4 > userSlots.count * 3 {  // users: load up to 3/4 keeps them within 64 bytes each
            let records = users.pointer
            userSlots = Slots.rehash(UInt64.self, count: users.count, size: userSlots.count * 2, indexBits: Self.userIndexBits) { records[$0].hash }
        }
        return u
    }

    /// The index of `gateway`, interned if new. Short names (the usual case) are answered from
    /// `gatewayMemo` without hashing or comparing bytes: every new connection asks.
    @inline(__always)
    mutating func gatewayIndex(_ gateway: UnsafeRawBufferPointer) -> Int {
        let n = gateway.count
        guard n > 0 && n < 16, let base = gateway.baseAddress else { return internGateway(gateway) }
        let low = ByteTable.word(base, from: 0, to: min(n, 8))
        let high = UInt64(n) << 56 | (n > 8 ? ByteTable.word(base, from: 8, to: n) : 0)
        let memo = gatewayMemo.pointer
        let entry = 3 * Int(truncatingIfNeeded: ((low ^ high) &* 0x9E37_79B9_7F4A_7C15) >> 58)
        if memo[entry] == low && memo[entry + 1] == high { return Int(memo[entry + 2]) }
        let g = internGateway(gateway)
        memo[entry] = low
        memo[entry + 1] = high
        memo[entry + 2] = UInt64(g)
        return g
    }

    mutating func internGateway(_ gateway: UnsafeRawBufferPointer) -> Int {
        let empty = UnsafeRawBufferPointer(start: gateway.baseAddress, count: 0)
        let (g, inserted) = gateways.intern(gateway, empty, hash: ByteTable.hash(gateway, empty))
        if inserted {
            gatewayDowns.append([])
            gatewayHeartbeat.append(Self.none)
        }
        return g
    }

    @inline(__always)
    private static func equal(_ arena: UnsafeRawBufferPointer, _ offset: Int, _ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer) -> Bool {
        guard let base = arena.baseAddress else { return first.isEmpty && second.isEmpty }
        return bytesEqual(base + offset, first) && bytesEqual(base + offset + first.count, second)
    }

    /// Compares `bytes` with the same number of bytes at `stored`: eight at a time, the last eight
    /// overlapping, or two overlapping halves of four, never reading outside either (ids are short).
    @inline(__always)
    private static func bytesEqual(_ stored: UnsafeRawPointer, _ bytes: UnsafeRawBufferPointer) -> Bool {
        guard let base = bytes.baseAddress else { return true }
        let n = bytes.count
        if n >= 8 {
            var i = 0
            while n - i > 8 {
                if stored.loadUnaligned(fromByteOffset: i, as: UInt64.self) != base.loadUnaligned(fromByteOffset: i, as: UInt64.self) { return false }
                i += 8
            }
            return stored.loadUnaligned(fromByteOffset: n - 8, as: UInt64.self) == base.loadUnaligned(fromByteOffset: n - 8, as: UInt64.self)
        }
        if n >= 4 {
            return stored.loadUnaligned(as: UInt32.self) == base.loadUnaligned(as: UInt32.self)
                && stored.loadUnaligned(fromByteOffset: n - 4, as: UInt32.self) == base.loadUnaligned(fromByteOffset: n - 4, as: UInt32.self)
        }
        var i = 0
        while i < n {
            if stored.load(fromByteOffset: i, as: UInt8.self) != base.load(fromByteOffset: i, as: UInt8.self) { return false }
            i += 1
        }
        return true
    }

    @inline(__always)
    static func hash(_ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0)) -> UInt64 {
        nonzero(ByteTable.hash(first, second))
    }

    /// `hash` made never 0 (pass 1 takes 0 for "not a connection event") without touching its other
    /// values: forcing the low bit on instead would send every record's home slot to an odd index and
    /// leave half of each table's home slots unused.
    @inline(__always)
    static func nonzero(_ hash: UInt64) -> UInt64 {
        hash == 0 ? 1 : hash
    }

    /// The longest connection key: a user id and a connection identity.
    static let maxKeyBytes = PresenceEvent.Limits.fieldBytes + EventCodec.maxConnIdentityBytes

    // MARK: Queries

    func userKey(_ u: Int) -> UnsafeBufferPointer<UInt8> {
        let record = users[u]
        return UnsafeBufferPointer(start: userArena.pointer + Int(record.keyOffset), count: Int(record.keyLength))
    }

    func userState(_ u: Int) -> PresenceProjection.UserState {
        let record = users[u]
        return .init(user: String(decoding: userKey(u), as: UTF8.self), online: record.open > 0,
                     lastSeen: record.lastSeen == Self.none ? nil : record.lastSeen, connections: Int(record.open))
    }
}
