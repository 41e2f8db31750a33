import CPrefetch
import Presence
import SegmentLog

/// Applying events: a batch prepared (decoded, hashed), then applied in passes that prefetch what the
/// last pass reads, and the rules (`ConnectionRules`) applied to each key: a simple key's two times in its
/// record, through the fast paths that nearly every event takes (a new key opening, an open one closing,
/// on a gateway that never went down: rules 1 and 2 alone, which the property tests check against the
/// reference fold), or `ConnectionRules.resolve`; any other key through its history (`KeyHistories`).
extension ProjectionState {
    // MARK: Applying a batch

    mutating func apply(batch: UnsafeBufferPointer<RecordView>) throws(PresenceProjection.ApplyError) {
        try Self.prepare(batch, into: prepared, outlivingBatch: false)
        apply(prepared: prepared)
    }

    /// Decodes and hashes the records of `batch` into `prepared`, copying the bytes the fold needs
    /// (connection key, gateway), so that `prepared` outlives the batch's buffers. Reads no projection
    /// state: a replay prepares on one thread while another applies. Without `outlivingBatch`, the
    /// gateways stay where the batch holds them (the connection key, which no record holds whole, is
    /// always written out): for a caller that applies `prepared` before the batch's buffers go.
    static func prepare(_ batch: UnsafeBufferPointer<RecordView>, into prepared: PreparedBatch,
                        outlivingBatch: Bool = true) throws(PresenceProjection.ApplyError) {
        // Each record needs at most its key, its value twice (gateway, identity), two bytes and the
        // connection key's padding.
        var room = 0
        for record in batch { room += max(record.key?.count ?? 0, 0) + 2 * (record.value?.count ?? 0) + 2 + Self.inlineKeyBytes + 8 }
        // Filled as a local array (taken out of `prepared`, so still unique): appending to a class's
        // array property checks exclusive access at run time, for every record.
        var pending: [Pending] = []
        swap(&pending, &prepared.pending)
        defer { prepared.pending = pending }
        pending.removeAll(keepingCapacity: true)
        prepared.bytes.removeAll(reservingCapacity: room)
        prepared.endOffset = batch.last.map { $0.offset + 1 }
        let bytes = prepared.bytes
        for record in batch {
            guard let value = record.value else {
                throw PresenceProjection.ApplyError(description: "record at offset \(record.offset) has no value")
            }
            let view: EventCodec.View
            do throws(EventCodec.DecodeError) { view = try EventCodec.view(value) } catch {
                throw PresenceProjection.ApplyError(description: "record at offset \(record.offset): \(error.description)")
            }
            let gateway = !outlivingBatch ? view.gateway : bytes.append(upTo: view.gateway.count) { out in
                if let base = view.gateway.baseAddress { out.copyShort(from: base, count: view.gateway.count) }
                return view.gateway.count
            }
            let none = UnsafeRawBufferPointer(start: nil, count: 0)
            var item = Pending(offset: record.offset, timestamp: record.timestamp, user: none, key: none, gateway: gateway, kind: view.kind)
            if !view.kind.isGatewayEvent {
                guard let user = record.key, user.count > 0, let userBase = user.baseAddress else {
                    throw PresenceProjection.ApplyError(description: "record at offset \(record.offset) has no user id")
                }
                guard user.count <= PresenceEvent.Limits.fieldBytes else {
                    throw PresenceProjection.ApplyError(description: "record at offset \(record.offset) has a user id of \(user.count) bytes (at most \(PresenceEvent.Limits.fieldBytes))")
                }
                // Hashed from where its parts lie (the batch's buffer), never read back from `bytes`:
                // a load of bytes just stored in pieces waits for the stores (and in a replay reading
                // ahead, for lines the folding core read last).
                let userPrefix = ByteTable.prefix(user)
                item.userHash = Self.nonzero(ByteTable.finish(prefix: userPrefix))  // = Self.hash(user)
                item.hash = Self.connectionHash(userPrefix: userPrefix, relative: view.connIsRelative,
                                                connHex: view.connHex, storedConn: view.storedConn)
                let length = user.count + 2 + view.connHex.count + view.storedConn.count
                let padded = max(Self.inlineKeyBytes, (length + 7) & ~7)
                let copied = bytes.append(upTo: padded) { out in
                    // The words the key ends in zeroed first (the padding), then the key written over them.
                    var word = length & ~7
                    while word < padded { out.storeBytes(of: 0, toByteOffset: word, as: UInt64.self); word += 8 }
                    out.copyShort(from: userBase, count: user.count)
                    let written = view.writeConnIdentity(to: out + user.count)
                    assert(user.count + written == length, "identity of \(written) bytes, \(length - user.count) expected")
                    return padded
                }
                item.key = UnsafeRawBufferPointer(rebasing: copied[..<length])
                item.user = UnsafeRawBufferPointer(rebasing: copied[..<user.count])
            }
            pending.append(item)
        }
    }

    /// Applies a prepared batch, in order.
    mutating func apply(prepared: PreparedBatch) {
        var refused = 0
        var start = 0
        let count = prepared.pending.count
        while start < count {
            let chunk = start..<min(count, start + Self.chunkEvents)
            if count > 1 { prefetch(prepared, chunk) }
            refused += apply(prepared, chunk)
            start = chunk.upperBound
        }
        eventsApplied += count - refused
        refusedEvents += refused
        if let end = prepared.endOffset { nextOffset = end }
    }

    /// Events of a batch taken through the passes together: enough for the prefetches of one pass to
    /// land before the next needs them, few enough that what they bring in is still in the core's own
    /// cache when the events are applied. (Chosen by measurement: BENCHMARKS.md, "Fewer lines per event".)
    static let chunkEvents = 1 << 7

    /// Passes 1-3 over `chunk` of `prepared`: prefetch each connection event's slots, then probe them
    /// for candidate records and prefetch those, then prefetch the candidates' keys.
    func prefetch(_ prepared: PreparedBatch, _ chunk: Range<Int>) {
        let slots = connectionSlots.buffer, userSlots = self.userSlots.buffer
        let records = connections.pointer, userRecords = users.pointer
        let arena = connectionArena.pointer, userArena = self.userArena.pointer
        let connectionBits = connectionIndexBits
        prepared.pending.withUnsafeMutableBufferPointer { pending in
            guard let connectionBase = slots.baseAddress, let userBase = userSlots.baseAddress else { return }
            let connectionMask = slots.count - 1, userMask = userSlots.count - 1
            for i in chunk where pending[i].hash != 0 {
                presencelog_prefetch(connectionBase + (Int(truncatingIfNeeded: pending[i].hash) & connectionMask))
                presencelog_prefetch(userBase + (Int(truncatingIfNeeded: pending[i].userHash) & userMask))
            }
            for i in chunk where pending[i].hash != 0 {
                let (candidate, empty) = Slots.probe(slots, pending[i].hash, indexBits: connectionBits)
                pending[i].candidate = Int32(candidate)
                pending[i].emptySlot = empty <= Int(Int32.max) ? Int32(empty) : -1
                if candidate >= 0 { presencelog_prefetch(records + candidate) }
                let userCandidate = Slots.probe(userSlots, pending[i].userHash, indexBits: Self.userIndexBits).candidate
                pending[i].userCandidate = Int32(userCandidate)
                if userCandidate >= 0 { presencelog_prefetch(userRecords + userCandidate) }
            }
            let histories = self.histories.pointer, historyEvents = self.historyEvents.storage.pointer
            withUnsafeTemporaryAllocation(of: Int.self, capacity: chunk.count) { reused in
                var found = 0
                for i in chunk where pending[i].hash != 0 {
                    let item = pending[i]
                    if item.candidate >= 0 {
                        let record = records + Int(item.candidate)
                        if item.key.count > Self.inlineKeyBytes { presencelog_prefetch(arena + Int(record.pointee.key.0)) }
                        // A key with many sessions: its history's first line (`KeyHistory`).
                        if record.pointee.reason & Self.reusedKey != 0 {
                            let h = Int(record.pointee.disconnect)
                            presencelog_prefetch(histories + h)
                            reused[found] = h
                            found += 1
                        }
                    } else if item.userCandidate >= 0 {
                        presencelog_prefetch(userArena + Int(userRecords[Int(item.userCandidate)].keyOffset))
                    }
                }
                // Pass 3b, for those: the slot of the history's events where the event goes.
                for k in 0..<found {
                    let history = histories + reused[k]
                    presencelog_prefetch(historyEvents + history.pointee.first + Int(history.pointee.count))
                }
            }
        }
    }

    /// Pass 4: applies `chunk` of `prepared`, in order, except what is older than the horizon allows
    /// (ingest refuses those; a log written with a longer horizon may hold some). Returns how many it refused.
    mutating func apply(_ prepared: PreparedBatch, _ chunk: Range<Int>) -> Int {
        var refused = 0
        let pending = prepared.pending
        var swept = false
        let probedEpoch = connectionSlotsEpoch
        for i in chunk {
            var item = pending[i]
            if item.offset >= nextSweepCheck {
                nextSweepCheck = Self.sweepCheck(after: item.offset)
                swept = sweepIfDue() || swept
            }
            // A sweep renumbers connections: the candidates found before it name other ones now.
            if swept { item.candidate = -1 }
            if let audit, maxTimestamp != Int64.min && item.timestamp < maxTimestamp &- audit.outOfOrderThreshold {
                audit.outOfOrder += 1
                if audit.outOfOrderExamples.count < AuditTally.examples {
                    audit.outOfOrderExamples.append((item.offset, maxTimestamp - item.timestamp))
                }
            }
            if maxTimestamp != Int64.min && item.timestamp < maxTimestamp &- horizon {
                refused += 1
                if let audit, audit.refusedExamples.count < AuditTally.examples { audit.refusedExamples.append(item.offset) }
                continue
            }
            switch item.kind {
            case .connect, .disconnect:
                if connectionSlotsEpoch != probedEpoch { item.emptySlot = -1 }
                applyConnectionEvent(item.kind == .connect, item)
            case .gatewayDown:
                if !applyGatewayDown(gateway: item.gateway, at: item.timestamp) { audit?.repeated(at: item.offset) }
            case .heartbeat:
                let g = gatewayIndex(item.gateway)
                gatewayHeartbeat[g] = max(gatewayHeartbeat[g], item.timestamp)
            }
            if item.timestamp > maxTimestamp { maxTimestamp = item.timestamp }
        }
        return refused
    }

    @inline(__always)
    mutating func applyConnectionEvent(_ isConnect: Bool, _ item: Pending) {
        let hash = item.hash, user = item.user, key = item.key, gateway = item.gateway, timestamp = item.timestamp
        var c: Int
        var inserted = false
        // Pass 2's probe ended at an empty slot without a candidate, and that slot is still empty: no
        // connection of this hash has been placed since (linear probing fills a chain's first empty
        // slot, and slots are emptied only by replacing the table), so the connection is new and goes there.
        let provenNew = item.candidate < 0 && item.emptySlot >= 0 && connectionSlots[Int(item.emptySlot)] == 0
        if item.candidate >= 0 && connectionMatches(Int(item.candidate), key) {
            c = Int(item.candidate)
        } else if !provenNew, let found = findConnection(key, hash: hash) {
            c = found
        } else {
            let u: Int
            if item.userCandidate >= 0 && userMatches(Int(item.userCandidate), hash: item.userHash, user) {
                u = Int(item.userCandidate)
            } else {
                u = findUser(user, hash: item.userHash) ?? insertUser(user, hash: item.userHash)
            }
            c = insertConnection(key, userLength: user.count, hash: hash, user: u, gateway: gateway, slot: provenNew ? Int(item.emptySlot) : nil)
            inserted = true
        }
        if !inserted && isForgotten(connections[c], newest: max(maxTimestamp, timestamp)) {
            // Every session ended, and every event came, before the horizon (counted from this event
            // when it is the newest, so that whether a key is forgotten does not depend on which of a
            // burst of events comes first): forgotten, whether or not a sweep has removed it yet. It
            // starts afresh, as if never seen (its old sessions stay in the user's last_seen).
            forget(c, gateway: gateway)
            inserted = true
        }
        let current = connections[c]
        if current.reason & Self.reusedKey != 0 {
            let event = ConnectionRules.KeyEvent(timestamp: timestamp, gateway: isConnect ? Int32(gatewayIndex(gateway)) : -1, isConnect: isConnect)
            if !applyToHistory(c, event) { audit?.repeated(at: item.offset) }
            return
        }
        if isConnect {
            if inserted {
                connections[c].start = timestamp
                if gatewayDowns[Int(current.gateway)].isEmpty {
                    // The common case, a new connection on a gateway that never went down: it opens.
                    opened(user: Int(current.user))
                } else {
                    resolve(c, wasOpen: false, before: Self.none)
                }
                return
            }
            let g = Int32(gatewayIndex(gateway))
            if current.start == Self.noStart && timestamp <= current.disconnect {
                // Known only from its disconnect: a connect at or before it makes the one session. The
                // connect names the session's gateway.
                connections[c].start = timestamp
                connections[c].gateway = g
                resolve(c, wasOpen: false, before: contribution(current))
            } else if timestamp == current.start && g == current.gateway {
                audit?.repeated(at: item.offset)
            } else {
                promote(c, adding: .init(timestamp: timestamp, gateway: g, isConnect: true))
            }
        } else {
            if inserted {
                audit?.disconnectFirst(at: item.offset, connection: c)
                connections[c].disconnect = timestamp
                resolve(c, wasOpen: false, before: Self.none)
                return
            }
            if current.disconnect == Self.none && timestamp >= current.start {
                if isOpen(current) && gatewayDowns[Int(current.gateway)].isEmpty {
                    // The common case, an open connection closing on a gateway that never went down: it
                    // was open, so it gave the user no last_seen yet.
                    connections[c].disconnect = timestamp
                    connections[c].end = timestamp
                    connections[c].reason = ConnectionRules.EndReason.disconnect.rawValue
                    let u = Int(current.user)
                    closed(user: u)
                    users[u].lastSeen = max(users[u].lastSeen, timestamp)
                    return
                }
                connections[c].disconnect = timestamp
                resolve(c, wasOpen: isOpen(current), before: contribution(current))
            } else if timestamp == current.disconnect {
                audit?.repeated(at: item.offset)
            } else {
                promote(c, adding: .init(timestamp: timestamp, gateway: -1, isConnect: false))
            }
        }
    }

    /// Resets forgotten key `c` to a new key on `gateway`, freeing its history.
    mutating func forget(_ c: Int, gateway: UnsafeRawBufferPointer) {
        audit?.forgot(sessionCounts(c))
        if connections[c].reason & Self.reusedKey != 0 { freeHistory(Int(connections[c].disconnect)) }
        connections[c].start = Self.noStart
        connections[c].disconnect = Self.none
        connections[c].end = Self.none
        connections[c].reason = 0
        connections[c].gateway = Int32(gatewayIndex(gateway))
    }

    /// Applies a gateway_down; false when the same one was applied before.
    @discardableResult
    mutating func applyGatewayDown(gateway: UnsafeRawBufferPointer, at timestamp: Int64) -> Bool {
        let g = gatewayIndex(gateway)
        var low = 0, high = gatewayDowns[g].count
        while low < high {
            let mid = (low + high) >> 1
            if gatewayDowns[g][mid] < timestamp { low = mid + 1 } else { high = mid }
        }
        if low < gatewayDowns[g].count && gatewayDowns[g][low] == timestamp { return false }  // seen before
        gatewayDowns[g].insert(timestamp, at: low)
        // Every simple key of this gateway that started at or before it and is open or ends later, and
        // every history with a session begun on this gateway at or before it.
        let g32 = Int32(g)
        for c in 0..<connections.count {
            let connection = connections[c]
            if connection.reason & Self.reusedKey != 0 {
                let h = Int(connection.disconnect)
                let touched = (histories[h].base.isOpen && histories[h].base.gateway == g32)
                    || events(of: h).contains { $0.isConnect && $0.gateway == g32 && $0.timestamp <= timestamp }
                guard touched else { continue }
                replay(h, from: 0)
                updateFromHistory(c, wasOpen: isOpen(connection), before: contribution(connection))
                continue
            }
            guard connection.gateway == g32, connection.start != Self.noStart, connection.start <= timestamp else { continue }
            guard connection.end == Self.none || connection.end > timestamp else { continue }
            resolve(c, wasOpen: connection.end == Self.none, before: contribution(connection))
        }
        return true
    }


    @inline(__always)
    func isOpen(_ connection: Connection) -> Bool {
        connection.end == Self.none && connection.start != Self.noStart
    }

    /// Rule 5: a key's latest end as it stands, or `none`.
    @inline(__always)
    func contribution(_ connection: Connection) -> Int64 {
        if connection.end != Self.none { return connection.end }
        return connection.reason & Self.reusedKey != 0 ? histories[Int(connection.disconnect)].lastEnd : Self.none
    }

    /// A connection of user `u` opened: rule 4's counts.
    @inline(__always)
    mutating func opened(user u: Int) {
        users[u].open += 1
        if users[u].open == 1 { onlineUsers += 1 }
        openConnections += 1
    }

    /// An open connection of user `u` closed: rule 4's counts.
    @inline(__always)
    mutating func closed(user u: Int) {
        users[u].open -= 1
        if users[u].open == 0 { onlineUsers -= 1 }
        openConnections -= 1
    }

    /// Re-applies the rules to simple key `c` and carries the change over to its user.
    @inline(__always)
    mutating func resolve(_ c: Int, wasOpen: Bool, before: Int64) {
        let connection = connections[c]
        let g = Int(connection.gateway)
        let resolution: ConnectionRules.Resolution
        let start = connection.start == Self.noStart ? nil : connection.start
        let disconnect = connection.disconnect == Self.none ? nil : connection.disconnect
        if gatewayDowns[g].isEmpty {
            resolution = ConnectionRules.resolve(start: start, disconnect: disconnect, gatewayDowns: UnsafeBufferPointer(start: nil, count: 0))
        } else {
            resolution = gatewayDowns[g].withUnsafeBufferPointer {
                ConnectionRules.resolve(start: start, disconnect: disconnect, gatewayDowns: $0)
            }
        }
        connections[c].end = resolution.end ?? Self.none
        connections[c].reason = resolution.reason?.rawValue ?? 0
        carryOver(c, wasOpen: wasOpen, before: before)
    }

    /// Carries a change of key `c` (open before: `wasOpen`; latest end before: `before`) over to its
    /// user's open count and last_seen.
    @inline(__always)
    mutating func carryOver(_ c: Int, wasOpen: Bool, before: Int64) {
        let connection = connections[c]
        let u = Int(connection.user)
        let nowOpen = isOpen(connection)
        if nowOpen != wasOpen {
            if nowOpen { opened(user: u) } else { closed(user: u) }
        }
        let after = contribution(connections[c])
        if after > users[u].lastSeen {
            users[u].lastSeen = after
        } else if before == users[u].lastSeen && after < before {
            // The user's latest contribution shrank (a late event corrected it): take the max again.
            var best = Self.none
            var next = users[u].firstConnection
            while next >= 0 {
                best = max(best, contribution(connections[Int(next)]))
                next = connections[Int(next)].nextOfUser
            }
            users[u].lastSeen = best
        }
    }
}
