import Chat
import Presence
import Projector

/// The node's side of privacy settings: a change is installed under the node's lock, where commits
/// are applied and `opened` frames built, and pushes what it reveals or hides to whoever has a
/// conversation open with the user (or is the user, by reciprocity).
extension PresenceNode {
    /// From the privacy store's commit thread, once a change is durable: installs it under `hubLock` and
    /// the node's lock, so every `opened` frame and snapshot is either before it (and its push follows)
    /// or after it, and makes its frames there. Then, with the node's lock released (commits go on) but
    /// not the hub's: the commits' changes still queued for the fan-out are sent first (each as the
    /// settings at its commit show it), then the change's frames.
    func applyPrivacyChange(of user: String, _ install: () -> (old: PrivacySettings, new: PrivacySettings)) {
        let sent = withHub { () -> Int in
            let (queued, frames) = withLock { () -> ([ShownChanges], [(PushSession, String)]) in
                let queued = feed.takePending()
                let before = privacy.current
                _ = install()
                guard hub.sessionCount > 0 else { return (queued, []) }
                return (queued, hub.privacyChangeFrames(of: user, before: before, after: privacy.current,
                                                        offset: projection.nextOffset, projection: projection))
            }
            fanOut(queued)
            return hub.send(frames)
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
