import Synchronization

/// Tracks the stanza a hostname's handler is working on, so that a handler that hangs is
/// noticed: ``check(now:threshold:)`` reports a stanza in progress for longer than the
/// threshold, once. It never interrupts the handler (Swift cannot stop a task that does
/// not cooperate); ComponentKit gives every hostname its own worker, so a hung handler
/// holds up only its own hostname.
final class HandlerWatchdog: Sendable {
    /// A stanza in progress for longer than the threshold.
    struct Hang: Hashable, Sendable {
        /// What the stanza is (`message`, `iq get urn:example:kv`…) and its id.
        var stanza: String
        /// How long it has been in progress.
        var duration: Duration
    }

    private struct InFlight {
        var stanza: String
        var started: ContinuousClock.Instant
        var reported = false
    }

    private struct State {
        var nextToken = 0
        var inFlight: [Int: InFlight] = [:]
        var hangs = 0
    }

    private let state = Mutex(State())

    /// Records the start of a stanza; returns a token for ``end(_:)``.
    func begin(_ stanza: String, now: ContinuousClock.Instant = .now) -> Int {
        self.state.withLock { state in
            let token = state.nextToken
            state.nextToken += 1
            state.inFlight[token] = InFlight(stanza: stanza, started: now)
            return token
        }
    }

    /// Records the end of a stanza; returns how long it took if it had been reported hung.
    @discardableResult
    func end(_ token: Int, now: ContinuousClock.Instant = .now) -> Duration? {
        self.state.withLock { state in
            guard let entry = state.inFlight.removeValue(forKey: token), entry.reported else { return nil }
            return now - entry.started
        }
    }

    /// Newly hung stanzas (each reported once).
    func check(now: ContinuousClock.Instant = .now, threshold: Duration) -> [Hang] {
        self.state.withLock { state in
            var hangs: [Hang] = []
            for (token, entry) in state.inFlight where !entry.reported && now - entry.started >= threshold {
                state.inFlight[token]?.reported = true
                state.hangs += 1
                hangs.append(Hang(stanza: entry.stanza, duration: now - entry.started))
            }
            return hangs
        }
    }

    /// The longest-running stanza currently reported hung, if any.
    func currentHang(now: ContinuousClock.Instant = .now) -> Hang? {
        self.state.withLock { state in
            state.inFlight.values.filter(\.reported).min { $0.started < $1.started }.map {
                Hang(stanza: $0.stanza, duration: now - $0.started)
            }
        }
    }

    /// How many hangs were detected so far.
    var hangCount: Int {
        self.state.withLock { $0.hangs }
    }

    /// How many stanzas are in progress.
    var inFlightCount: Int {
        self.state.withLock { $0.inFlight.count }
    }
}
