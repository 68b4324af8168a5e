import Synchronization

/// The connection's own budget: the bytes waiting in all its hostnames' mailboxes.
///
/// Each hostname has a budget of its own (``HostnameBudget``) whose excess is answered
/// without pausing anything. Only when all of them together hold more than
/// ``ConnectionBudgetPolicy/maxBytes`` does the stream stop reading, until the handlers
/// have taken half of it.
final class ConnectionBudget: Sendable {
    private struct State {
        var bytes = 0
        var resumers: [@Sendable () -> Void] = []
    }

    let limit: Int
    private let state = Mutex(State())

    init(limit: Int) {
        self.limit = max(limit, 1)
    }

    /// Counts bytes into the mailboxes; `true` when the budget is now spent.
    @discardableResult
    func add(_ bytes: Int) -> Bool {
        self.state.withLock { state in
            state.bytes += bytes
            return state.bytes > self.limit
        }
    }

    /// Counts bytes out of the mailboxes; wakes the paused readers at half the budget.
    func release(_ bytes: Int) {
        let resumers = self.state.withLock { state -> [@Sendable () -> Void] in
            state.bytes = max(0, state.bytes - bytes)
            guard state.bytes <= self.limit / 2, !state.resumers.isEmpty else { return [] }
            let resumers = state.resumers
            state.resumers.removeAll()
            return resumers
        }
        for resume in resumers { resume() }
    }

    var isSpent: Bool {
        self.state.withLock { $0.bytes > self.limit }
    }

    var bytes: Int {
        self.state.withLock { $0.bytes }
    }

    /// Runs `resume` once the budget is back to half (at once if it already is).
    func whenAvailable(_ resume: @escaping @Sendable () -> Void) {
        let now = self.state.withLock { state -> Bool in
            guard state.bytes > self.limit / 2 else { return true }
            state.resumers.append(resume)
            return false
        }
        if now { resume() }
    }
}
