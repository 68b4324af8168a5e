import NIOCore
import Synchronization
import XMPPCore

/// The queue between the stream's event loop and one hostname's handler loop.
///
/// Bounded in stanzas *and* bytes (``HostnameBudget``): a stanza past either bound is
/// refused (``offer(_:size:)`` returns ``Offer/overBudget``) and answered by the
/// connection with `resource-constraint`, so one slow hostname never stops the stream
/// that other hostnames share. Binding events travel through the same queue, so a handler
/// hears `hostnameBound` before the first stanza of that binding and `hostnameUnbound`
/// after the last.
///
/// The handler loop takes everything queued at once (``next()``): one wake-up per read,
/// not per stanza. A stanza counts against the budget until its handler is done with it
/// (``consumed(size:)``).
final class Mailbox: Sendable {
    enum Item: Sendable {
        /// A stanza, its size for the budgets, and (acknowledgements on) the token to mark
        /// done once its handler is.
        case stanza(Element, size: Int, handled: HandledToken?)
        case bound(String)
        case unbound(String)
    }

    enum Offer: Equatable {
        case accepted
        /// Over the hostname's budget: not queued.
        case overBudget
        /// The mailbox is finished (the hostname was removed).
        case closed
    }

    private struct State: Sendable {
        var items = CircularBuffer<Item>()
        var stanzas = 0
        var bytes = 0
        var waiter: CheckedContinuation<Void, Never>?
        var finished = false
        /// Stanzas accepted since the mailbox was made.
        var acceptedTotal = 0
        /// Stanzas handled since the mailbox was made.
        var consumedTotal = 0
    }

    private let state = Mutex(State())
    let budget: HostnameBudget
    /// Told how many bytes leave the mailbox (the connection's own budget).
    private let released: @Sendable (Int) -> Void

    init(budget: HostnameBudget, released: @escaping @Sendable (Int) -> Void = { _ in }) {
        self.budget = budget
        self.released = released
    }

    /// Queues a stanza of `size` bytes, if the budget allows.
    func offer(_ element: Element, size: Int, handled: HandledToken? = nil) -> Offer {
        let (result, waiter) = self.state.withLock { state -> (Offer, CheckedContinuation<Void, Never>?) in
            guard !state.finished else { return (.closed, nil) }
            // One stanza is always accepted into an empty mailbox, however large (the stream
            // limits bound it), so a budget smaller than a stanza cannot starve a hostname.
            if state.stanzas > 0,
                state.stanzas >= self.budget.maxStanzas || state.bytes + size > self.budget.maxBytes
            {
                return (.overBudget, nil)
            }
            state.stanzas += 1
            state.bytes += size
            state.acceptedTotal += 1
            state.items.append(.stanza(element, size: size, handled: handled))
            return (.accepted, Self.takeWaiter(&state))
        }
        waiter?.resume()
        return result
    }

    /// Queues a binding event (never refused while the mailbox is open).
    func post(_ item: Item) {
        let waiter = self.state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard !state.finished else { return nil }
            state.items.append(item)
            return Self.takeWaiter(&state)
        }
        waiter?.resume()
    }

    /// Ends the mailbox after what is queued (optionally after a last item).
    func finish(after last: Item? = nil) {
        let waiter = self.state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard !state.finished else { return nil }
            if let last { state.items.append(last) }
            state.finished = true
            return Self.takeWaiter(&state)
        }
        waiter?.resume()
    }

    /// Everything queued, oldest first, waiting while there is nothing; `nil` once finished
    /// and drained.
    func next() async -> [Item]? {
        while true {
            switch self.take() {
            case .batch(let batch):
                return batch
            case .finished:
                return nil
            case .empty:
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let ready = self.state.withLock { state -> Bool in
                        if !state.items.isEmpty || state.finished { return true }
                        state.waiter = continuation
                        return false
                    }
                    if ready { continuation.resume() }
                }
            }
        }
    }

    /// Stanzas waiting or being handled now (for status and metrics).
    var depth: Int { self.state.withLock { $0.stanzas } }
    /// Bytes of the stanzas waiting now.
    var queuedBytes: Int { self.state.withLock { $0.bytes } }

    private enum Take {
        case batch([Item])
        case empty
        case finished
    }

    private func take() -> Take {
        self.state.withLock { state -> Take in
            if state.items.isEmpty { return state.finished ? .finished : .empty }
            let batch = Array(state.items)
            state.items.removeAll(keepingCapacity: true)
            return .batch(batch)
        }
    }

    /// A stanza of the batch has been handled: its share of the budget is free again. (The
    /// budget covers the batch being worked on, not only what waits behind it.)
    func consumed(size: Int) {
        self.state.withLock { state in
            state.stanzas -= 1
            state.bytes -= size
            state.consumedTotal += 1
        }
        self.released(size)
    }

    /// Whether every stanza accepted so far has been handled (none waits, none is being
    /// handled), or the mailbox is finished and nothing more will be.
    var isIdle: Bool {
        self.state.withLock { $0.consumedTotal == $0.acceptedTotal || ($0.finished && $0.items.isEmpty) }
    }

    private static func takeWaiter(_ state: inout State) -> CheckedContinuation<Void, Never>? {
        let waiter = state.waiter
        state.waiter = nil
        return waiter
    }
}
