import Presence

/// Why the chat domain refused something: what the API answers 400, 403 or 404 with.
public struct ChatError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: Sendable { case invalid, forbidden, notFound }
    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}

/// What a conversation and a message may be: the domain's limits, in one place.
public enum ChatRules {
    public static let minMembers = 2
    public static let maxMembers = 256
    public static let maxContentBytes = 16 * 1024
    /// User ids and client ids: 1 to this many bytes (the presence log's limit).
    public static let maxIDBytes = PresenceEvent.Limits.fieldBytes

    /// The members of a new conversation: `requested` without repeats, each id 1 to 256 bytes, 2 to 256 of
    /// them, `creator` among them.
    public static func members(_ requested: [String], creator: String) throws(ChatError) -> [String] {
        guard !requested.isEmpty else { throw ChatError(.invalid, "\"members\" must be a non-empty array of user ids") }
        var unique: [String] = []
        for member in requested where !unique.contains(member) { unique.append(member) }
        guard unique.allSatisfy({ !$0.isEmpty && $0.utf8.count <= PresenceEvent.Limits.userBytes }) else {
            throw ChatError(.invalid, "member ids must be 1 to \(PresenceEvent.Limits.userBytes) bytes")
        }
        guard unique.count >= minMembers, unique.count <= maxMembers else {
            throw ChatError(.invalid, "a conversation has \(minMembers) to \(maxMembers) members")
        }
        guard unique.contains(creator) else { throw ChatError(.forbidden, "you must be a member of the conversations you create") }
        return unique
    }

    /// A message's content (1 byte to 16 KiB) and optional client id (1 to 256 bytes).
    public static func message(content: String, clientID: String?) throws(ChatError) {
        guard !content.isEmpty, content.utf8.count <= maxContentBytes else {
            throw ChatError(.invalid, "\"content\" must be a string of 1 to \(maxContentBytes) bytes")
        }
        if let clientID, clientID.isEmpty || clientID.utf8.count > maxIDBytes {
            throw ChatError(.invalid, "\"client_id\" must be a string of 1 to \(maxIDBytes) bytes")
        }
    }
}
