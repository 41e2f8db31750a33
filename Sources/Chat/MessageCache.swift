/// The newest messages of the conversations read or written lately, within a memory budget: the page a
/// chat opens on is answered from here without touching the disk.
///
/// For each conversation it holds a run of its messages that ends at its newest (seqs `first ... last`,
/// none missing), at most `perConversation` of them. A new message is added to its conversation's run
/// (starting one if there was none); a page read from disk may install a run. Conversations are kept in
/// least-recently-used order (a read or a new message makes a conversation the most recent); when the
/// messages held cost more than `budget` bytes, whole conversations are dropped, least recent first.
///
/// A message's cost is its encoded JSON plus `overhead` bytes (the array and the fields around it), and
/// each conversation held costs `slotOverhead` more: an estimate of the heap it takes, counted the same
/// way for every message, so that the budget bounds what the cache holds.
///
/// Not thread-safe: `ConversationStore` keeps it under its lock.
struct MessageCache {
    typealias Message = ConversationStore.Message

    static let overhead = 64
    static let slotOverhead = 96

    let budget: Int
    let perConversation: Int
    /// Bytes held, as counted (see above).
    private(set) var used = 0
    private var slots: [UInt32: Slot] = [:]
    /// The most and least recently used conversations (nil when empty).
    private var newest: UInt32?
    private var oldest: UInt32?
    /// Conversations dropped to keep within the budget, since the start.
    private(set) var evictions = 0

    private struct Slot {
        var messages: [Message]
        var cost: Int
        /// Toward the more recently used.
        var newer: UInt32?
        /// Toward the less recently used.
        var older: UInt32?
    }

    init(budget: Int, perConversation: Int = 64) {
        self.budget = max(0, budget)
        self.perConversation = max(1, perConversation)
    }

    /// Conversations held.
    var count: Int { slots.count }

    /// The conversations held, most recently used first (for tests and the audit).
    var order: [UInt32] {
        var out: [UInt32] = []
        var at = newest
        while let current = at {
            out.append(current)
            at = slots[current]?.older
        }
        return out
    }

    static func cost(_ message: Message) -> Int { message.json.count + overhead }

    /// The first seq of the run held for `conversation`, if any, without making it the most recently used.
    func firstSeq(of conversation: UInt32) -> Int? {
        slots[conversation]?.messages.first?.seq
    }

    /// The run held for `conversation`, if any; makes it the most recently used.
    mutating func messages(of conversation: UInt32) -> [Message]? {
        guard let slot = slots[conversation] else { return nil }
        touch(conversation)
        return slot.messages
    }

    /// Adds the conversation's new newest message (its seq follows the run's last, if one is held).
    mutating func append(_ message: Message, to conversation: UInt32) {
        if var slot = slots[conversation] {
            slots[conversation] = nil  // keep the array uniquely referenced while it changes
            if let last = slot.messages.last, last.seq + 1 != message.seq {
                // Not the next one (should not happen): start the run again from this message.
                used -= slot.cost
                slot.cost = Self.slotOverhead
                used += Self.slotOverhead
                slot.messages.removeAll()
            }
            slot.messages.append(message)
            slot.cost += Self.cost(message)
            used += Self.cost(message)
            if slot.messages.count > perConversation {
                let dropped = slot.messages.count - perConversation
                for old in slot.messages.prefix(dropped) {
                    slot.cost -= Self.cost(old)
                    used -= Self.cost(old)
                }
                slot.messages.removeFirst(dropped)
            }
            slots[conversation] = slot
            touch(conversation)
        } else {
            insert(conversation, [message])
        }
        evict(keeping: conversation)
    }

    /// Holds `messages` (a run ending at the conversation's newest, oldest first) for `conversation`,
    /// replacing what was held; keeps the newest `perConversation` of them.
    mutating func install(_ messages: [Message], for conversation: UInt32) {
        remove(conversation)
        guard !messages.isEmpty else { return }
        insert(conversation, Array(messages.suffix(perConversation)))
        evict(keeping: conversation)
    }

    /// Drops what is held for `conversation`.
    mutating func remove(_ conversation: UInt32) {
        guard let slot = slots[conversation] else { return }
        unlink(conversation, slot)
        slots[conversation] = nil
        used -= slot.cost
    }

    private mutating func insert(_ conversation: UInt32, _ messages: [Message]) {
        let cost = Self.slotOverhead + messages.reduce(0) { $0 + Self.cost($1) }
        slots[conversation] = Slot(messages: messages, cost: cost, newer: nil, older: newest)
        if let previous = newest { slots[previous]?.newer = conversation }
        newest = conversation
        if oldest == nil { oldest = conversation }
        used += cost
    }

    /// Drops the least recently used conversations while over budget; `conversation`, just used, goes
    /// last (alone over budget, it is dropped too: the budget holds).
    private mutating func evict(keeping conversation: UInt32) {
        while used > budget, let victim = oldest {
            if victim == conversation && slots.count > 1 {
                // Only reachable if `conversation` is the oldest while others exist, which `touch` prevents.
                break
            }
            remove(victim)
            evictions += 1
        }
    }

    private mutating func touch(_ conversation: UInt32) {
        guard newest != conversation, let slot = slots[conversation] else { return }
        unlink(conversation, slot)
        slots[conversation]?.newer = nil
        slots[conversation]?.older = newest
        if let previous = newest { slots[previous]?.newer = conversation }
        newest = conversation
        if oldest == nil { oldest = conversation }
    }

    private mutating func unlink(_ conversation: UInt32, _ slot: Slot) {
        if let newer = slot.newer { slots[newer]?.older = slot.older } else { newest = slot.older }
        if let older = slot.older { slots[older]?.newer = slot.newer } else { oldest = slot.newer }
    }
}
