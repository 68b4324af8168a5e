import Synchronization
import XMPPCore

/// Stanzas a hostname's handlers sent while it had no stream (or while its unbind was in
/// flight), waiting in order for the hostname to be bound again; and stanzas whose write
/// failed when a link broke, put back in their send order.
///
/// Bounded by count and age (``OutboundQueuePolicy``): past either limit the sender's
/// `send` fails with ``ComponentError/Kind/queueFull`` or ``ComponentError/Kind/expired``
/// and a metric counts it, so nothing vanishes silently.
final class OutboundQueue: Sendable {
    struct Entry: Sendable {
        var element: Element
        var enqueued: ContinuousClock.Instant
        /// Told when the stanza is handed to a stream, or fails; `nil` when nobody waits
        /// (a stanza whose write failed after its sender had returned).
        var completion: (@Sendable (Result<Void, any Error>) -> Void)?
        /// The stanza's place in its hostname's send order (see ``OutboundQueue/takeTicket()``).
        var ticket: UInt64
    }

    private struct State: Sendable {
        var entries: [Entry] = []
        var head = 0
        var flushing = false
        var nextTicket: UInt64 = 0

        var count: Int { self.entries.count - self.head }

        mutating func compact() {
            if self.head > 64 && self.head * 2 > self.entries.count {
                self.entries.removeFirst(self.head)
                self.head = 0
            }
        }
    }

    private let state = Mutex(State())
    let policy: OutboundQueuePolicy

    init(policy: OutboundQueuePolicy) {
        self.policy = policy
    }

    var count: Int { self.state.withLock { $0.count } }

    /// Whether new stanzas must queue behind older ones (queued, or being flushed).
    var mustQueue: Bool { self.state.withLock { $0.count > 0 || $0.flushing } }

    /// A stanza's place in the send order, taken when `send` is called: a stanza whose
    /// direct write failed (the link broke under it) joins the queue later than stanzas
    /// sent after it, and must still be flushed before them.
    func takeTicket() -> UInt64 {
        self.state.withLock { state in
            defer { state.nextTicket += 1 }
            return state.nextTicket
        }
    }

    /// Adds a stanza in send order (by `ticket`; a new ticket when `nil`); `false` when the
    /// queue is full.
    func enqueue(
        _ element: Element, ticket: UInt64? = nil, completion: (@Sendable (Result<Void, any Error>) -> Void)?
    ) -> Bool {
        self.state.withLock { state in
            guard state.count < self.policy.maxStanzas else { return false }
            let ticket =
                ticket
                ?? {
                    defer { state.nextTicket += 1 }
                    return state.nextTicket
                }()
            var index = state.entries.count
            while index > state.head, state.entries[index - 1].ticket > ticket {
                index -= 1
            }
            state.entries.insert(Entry(element: element, enqueued: .now, completion: completion, ticket: ticket), at: index)
            return true
        }
    }

    /// Starts a flush: returns `false` if one is already running.
    func beginFlush() -> Bool {
        self.state.withLock { state in
            guard !state.flushing else { return false }
            state.flushing = true
            return true
        }
    }

    /// The next entries to write, oldest first; ends the flush (returning nothing) when empty.
    func nextBatch(max: Int = 256) -> [Entry] {
        self.state.withLock { state in
            let available = state.count
            guard available > 0 else {
                state.flushing = false
                return []
            }
            let take = min(available, max)
            let batch = Array(state.entries[state.head..<state.head + take])
            state.head += take
            state.compact()
            return batch
        }
    }

    /// Puts entries that could not be written back at the front, in order, and ends the flush.
    func requeueFront(_ entries: [Entry]) {
        self.state.withLock { state in
            let rest = Array(state.entries[state.head...])
            // In ticket order: stanzas whose direct write failed may have joined meanwhile.
            state.entries = (entries + rest).sorted { $0.ticket < $1.ticket }
            state.head = 0
            state.flushing = false
        }
    }

    /// Removes and returns the entries older than the policy's maximum age.
    func expired(now: ContinuousClock.Instant = .now) -> [Entry] {
        self.state.withLock { state in
            var expired: [Entry] = []
            var kept: [Entry] = []
            for entry in state.entries[state.head...] {
                if now - entry.enqueued > self.policy.maxAge {
                    expired.append(entry)
                } else {
                    kept.append(entry)
                }
            }
            state.entries = kept
            state.head = 0
            return expired
        }
    }

    /// Removes and returns everything (shutdown, or the hostname was removed).
    func drain() -> [Entry] {
        self.state.withLock { state in
            let all = Array(state.entries[state.head...])
            state.entries = []
            state.head = 0
            return all
        }
    }
}
