/// Who may see what: the one place the API, the snapshot's fast path, WebSocket opens and pushes ask.
///
/// Today's rules: a user sees a conversation (its messages, its members' presence) when they are a
/// member of it, and another user's presence when the two share a conversation (and their own always).
/// A pure function of logged facts (the memberships the messages log holds), so that an audit can
/// re-derive any answer the server gave; per-user privacy settings will extend exactly this type.
public struct Access: Sendable {
    let chat: ConversationStore

    public init(chat: ConversationStore) {
        self.chat = chat
    }

    /// The members of conversation `id` when `viewer` may read it: `notFound` for no such conversation,
    /// `forbidden` for a viewer outside it.
    public func conversation(_ id: String, for viewer: String) -> Result<[String], ChatError> {
        guard let members = chat.members(of: id) else { return .failure(ChatError(.notFound, "no conversation '\(id)'")) }
        guard members.contains(viewer) else { return .failure(ChatError(.forbidden, "you are not a member of '\(id)'")) }
        return .success(members)
    }

    /// Whether `viewer` may see `subject`'s presence.
    public func maySeePresence(of subject: String, viewer: String) -> Bool {
        chat.shareAConversation(viewer, subject)
    }
}
