import Chat
import Presence
import Projector

/// The node's side of privacy settings: a change is installed under the node's lock, where commits
/// are applied and `opened` frames built, and pushes what it reveals or hides to whoever has a
/// conversation open with the user (or is the user, by reciprocity).
extension PresenceNode {
    /// From the privacy store's commit thread, once a change is durable: installs it and pushes, under
    /// `hubLock` and the node's lock, so every `opened` frame and snapshot is either before it (and the
    /// push follows) or after it. The commits' changes still queued for the fan-out are sent first: they
    /// were made under the settings before it.
    func applyPrivacyChange(of user: String, _ install: () -> (old: PrivacySettings, new: PrivacySettings)) {
        let sent = withHub {
            withLock { () -> Int in
                fanOut(feed.takePending())
                let before = privacy.current
                _ = install()
                guard hub.sessionCount > 0 else { return 0 }
                return hub.pushPrivacyChange(of: user, before: before, after: privacy.current, offset: projection.nextOffset,
                                             projection: projection)
            }
        }
        if sent > 0 { pushesSent.increment(by: sent) }
    }

    /// Reads the projection and the access engine with the settings in force together, under the lock
    /// pushes are made under: what a snapshot shows and the pushes that follow it agree.
    public func readShown<T>(_ body: (PresenceProjection, Access) throws -> T) rethrows -> T {
        try withLock { try body(projection, access) }
    }
}

extension Visibility {
    /// `state` as a viewer with this visibility is shown it: hidden fields read as unknown (a hidden
    /// online as offline with no connections, a hidden last seen as null).
    func apply(_ state: PresenceProjection.UserState?) -> PresenceProjection.UserState? {
        guard let state, self != .all else { return state }
        let shown = shown(online: state.online, lastSeen: state.lastSeen, connections: state.connections)
        return PresenceProjection.UserState(user: state.user, online: shown.online, lastSeen: shown.lastSeen, connections: shown.connections)
    }
}
