import Presence
import SegmentLog

// MARK: Checkpoints

extension PresenceProjection {
    /// Writes the checkpoint body (everything but the trailing CRC) to `sink`, table by table.
    func encodeState(to sink: (UnsafeRawBufferPointer) throws -> Void) rethrows {
        try state.encode(to: sink)
    }

    /// A projection read from a checkpoint (the caller then checks the CRC with `reader.finish()`).
    static func decodeState(_ reader: CheckpointReader) throws -> PresenceProjection {
        PresenceProjection(state: try ProjectionState(reading: reader))
    }

    func validateCheckpointReferences() throws {
        try state.validateReferences()
    }
}

extension ProjectionState {
    func encode(to sink: (UnsafeRawBufferPointer) throws -> Void) rethrows {
        func put(_ value: UInt64) throws { try withUnsafeBytes(of: value.littleEndian) { try sink($0) } }
        func put<T>(_ storage: FlatStorage<T>) throws {
            try put(UInt64(storage.count))
            try put(UInt64(storage.capacity))
            try put(UInt64(storage.bytesInUse))
            try sink(storage.rawBytes)
        }
        try Checkpoint.magic.withUnsafeBytes { try sink($0) }
        try put(Checkpoint.layout)
        try put(UInt64(bitPattern: nextOffset))
        try put(UInt64(bitPattern: maxTimestamp))
        try put(UInt64(eventsApplied))
        try put(UInt64(refusedEvents))
        try put(UInt64(bitPattern: horizon))
        try put(UInt64(onlineUsers))
        try put(UInt64(openConnections))
        try put(UInt64(nextSweep))
        try put(userSlots)
        try put(users)
        try put(userArena)
        try put(connectionSlots)
        try put(connections)
        try put(connectionArena)
        try put(UInt64(gateways.count))
        for g in 0..<gateways.count {
            let name = Array(gateways.bytes(g))
            try withUnsafeBytes(of: UInt32(name.count).littleEndian) { try sink($0) }
            try name.withUnsafeBytes { try sink($0) }
            try put(UInt64(bitPattern: gatewayHeartbeat[g]))
            try put(UInt64(gatewayDowns[g].count))
            for down in gatewayDowns[g] { try put(UInt64(bitPattern: down)) }
        }
        try put(histories)
        try put(UInt64(freeHistories.count))
        for free in freeHistories { try put(UInt64(free)) }
        try historyEvents.encode(to: sink, put: put, putStorage: put)
        try historySnapshots.encode(to: sink, put: put, putStorage: put)
    }

    init(reading reader: CheckpointReader) throws {
        self.init()
        guard try reader.bytes(Checkpoint.magic.count) == Checkpoint.magic else { throw LogError(.corrupt, "not a checkpoint") }
        guard try reader.u64() == Checkpoint.layout else { throw LogError(.corrupt, "checkpoint from a build with another record layout") }
        nextOffset = try reader.i64()
        guard (0...RecordBatchHeader.maxOffset).contains(nextOffset) else { throw LogError(.corrupt, "checkpoint's next offset \(nextOffset) is out of range") }
        maxTimestamp = try reader.i64()
        eventsApplied = try reader.int()
        refusedEvents = try reader.int()
        horizon = try reader.i64()
        onlineUsers = try reader.int()
        openConnections = try reader.int()
        nextSweep = try reader.int()
        guard nextSweep >= Self.minimumSweep, nextSweep <= Int(UInt32.max) * 2 else { throw LogError(.corrupt, "checkpoint's next sweep is out of range") }
        // The next check where a fold that never stopped would make it (offsets are checked in order).
        nextSweepCheck = nextOffset <= 0 ? 0 : Self.sweepCheck(after: nextOffset - 1)
        func storage<T>(_ type: T.Type) throws -> FlatStorage<T> {
            let count = try reader.int(), capacity = try reader.int(), bytes = try reader.int()
            // No table of 1 TiB was ever written from memory: a larger capacity would fail its mapping.
            let (tableBytes, overflow) = capacity.multipliedReportingOverflow(by: MemoryLayout<T>.stride)
            guard count >= 0, capacity >= count, !overflow, tableBytes <= 1 << 40, bytes == count * MemoryLayout<T>.stride,
                  bytes <= reader.remaining else {
                throw LogError(.corrupt, "checkpoint table sizes do not agree")
            }
            let table = FlatStorage<T>(capacity: capacity, count: count)
            try reader.read(into: table.pointer, count: bytes)
            return table
        }
        userSlots = try storage(UInt64.self)
        users = try storage(User.self)
        userArena = try storage(UInt8.self)
        connectionSlots = try storage(UInt32.self)
        connections = try storage(Connection.self)
        connectionArena = try storage(UInt8.self)
        for size in [userSlots.count, connectionSlots.count] where size < 16 || size & (size - 1) != 0 || size > 1 << 32 {
            throw LogError(.corrupt, "checkpoint slot table of \(size) is not a power of two")
        }
        guard users.count * 4 <= userSlots.count * 3, connections.count * 2 <= connectionSlots.count else {
            throw LogError(.corrupt, "checkpoint tables are fuller than their slots allow")
        }
        let gatewayCount = try reader.int()
        guard gatewayCount >= 0, gatewayCount <= reader.remaining / 20 else { throw LogError(.corrupt, "checkpoint is cut short") }
        for _ in 0..<gatewayCount {
            let name = try reader.bytes(Int(try reader.u32()))
            name.withUnsafeBytes { name in
                let empty = UnsafeRawBufferPointer(start: name.baseAddress, count: 0)
                _ = gateways.intern(name, empty, hash: ByteTable.hash(name, empty))
            }
            gatewayHeartbeat.append(try reader.i64())
            let downs = try reader.int()
            guard downs >= 0, downs <= reader.remaining / 8 else { throw LogError(.corrupt, "checkpoint is cut short") }
            var list = [Int64](repeating: 0, count: downs)
            try list.withUnsafeMutableBytes { raw in
                if let base = raw.baseAddress { try reader.read(into: base, count: downs * 8) }
            }
            gatewayDowns.append(list.map { Int64(littleEndian: $0) })
        }
        histories = try storage(KeyHistory.self)
        let freeCount = try reader.int()
        guard freeCount >= 0, freeCount <= histories.count, freeCount <= reader.remaining / 8 else { throw LogError(.corrupt, "checkpoint is cut short") }
        for _ in 0..<freeCount { freeHistories.append(Int32(truncatingIfNeeded: try reader.u64())) }
        historyEvents = try BlockArena(smallest: 4, storage: try storage(ConnectionRules.KeyEvent.self), reader: reader)
        historySnapshots = try BlockArena(smallest: 1, storage: try storage(ConnectionRules.Sessions.self), reader: reader)
    }

    /// Checks that every record's references point inside the tables (after the CRC matched: this guards
    /// against a checkpoint written by a faulty build, not against damage, which the CRC catches).
    func validateReferences() throws {
        for u in 0..<users.count {
            let user = users[u]
            guard Int(user.keyOffset) + Int(user.keyLength) <= userArena.count, Int(user.firstConnection) < connections.count else {
                throw LogError(.corrupt, "checkpoint user \(u) points outside the tables")
            }
        }
        for c in 0..<connections.count {
            let connection = connections[c]
            let length = Int(connection.keyLength)
            guard length <= Self.inlineKeyBytes || connection.key.0 <= UInt64(max(0, connectionArena.count - length)),
                  length <= Self.maxKeyBytes, Int(connection.userLengthLessOne) + 3 <= length, Int(connection.user) < users.count,
                  connection.user >= 0, Int(connection.gateway) < gateways.count, connection.gateway >= 0,
                  Int(connection.nextOfUser) < connections.count,
                  connection.reason & Self.reusedKey == 0 || (connection.disconnect >= 0 && connection.disconnect < Int64(histories.count))
            else { throw LogError(.corrupt, "checkpoint connection \(c) points outside the tables") }
        }
        // Every full slot names a record, and no record twice; some slot stays empty (a probe ends there).
        var usersSlotted = 0
        for slot in 0..<userSlots.count where userSlots[slot] != 0 {
            let index = Slots.index(userSlots[slot], indexBits: Self.userIndexBits)
            guard index >= 0, index < users.count else { throw LogError(.corrupt, "checkpoint user slot \(slot) points outside the table") }
            usersSlotted += 1
        }
        var connectionsSlotted = 0
        for slot in 0..<connectionSlots.count where connectionSlots[slot] != 0 {
            let index = Slots.index(connectionSlots[slot], indexBits: connectionIndexBits)
            guard index >= 0, index < connections.count else { throw LogError(.corrupt, "checkpoint connection slot \(slot) points outside the table") }
            connectionsSlotted += 1
        }
        guard usersSlotted <= users.count, usersSlotted < userSlots.count,
              connectionsSlotted <= connections.count, connectionsSlotted < connectionSlots.count
        else { throw LogError(.corrupt, "checkpoint slot tables hold more entries than records") }
        do throws(PresenceProjection.ApplyError) { try validateHistories() } catch {
            throw LogError(.corrupt, "checkpoint \(error.description)")
        }
    }
}
