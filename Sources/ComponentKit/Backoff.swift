/// Exponential backoff with jitter, from a ``ReconnectPolicy``: the one copy used for
/// reconnects, XEP-0114 streams and re-binds refused with `conflict`.
///
/// Delay *n* is `initialDelay × multiplier^(n-1)`, capped at `maximumDelay`, times a
/// random factor in 50–100 % so that many components restarting together do not retry
/// in lockstep.
struct Backoff: Sendable {
    let policy: ReconnectPolicy
    private var attempt = 0

    init(policy: ReconnectPolicy) {
        self.policy = policy
    }

    /// The next delay (with jitter), advancing the attempt count.
    mutating func next() -> Duration {
        self.attempt += 1
        return self.delay(forAttempt: self.attempt)
    }

    /// Starts again from the initial delay (the connection proved stable).
    mutating func reset() {
        self.attempt = 0
    }

    /// The delay (with jitter) for the `attempt`-th retry, counted from 1.
    func delay(forAttempt attempt: Int) -> Duration {
        self.ceiling(forAttempt: attempt) * Double.random(in: 0.5...1.0)
    }

    /// The delay without jitter for the `attempt`-th retry.
    func ceiling(forAttempt attempt: Int) -> Duration {
        var delay = self.policy.initialDelay
        for _ in 1..<max(1, min(attempt, 64)) {
            delay = delay * self.policy.multiplier
            if delay >= self.policy.maximumDelay { return self.policy.maximumDelay }
        }
        return min(delay, self.policy.maximumDelay)
    }
}
