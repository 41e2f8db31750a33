import Foundation

/// Keys held by requests on their way to the log, so that two requests carrying the same key (an event
/// id, a conversation's pair of members, a message's client id) are decided one after the other: the
/// second claims the key only once the first has been written and applied, and then finds it done.
///
/// A request claims all its keys at once or none (it waits while any is held), and a holder always goes
/// on to finish and release, so waiting never deadlocks. Contention is rare (a retry racing its
/// original), so a release wakes every waiter to look again.
public final class InFlightClaims<Key: Hashable & Sendable>: @unchecked Sendable {
    // @unchecked: `held` and `waiting` are touched only under `lock`.
    private let lock = NSLock()
    private var held: Set<Key> = []
    private var waiting: [CheckedContinuation<Void, Never>] = []

    /// Waits until none of `keys` is held, then holds them all.
    public init() {}

    public func claim(_ keys: Set<Key>) async {
        while true {
            if lock.withLock({ () -> Bool in
                guard held.isDisjoint(with: keys) else { return false }
                held.formUnion(keys)
                return true
            }) { return }
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let free = lock.withLock { () -> Bool in
                    if held.isDisjoint(with: keys) { return true }
                    waiting.append(continuation)
                    return false
                }
                if free { continuation.resume() }
            }
        }
    }

    /// Lets `keys` go and wakes the requests waiting for any key.
    public func release(_ keys: Set<Key>) {
        let woken = lock.withLock { () -> [CheckedContinuation<Void, Never>] in
            held.subtract(keys)
            defer { waiting.removeAll() }
            return waiting
        }
        for continuation in woken { continuation.resume() }
    }

    /// Holds `keys` for the duration of `body`.
    public func holding<T>(_ keys: Set<Key>, _ body: () async throws -> T) async rethrows -> T {
        guard !keys.isEmpty else { return try await body() }
        await claim(keys)
        defer { release(keys) }
        return try await body()
    }
}
