/// Erasure: a user taken out of the projection as if the log had never mentioned them (`presence
/// forget` rewrites the retention base this way, whose records are gone and cannot be folded again).
extension ProjectionState {
    /// Removes the user whose id is `user`'s bytes, their connections and their key histories, and
    /// their share of the online and open-connection counts. The user and connection tables (and their
    /// id bytes) are rebuilt without them, so no byte of the id stays in what a checkpoint saves.
    /// Returns false when the user is unknown.
    mutating func removeUser(_ user: UnsafeRawBufferPointer) -> Bool {
        guard let u = findUser(user, hash: Self.hash(user)) else { return false }
        let removed = users[u]
        if removed.open > 0 {
            onlineUsers -= 1
            openConnections -= Int(removed.open)
        }
        // Users after `u` move down one place; connections name their user by that place.
        let oldUsers = users, oldUserArena = userArena
        let keptUsers = FlatStorage<User>(capacity: max(1 << 12, oldUsers.count))
        let keptUserArena = FlatStorage<UInt8>(capacity: max(1 << 16, oldUserArena.count))
        for i in 0..<oldUsers.count where i != u {
            var record = oldUsers[i]
            let key = UnsafeRawBufferPointer(start: oldUserArena.pointer + Int(record.keyOffset), count: Int(record.keyLength))
            record.keyOffset = UInt32(keptUserArena.count)
            record.firstConnection = -1
            keptUserArena.append(bytes: key)
            keptUsers.append(record)
        }
        users = keptUsers
        userArena = keptUserArena
        let records = users.pointer
        userSlots = Slots.rehash(UInt64.self, count: users.count, size: userSlots.count, indexBits: Self.userIndexBits) { records[$0].hash }

        let old = connections, oldArena = connectionArena
        let kept = FlatStorage<Connection>(capacity: max(1 << 12, old.count))
        let keptArena = FlatStorage<UInt8>(capacity: 1 << 16)
        for c in 0..<old.count {
            var connection = old[c]
            let owner = Int(connection.user)
            if owner == u {
                if connection.reason & Self.reusedKey != 0 { freeHistory(Int(connection.disconnect)) }
                continue
            }
            connection.user = Int32(owner > u ? owner - 1 : owner)
            if Int(connection.keyLength) > Self.inlineKeyBytes {
                connection.key.0 = UInt64(keptArena.count)
                keptArena.append(bytes: UnsafeRawBufferPointer(start: oldArena.pointer + Int(old[c].key.0), count: Int(connection.keyLength)))
            }
            connection.nextOfUser = users[Int(connection.user)].firstConnection
            users[Int(connection.user)].firstConnection = Int32(kept.count)
            kept.append(connection)
        }
        connections = kept
        connectionArena = keptArena
        var size = 1 << 12
        while kept.count * 2 > size { size *= 2 }
        connectionSlots = rehashedConnections(size: size)
        return true
    }
}

extension PresenceProjection {
    /// Removes `user` as if the log had never mentioned them (erasure); false when they are unknown.
    public func removeUser(_ user: String) -> Bool {
        let bytes = Array(user.utf8)
        return bytes.withUnsafeBytes { state.removeUser($0) }
    }

    /// Takes `other`'s state as its own (a serving node, after an online erasure, takes the state folded
    /// from the rewritten log); `other` must not be used afterwards.
    public func replaceState(with other: PresenceProjection) {
        state = other.state
    }
}
