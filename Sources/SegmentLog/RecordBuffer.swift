/// Records waiting to be appended: keys and values packed in one byte array, with a small fixed entry each.
///
/// Built by a producer (the ingest path encodes events straight into it, allocating nothing per
/// record) and handed to the log writer whole.
public struct RecordBuffer: Sendable {
    struct Entry: Sendable {
        var timestamp: Int64
        /// Where the key starts in `storage`; the value follows the key.
        var start: UInt32
        /// Key length, or -1 for a null key.
        var keyLength: Int32
        var valueLength: UInt32
    }

    private(set) var storage: [UInt8] = []
    private(set) var entries: [Entry] = []

    public init() {}

    /// Reserves room for `records` records of about `bytes` bytes of keys and values in all.
    public mutating func reserve(records: Int, bytes: Int) {
        entries.reserveCapacity(records)
        storage.reserveCapacity(bytes)
    }

    /// The number of records.
    public var count: Int { entries.count }
    public var isEmpty: Bool { entries.isEmpty }
    /// Bytes of keys and values held.
    public var payloadBytes: Int { storage.count }

    /// Appends a record, copying its key (nil for a null key) and value.
    public mutating func append(timestamp: Int64, key: UnsafeRawBufferPointer?, value: UnsafeRawBufferPointer) {
        let start = UInt32(storage.count)
        if let key { storage.append(contentsOf: key) }
        storage.append(contentsOf: value)
        entries.append(Entry(timestamp: timestamp, start: start, keyLength: key.map { Int32($0.count) } ?? -1,
                             valueLength: UInt32(value.count)))
    }

    /// Appends a record whose key (`keyLength` bytes, or -1 for a null key) and value lie side by side in
    /// `keyAndValue`: one copy instead of two.
    public mutating func append(timestamp: Int64, keyLength: Int, keyAndValue: UnsafeRawBufferPointer) {
        let start = UInt32(storage.count)
        storage.append(contentsOf: keyAndValue)
        entries.append(Entry(timestamp: timestamp, start: start, keyLength: Int32(keyLength),
                             valueLength: UInt32(keyAndValue.count - max(keyLength, 0))))
    }

    /// Appends a record from byte arrays.
    public mutating func append(timestamp: Int64, key: [UInt8]?, value: [UInt8]) {
        value.withUnsafeBytes { value in
            if let key {
                key.withUnsafeBytes { append(timestamp: timestamp, key: $0, value: value) }
            } else {
                append(timestamp: timestamp, key: nil, value: value)
            }
        }
    }

    /// Appends a record whose key and value the caller writes straight into the storage:
    /// `writeKey` appends the key bytes (or nothing, returning false, for a null key), `writeValue` the value.
    public mutating func append(
        timestamp: Int64,
        writeKey: (inout [UInt8]) -> Bool,
        writeValue: (inout [UInt8]) -> Void
    ) {
        let start = storage.count
        let hasKey = writeKey(&storage)
        let keyEnd = storage.count
        writeValue(&storage)
        entries.append(Entry(timestamp: timestamp, start: UInt32(start),
                             keyLength: hasKey ? Int32(keyEnd - start) : -1,
                             valueLength: UInt32(storage.count - keyEnd)))
    }

    /// Calls `body` with the records as `RecordView`s, numbered from `firstOffset` (valid only during the call).
    public func withRecordViews<R>(firstOffset: Int64, _ body: (UnsafeBufferPointer<RecordView>) throws -> R) rethrows -> R {
        try storage.withUnsafeBytes { raw in
            let base = raw.baseAddress
            var views: [RecordView] = []
            views.reserveCapacity(entries.count)
            for (index, entry) in entries.enumerated() {
                let start = Int(entry.start)
                let keyLength = Int(entry.keyLength)
                let key = keyLength >= 0 ? UnsafeRawBufferPointer(start: base.map { $0 + start }, count: keyLength) : nil
                let valueStart = start + max(keyLength, 0)
                let value = UnsafeRawBufferPointer(start: base.map { $0 + valueStart }, count: Int(entry.valueLength))
                views.append(RecordView(offset: firstOffset + Int64(index), timestamp: entry.timestamp, key: key, value: value))
            }
            return try views.withUnsafeBufferPointer { try body($0) }
        }
    }

    /// Removes every record, keeping the capacity.
    public mutating func removeAll() {
        storage.removeAll(keepingCapacity: true)
        entries.removeAll(keepingCapacity: true)
    }

    /// Appends every record of `other`.
    public mutating func append(contentsOf other: RecordBuffer) {
        let shift = UInt32(storage.count)
        storage.append(contentsOf: other.storage)
        entries.append(contentsOf: other.entries.lazy.map {
            Entry(timestamp: $0.timestamp, start: $0.start + shift, keyLength: $0.keyLength, valueLength: $0.valueLength)
        })
    }

    /// Calls `body` with record `index`'s key (nil for a null key) and value, without copying them.
    public func withRecord<R>(at index: Int, _ body: (_ key: UnsafeRawBufferPointer?, _ value: UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        let entry = entries[index]
        return try storage.withUnsafeBytes { raw in
            let start = Int(entry.start), keyLength = Int(entry.keyLength)
            let key = keyLength >= 0 ? UnsafeRawBufferPointer(rebasing: raw[start..<start + keyLength]) : nil
            let valueStart = start + max(keyLength, 0)
            return try body(key, UnsafeRawBufferPointer(rebasing: raw[valueStart..<valueStart + Int(entry.valueLength)]))
        }
    }

    /// Removes the last record.
    public mutating func removeLast() {
        let entry = entries.removeLast()
        storage.removeSubrange(Int(entry.start)...)
    }

    /// The records at `indices` (ascending), in a new buffer.
    public func subset(_ indices: [Int]) -> RecordBuffer {
        var result = RecordBuffer()
        for index in indices {
            withRecord(at: index) { key, value in result.append(timestamp: entries[index].timestamp, key: key, value: value) }
        }
        return result
    }

    /// The timestamp of record `index`.
    public func timestamp(at index: Int) -> Int64 { entries[index].timestamp }

    /// The key of record `index` (nil for a null key).
    public func key(at index: Int) -> [UInt8]? {
        let entry = entries[index]
        guard entry.keyLength >= 0 else { return nil }
        return Array(storage[Int(entry.start)..<Int(entry.start) + Int(entry.keyLength)])
    }

    /// The value of record `index`.
    public func value(at index: Int) -> [UInt8] {
        let entry = entries[index]
        let start = Int(entry.start) + max(Int(entry.keyLength), 0)
        return Array(storage[start..<start + Int(entry.valueLength)])
    }
}
