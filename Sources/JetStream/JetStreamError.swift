import NATS

/// An error JetStream answered with (`{"error":{"code":404,"err_code":10059,"description":"stream not found"}}`),
/// or a publish that was never acknowledged.
public struct JetStreamError: Error, CustomStringConvertible, Sendable {
    /// The HTTP-like status (`400`, `404`, `503`...), 0 when the error is the client's.
    public let code: Int
    /// JetStream's precise error number (`10059` stream not found, `10071` wrong last sequence...), if any.
    public let errorCode: Int?
    /// The server's description, verbatim.
    public let errorDescription: String
    /// The subject the request went to (`$JS.API.STREAM.CREATE.orders`, or the stream subject of a publish).
    public let subject: String
    /// For ``JetStream/publish(_:to:messageID:expectedLastSequence:retryUntil:attemptTimeout:)``: the attempts made.
    public let attempts: Int?
    /// For a publish never acknowledged: the last error of the attempts.
    public let underlying: (any Error)?
    /// The stream that refused a publish, when the answer names it.
    public let stream: String?

    public init(code: Int, errorCode: Int?, description: String, subject: String, attempts: Int? = nil, underlying: (any Error)? = nil, stream: String? = nil) {
        self.code = code
        self.errorCode = errorCode
        self.errorDescription = description
        self.subject = subject
        self.attempts = attempts
        self.underlying = underlying
        self.stream = stream
    }

    /// JetStream's error numbers this module looks at.
    public enum ErrorCode {
        public static let streamNotFound = 10059
        public static let consumerNotFound = 10014
        public static let wrongLastSequence = 10071
        public static let streamNameInUse = 10058
        /// "duplicate message id is in process": an earlier publish with this `Nats-Msg-Id` is still being stored.
        public static let duplicateMessageIDInProcess = 10158
    }

    public var description: String {
        var text = "jetstream: \(subject): \(errorDescription)"
        if code != 0 { text += " (status \(code)\(errorCode.map { ", err_code \($0)" } ?? ""))" }
        if let attempts { text += " after \(attempts) attempt\(attempts == 1 ? "" : "s")" }
        if let underlying { text += "; last error: \(underlying)" }
        return text
    }
}

/// The `error` object of an API answer.
struct APIErrorBody: Decodable {
    var code: Int
    var errCode: Int?
    var description: String?

    enum CodingKeys: String, CodingKey {
        case code
        case errCode = "err_code"
        case description
    }
}
