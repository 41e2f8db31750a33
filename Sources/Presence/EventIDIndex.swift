import SegmentLog

/// De-duplication by the sender's event id (`"id"` in an event line): the ids of the events written
/// within a window of event time, so that a sender that retries a line it is not sure was written
/// (a lost answer, a restart) does not write it twice.
///
/// An id belongs to its gateway: the key is (gateway, id). An event whose id the log already holds, for
/// an event written no earlier than the newest event time minus `window`, is a **repeat** when it is the
/// same event (same user, conn, kind, gateway and time: its fingerprint), and is then acknowledged with
/// the first one's offset and not written again; a different event with that id is a **conflict** and is
/// refused. Older ids are forgotten (the window defaults to the late-arrival horizon: an event older than
/// that could not be written again anyway). The index is rebuilt from the log when a writer opens it.
public struct EventIDIndex: Sendable {
    /// A gateway and one of its event ids.
    public struct Key: Hashable, Sendable {
        let bytes: [UInt8]

        /// The id, for messages.
        public var id: String {
            let length = Int(bytes.first ?? 0)
            return String(decoding: bytes.dropFirst(1 + length), as: UTF8.self)
        }
    }

    /// Where an id was first written.
    public struct Entry: Sendable, Equatable {
        public let offset: Int64
        public let timestamp: Int64
        public let fingerprint: UInt64
    }

    /// The event ids of `window` ms of event time back from the newest.
    public let window: Int64
    private var entries: [Key: Entry] = [:]
    private var newest = Int64.min
    private var sweepAt = 1 << 16

    public init(window: Int64) {
        self.window = window
    }

    /// Ids held.
    public var count: Int { entries.count }

    /// The id of an encoded event, with a fingerprint of the whole event; nil when it has none.
    public static func identify(key: UnsafeRawBufferPointer?, value: UnsafeRawBufferPointer, timestamp: Int64) -> (key: Key, fingerprint: UInt64)? {
        // The flags byte lies after the packed hex digits the tail counts; bit 5 says an id follows.
        guard let tail = value.last, Int(tail & 0x07) < value.count, value[Int(tail & 0x07)] & 0x20 != 0 else { return nil }
        guard let view = try? EventCodec.view(value), let id = view.id else { return nil }
        var bytes: [UInt8] = [UInt8(truncatingIfNeeded: view.gateway.count)]
        bytes.reserveCapacity(1 + view.gateway.count + id.count)
        bytes.append(contentsOf: view.gateway)
        bytes.append(contentsOf: id)
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325  // FNV-1a, over the user id, the value and the time
        func mix(_ byte: UInt8) { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
        for byte in key ?? UnsafeRawBufferPointer(start: nil, count: 0) { mix(byte) }
        mix(0xFF)
        for byte in value { mix(byte) }
        withUnsafeBytes(of: timestamp.littleEndian) { for byte in $0 { mix(byte) } }
        return (Key(bytes: bytes), hash)
    }

    /// The earlier writing of `key`, if the log holds one within the window.
    public func earlier(_ key: Key) -> Entry? {
        guard let entry = entries[key] else { return nil }
        return newest == Int64.min || entry.timestamp >= newest &- window ? entry : nil
    }

    /// Notes that the event with `key` (if it has an id) was written at `offset`, and that the log's
    /// newest event time is now at least `timestamp`.
    public mutating func record(_ key: Key?, fingerprint: UInt64, offset: Int64, timestamp: Int64) {
        newest = max(newest, timestamp)
        guard let key else { return }
        if entries[key] == nil || earlier(key) == nil { entries[key] = Entry(offset: offset, timestamp: timestamp, fingerprint: fingerprint) }
        if entries.count >= sweepAt {
            let cut = newest &- window
            entries = entries.filter { $0.value.timestamp >= cut }
            sweepAt = max(1 << 16, entries.count * 2)
        }
    }

    /// Forgets the ids of the events at `offsets` (an erasure removed them from the log): the index is
    /// then what `rebuild` makes of the rewritten log, and a retry of such an event is written anew.
    public mutating func remove(offsets: Set<Int64>) {
        guard !offsets.isEmpty else { return }
        entries = entries.filter { !offsets.contains($0.value.offset) }
    }

    /// Notes the records of `records`, written from `firstOffset` on.
    public mutating func record(_ records: RecordBuffer, firstOffset: Int64) {
        records.withRecordViews(firstOffset: firstOffset) { record(views: $0) }
    }

    /// Notes the records `views`, as written (each at its offset).
    public mutating func record(views: UnsafeBufferPointer<RecordView>) {
        for view in views {
            guard let value = view.value, let identity = Self.identify(key: view.key, value: value, timestamp: view.timestamp) else {
                newest = max(newest, view.timestamp)
                continue
            }
            record(identity.key, fingerprint: identity.fingerprint, offset: view.offset, timestamp: view.timestamp)
        }
    }

    /// The index of the log in `logDirectory`: the ids of its events within `window` of its newest event
    /// time (`newest`, the log's; nil for an empty log). Reads only the segments that can hold them.
    public static func rebuild(logDirectory: String, window: Int64, newest: Int64?) throws -> EventIDIndex {
        var index = EventIDIndex(window: window)
        guard let newest else { return index }
        index.newest = newest
        let reader = try LogReader(directory: logDirectory)
        _ = try reader.forEachRecord(from: .timestamp(newest &- window)) { record in
            if let value = record.value, let identity = identify(key: record.key, value: value, timestamp: record.timestamp) {
                if index.entries[identity.key] == nil {
                    index.entries[identity.key] = Entry(offset: record.offset, timestamp: record.timestamp, fingerprint: identity.fingerprint)
                }
            }
            return true
        }
        return index
    }
}
