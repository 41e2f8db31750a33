/// Who may see what: the one place the API, the snapshot's fast path, WebSocket opens and pushes ask.
///
/// The rules: a user sees a conversation (its messages, its members' presence) when they are a member
/// of it. Any user may ask for any other user's presence, and is shown each field (online, last seen)
/// as the subject's privacy settings and their own allow (`visibility`, the rule table below); a hidden
/// field reads as unknown. One sees all of oneself. A pure function of logged facts (the memberships
/// the messages log holds, the settings the privacy log holds), so that an audit can re-derive any
/// answer the server gave.
///
/// The rule table, for a viewer V ≠ subject S and one field F (last seen, or online), with C = "V and
/// S share a conversation":
///
///     S's rule for F      V in S's except   shown to V by S's rule
///     everyone            no                yes
///     contacts            no                C
///     nobody              no                no
///     any                 yes               no
///
/// and F is shown when S's rule shows it to V **and** V's own rule for F shows it to S (reciprocity,
/// as WhatsApp: who hides their last seen from someone does not see that person's either; the same for
/// online). So visibility between two users is symmetric per field.
public struct Access: Sendable {
    let chat: ConversationStore
    /// The privacy settings in force.
    public let privacy: PrivacyTable

    public init(chat: ConversationStore, privacy: PrivacyTable = PrivacyTable()) {
        self.chat = chat
        self.privacy = privacy
    }

    /// The members of conversation `id` when `viewer` may read it: `notFound` for no such conversation,
    /// `forbidden` for a viewer outside it.
    public func conversation(_ id: String, for viewer: String) -> Result<[String], ChatError> {
        guard let members = chat.members(of: id) else { return .failure(ChatError(.notFound, "no conversation '\(id)'")) }
        guard members.contains(viewer) else { return .failure(ChatError(.forbidden, "you are not a member of '\(id)'")) }
        return .success(members)
    }

    /// Whether `viewer` and `subject` share a conversation (or are the same user): `contacts` in the settings.
    public func areContacts(_ viewer: String, _ subject: String) -> Bool {
        chat.shareAConversation(viewer, subject)
    }

    /// Which of `subject`'s presence fields `viewer` is shown, by the settings in force.
    public func visibility(of subject: String, to viewer: String) -> Visibility {
        guard viewer != subject else { return .all }
        return visibility(of: subject, to: viewer, contacts: areContacts(viewer, subject))
    }

    /// The same when whether they are contacts is already known (a conversation's members are).
    public func visibility(of subject: String, to viewer: String, contacts: Bool) -> Visibility {
        Self.visibility(of: subject, to: viewer, subjectSettings: privacy[subject], viewerSettings: privacy[viewer], contacts: contacts)
    }

    /// The rule table (above), as a pure function: `subjectSettings` and `viewerSettings` are the two
    /// users' settings, `contacts` whether they share a conversation.
    public static func visibility(of subject: String, to viewer: String, subjectSettings: PrivacySettings, viewerSettings: PrivacySettings,
                                  contacts: Bool) -> Visibility {
        guard viewer != subject else { return .all }
        return Visibility(
            lastSeen: subjectSettings.lastSeen.shows(to: viewer, isContact: contacts) && viewerSettings.lastSeen.shows(to: subject, isContact: contacts),
            online: subjectSettings.online.shows(to: viewer, isContact: contacts) && viewerSettings.online.shows(to: subject, isContact: contacts))
    }
}
