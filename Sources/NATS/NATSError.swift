/// An error of the NATS client: what happened, on which server and subject, and the server's own words.
///
/// Callers branch on ``code``; ``description`` is written for a person:
///
/// ```swift
/// do { _ = try await nats.request(payload, to: "svc.echo", timeout: .seconds(1)) }
/// catch let error as NATSError where error.code == .noResponders { /* nobody listens on svc.echo */ }
/// ```
public struct NATSError: Error, CustomStringConvertible, Sendable {
    /// What kind of failure this is.
    public enum Code: String, Sendable {
        /// No server of the list could be reached (or none completed the handshake).
        case connectFailed
        /// The connection was closed by ``NATSConnection/close()`` or gave up reconnecting.
        case connectionClosed
        /// The connection to the server broke while the operation waited for it.
        case connectionLost
        /// No answer within the time given.
        case timeout
        /// The server said nobody is subscribed to the request's subject (an HMSG with status 503).
        case noResponders
        /// The server sent `-ERR` (its text is in ``serverMessage``).
        case serverError
        /// The server rejected our credentials.
        case authorizationViolation
        /// The bytes from the server do not follow the protocol.
        case protocolError
        /// A subject or queue name that the protocol cannot carry (empty, or with white space).
        case invalidSubject
        /// A payload larger than the server's `max_payload`.
        case payloadTooLarge
        /// More bytes were published while reconnecting than the reconnect buffer holds.
        case reconnectBufferFull
        /// The server stopped answering our pings.
        case staleConnection
    }

    public let code: Code
    /// What happened, in a sentence.
    public let message: String
    /// The server involved, as `host:port`, when there is one.
    public let server: String?
    /// The subject involved, when there is one.
    public let subject: String?
    /// The server's `-ERR` text, verbatim.
    public let serverMessage: String?

    public init(_ code: Code, _ message: String, server: String? = nil, subject: String? = nil, serverMessage: String? = nil) {
        self.code = code
        self.message = message
        self.server = server
        self.subject = subject
        self.serverMessage = serverMessage
    }

    public var description: String {
        var text = "nats: \(message)"
        if let subject { text += " (subject \(subject))" }
        if let server { text += " [server \(server)]" }
        if let serverMessage { text += ": server said '\(serverMessage)'" }
        return text
    }
}
