/// A consumer's configuration, as `$JS.API.CONSUMER.CREATE` takes it. This module makes durable pull
/// consumers: no `deliver_subject`, a `durable_name`.
public struct ConsumerConfig: Codable, Sendable, Equatable {
    public enum AckPolicy: String, Codable, Sendable {
        /// Each message is acknowledged by itself.
        case explicit
        /// Acknowledging a message acknowledges every message delivered before it.
        case all
        case none
    }

    public enum DeliverPolicy: String, Codable, Sendable {
        case all, last, new
        case byStartSequence = "by_start_sequence"
    }

    public var durableName: String
    public var deliverPolicy: DeliverPolicy = .all
    /// With `.byStartSequence`: the first stream sequence delivered.
    public var optStartSequence: UInt64?
    public var ackPolicy: AckPolicy = .explicit
    /// How long a delivered message may stay unacknowledged before it is delivered again.
    public var ackWait: Duration?
    public var maxDeliver: Int?
    public var filterSubject: String?
    /// Messages delivered and not yet acknowledged, at most (the server's flow control of a pull consumer).
    public var maxAckPending: Int?
    /// Pull requests waiting at once, at most.
    public var maxWaiting: Int?
    /// Replicas of the consumer's state (0: as many as the stream).
    public var replicas: Int?
    /// Keeps the consumer's state in memory rather than on disk (for a consumer whose state its client
    /// can make again).
    public var memoryStorage: Bool?

    public init(durableName: String, ackPolicy: AckPolicy = .explicit, deliverPolicy: DeliverPolicy = .all) {
        self.durableName = durableName
        self.ackPolicy = ackPolicy
        self.deliverPolicy = deliverPolicy
    }

    enum CodingKeys: String, CodingKey {
        case durableName = "durable_name"
        case deliverPolicy = "deliver_policy"
        case optStartSequence = "opt_start_seq"
        case ackPolicy = "ack_policy"
        case ackWait = "ack_wait"
        case maxDeliver = "max_deliver"
        case filterSubject = "filter_subject"
        case maxAckPending = "max_ack_pending"
        case maxWaiting = "max_waiting"
        case replicas = "num_replicas"
        case memoryStorage = "mem_storage"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        durableName = try container.decodeIfPresent(String.self, forKey: .durableName) ?? ""
        deliverPolicy = try container.decodeIfPresent(DeliverPolicy.self, forKey: .deliverPolicy) ?? .all
        optStartSequence = try container.decodeIfPresent(UInt64.self, forKey: .optStartSequence)
        ackPolicy = try container.decodeIfPresent(AckPolicy.self, forKey: .ackPolicy) ?? .explicit
        ackWait = try container.decodeNanoseconds(.ackWait)
        maxDeliver = try container.decodeIfPresent(Int.self, forKey: .maxDeliver)
        filterSubject = try container.decodeIfPresent(String.self, forKey: .filterSubject)
        maxAckPending = try container.decodeIfPresent(Int.self, forKey: .maxAckPending)
        maxWaiting = try container.decodeIfPresent(Int.self, forKey: .maxWaiting)
        replicas = try container.decodeIfPresent(Int.self, forKey: .replicas)
        memoryStorage = try container.decodeIfPresent(Bool.self, forKey: .memoryStorage)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(durableName, forKey: .durableName)
        try container.encode(deliverPolicy, forKey: .deliverPolicy)
        try container.encodeIfPresent(optStartSequence, forKey: .optStartSequence)
        try container.encode(ackPolicy, forKey: .ackPolicy)
        if let ackWait { try container.encodeNanoseconds(ackWait, forKey: .ackWait) }
        try container.encodeIfPresent(maxDeliver, forKey: .maxDeliver)
        try container.encodeIfPresent(filterSubject, forKey: .filterSubject)
        try container.encodeIfPresent(maxAckPending, forKey: .maxAckPending)
        try container.encodeIfPresent(maxWaiting, forKey: .maxWaiting)
        try container.encodeIfPresent(replicas, forKey: .replicas)
        try container.encodeIfPresent(memoryStorage, forKey: .memoryStorage)
    }
}

/// What `$JS.API.CONSUMER.INFO` (and CREATE) answer.
public struct ConsumerInfo: Decodable, Sendable {
    public struct SequenceInfo: Decodable, Sendable, Equatable {
        public var consumerSequence: UInt64
        public var streamSequence: UInt64
        enum CodingKeys: String, CodingKey {
            case consumerSequence = "consumer_seq"
            case streamSequence = "stream_seq"
        }
    }

    public var streamName: String
    public var name: String
    public var config: ConsumerConfig
    /// The last message delivered.
    public var delivered: SequenceInfo
    /// Everything up to this is acknowledged.
    public var ackFloor: SequenceInfo
    public var numAckPending: Int
    public var numRedelivered: Int
    public var numWaiting: Int
    /// Messages of the stream not yet delivered.
    public var numPending: UInt64
    public var cluster: ClusterInfo?

    enum CodingKeys: String, CodingKey {
        case streamName = "stream_name"
        case name, config, delivered
        case ackFloor = "ack_floor"
        case numAckPending = "num_ack_pending"
        case numRedelivered = "num_redelivered"
        case numWaiting = "num_waiting"
        case numPending = "num_pending"
        case cluster
    }
}

/// The body of `$JS.API.CONSUMER.CREATE.<stream>.<consumer>`.
struct CreateConsumerRequest: Encodable {
    var streamName: String
    var config: ConsumerConfig
    enum CodingKeys: String, CodingKey {
        case streamName = "stream_name"
        case config
    }
}
