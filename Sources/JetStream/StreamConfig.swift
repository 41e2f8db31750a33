import Foundation
import NATS
import NIOCore

/// A stream's configuration, as `$JS.API.STREAM.CREATE` and `UPDATE` take it. Durations travel as
/// nanoseconds; fields left nil take the server's defaults.
public struct StreamConfig: Codable, Sendable, Equatable {
    public enum Storage: String, Codable, Sendable { case file, memory }
    public enum Retention: String, Codable, Sendable { case limits, interest, workqueue }
    public enum Discard: String, Codable, Sendable { case old, new }

    public var name: String
    public var subjects: [String]
    public var storage: Storage = .file
    public var retention: Retention = .limits
    public var discard: Discard = .old
    /// Copies of the stream in the cluster (1, 3 or 5); a write is acknowledged once a majority holds it.
    public var replicas: Int = 1
    public var maxMessages: Int64 = -1
    public var maxBytes: Int64 = -1
    public var maxMessageSize: Int32 = -1
    public var maxAge: Duration?
    /// How long a `Nats-Msg-Id` is remembered to drop a second publish with the same id (server default 2 min).
    /// A publish retried for longer than this can be stored twice.
    public var duplicateWindow: Duration?

    public init(name: String, subjects: [String], storage: Storage = .file, replicas: Int = 1, duplicateWindow: Duration? = nil) {
        self.name = name
        self.subjects = subjects
        self.storage = storage
        self.replicas = replicas
        self.duplicateWindow = duplicateWindow
    }

    enum CodingKeys: String, CodingKey {
        case name, subjects, storage, retention, discard
        case replicas = "num_replicas"
        case maxMessages = "max_msgs"
        case maxBytes = "max_bytes"
        case maxMessageSize = "max_msg_size"
        case maxAge = "max_age"
        case duplicateWindow = "duplicate_window"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        name = try container.decode(String.self, forKey: .name)
        subjects = try container.decodeIfPresent([String].self, forKey: .subjects) ?? []
        storage = try container.decodeIfPresent(Storage.self, forKey: .storage) ?? .file
        retention = try container.decodeIfPresent(Retention.self, forKey: .retention) ?? .limits
        discard = try container.decodeIfPresent(Discard.self, forKey: .discard) ?? .old
        replicas = try container.decodeIfPresent(Int.self, forKey: .replicas) ?? 1
        maxMessages = try container.decodeIfPresent(Int64.self, forKey: .maxMessages) ?? -1
        maxBytes = try container.decodeIfPresent(Int64.self, forKey: .maxBytes) ?? -1
        maxMessageSize = try container.decodeIfPresent(Int32.self, forKey: .maxMessageSize) ?? -1
        maxAge = try container.decodeNanoseconds(.maxAge)
        duplicateWindow = try container.decodeNanoseconds(.duplicateWindow)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(name, forKey: .name)
        try container.encode(subjects, forKey: .subjects)
        try container.encode(storage, forKey: .storage)
        try container.encode(retention, forKey: .retention)
        try container.encode(discard, forKey: .discard)
        try container.encode(replicas, forKey: .replicas)
        try container.encode(maxMessages, forKey: .maxMessages)
        try container.encode(maxBytes, forKey: .maxBytes)
        try container.encode(maxMessageSize, forKey: .maxMessageSize)
        try container.encodeNanoseconds(maxAge ?? .zero, forKey: .maxAge)
        if let duplicateWindow { try container.encodeNanoseconds(duplicateWindow, forKey: .duplicateWindow) }
    }
}

/// What `$JS.API.STREAM.INFO` (and CREATE, UPDATE) answer.
public struct StreamInfo: Decodable, Sendable {
    public var config: StreamConfig
    public var state: StreamState
    public var cluster: ClusterInfo?
}

/// A stream's contents.
public struct StreamState: Decodable, Sendable, Equatable {
    public var messages: UInt64
    public var bytes: UInt64
    public var firstSequence: UInt64
    public var lastSequence: UInt64
    public var consumerCount: Int

    enum CodingKeys: String, CodingKey {
        case messages, bytes
        case firstSequence = "first_seq"
        case lastSequence = "last_seq"
        case consumerCount = "consumer_count"
    }
}

/// Where a replicated stream or consumer lives: its Raft group's leader and the other replicas.
public struct ClusterInfo: Decodable, Sendable, Equatable {
    public struct Replica: Decodable, Sendable, Equatable {
        public var name: String
        public var current: Bool?
        public var offline: Bool?
        public var lag: UInt64?
    }
    public var name: String?
    /// The `server_name` of the leader; absent during an election.
    public var leader: String?
    public var replicas: [Replica]?
}

extension KeyedDecodingContainer {
    func decodeNanoseconds(_ key: Key) throws -> Duration? {
        guard let nanoseconds = try decodeIfPresent(Int64.self, forKey: key), nanoseconds != 0 else { return nil }
        return .nanoseconds(nanoseconds)
    }
}

extension KeyedEncodingContainer {
    mutating func encodeNanoseconds(_ duration: Duration, forKey key: Key) throws {
        let (seconds, attoseconds) = duration.components
        try encode(seconds * 1_000_000_000 + attoseconds / 1_000_000_000, forKey: key)
    }
}

/// A message read from a stream by sequence (`$JS.API.STREAM.MSG.GET`).
public struct StoredMessage: Decodable, Sendable {
    public var subject: String
    public var sequence: UInt64
    /// The raw header block (`NATS/1.0␍␊...`), if the message has headers.
    public var headerBlock: [UInt8]?
    public var data: [UInt8]
    /// When it was stored (RFC 3339, as the server wrote it).
    public var time: String

    /// The headers, parsed.
    public var headers: NATSHeaders? { headerBlock.flatMap { NATSHeaders.parse(ByteBuffer(bytes: $0)) } }

    enum CodingKeys: String, CodingKey {
        case subject
        case sequence = "seq"
        case headerBlock = "hdrs"
        case data, time
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        subject = try container.decode(String.self, forKey: .subject)
        sequence = try container.decode(UInt64.self, forKey: .sequence)
        time = try container.decodeIfPresent(String.self, forKey: .time) ?? ""
        // The server sends both as base64.
        headerBlock = try container.decodeIfPresent(String.self, forKey: .headerBlock).flatMap { Data(base64Encoded: $0) }.map { Array($0) }
        data = try container.decodeIfPresent(String.self, forKey: .data).flatMap { Data(base64Encoded: $0) }.map { Array($0) } ?? []
    }
}

/// The answer of `$JS.API.STREAM.MSG.GET`.
struct StoredMessageAnswer: Decodable {
    var message: StoredMessage
}
