import CoreMetrics
import Synchronization
import XMPPCore

/// One hostname's objects on a connection: its handler, its mailbox and outbound queue,
/// its counters. Its *state* (pending, binding, bound…) lives in the connection's
/// ``ConnectionStateMachine``.
final class Binding: Sendable {
    let key: HostnameKey
    /// The hostname as requested (a domain or `domain/resource`).
    let requested: String
    let handler: any ComponentHandler
    /// The weight sent with the bind request (server-side balancing), if any.
    let weight: Int?
    /// Delivers stanzas to ``handler`` with the hostname's installed features.
    let dispatcher: StanzaDispatcher
    let mailbox: Mailbox
    /// Outgoing stanzas waiting for the hostname to be bound (again).
    let outbound: OutboundQueue
    /// The hostname's own stream in XEP-0114 mode.
    private let legacyStreamBox = Mutex<ComponentStream?>(nil)
    let metrics: HostnameMetrics
    let stanzasIn = Atomic<Int>(0)
    let stanzasOut = Atomic<Int>(0)
    /// Waiters for the first bind outcome of ``ComponentConnection/bind(_:handler:)``.
    private let waiters = Mutex<[CheckedContinuation<String, any Error>]>([])
    /// The outcome, once known (a waiter that arrives later gets it at once).
    private let outcome = Mutex<Result<String, any Error>?>(nil)

    init(
        key: HostnameKey, requested: String, handler: any ComponentHandler, weight: Int? = nil,
        builtInFeatures: [any ComponentFeature], budget: HostnameBudget, outbound: OutboundQueuePolicy,
        released: @escaping @Sendable (Int) -> Void
    ) {
        self.key = key
        self.requested = requested
        self.handler = handler
        self.weight = weight
        self.dispatcher = StanzaDispatcher(handler: handler, builtInFeatures: builtInFeatures)
        self.mailbox = Mailbox(budget: budget, released: released)
        self.outbound = OutboundQueue(policy: outbound)
        self.metrics = HostnameMetrics(hostname: requested)
    }

    func countIn() {
        self.stanzasIn.add(1, ordering: .relaxed)
        self.metrics.stanzasIn.increment()
    }

    func countOut() {
        self.stanzasOut.add(1, ordering: .relaxed)
        self.metrics.stanzasOut.increment()
    }

    var legacyStream: ComponentStream? {
        get { self.legacyStreamBox.withLock { $0 } }
        set { self.legacyStreamBox.withLock { $0 = newValue } }
    }

    /// Whether a XEP-0114 supervisor runs for this hostname (connecting, serving, closing,
    /// or waiting to reconnect): a shutdown waits for it, not only for an open stream, so a
    /// stream that is just being connected is closed by its supervisor before the hostname
    /// is removed (and what it delivered is still answered).
    let legacySupervised = Atomic<Bool>(false)

    /// Waits for the first bind outcome.
    func waitForOutcome() async throws -> String {
        try await withCheckedThrowingContinuation { continuation in
            let known = self.waiters.withLock { waiters -> Result<String, any Error>? in
                if let outcome = self.outcome.withLock({ $0 }) { return outcome }
                waiters.append(continuation)
                return nil
            }
            if let known { continuation.resume(with: known) }
        }
    }

    /// Records the first bind outcome and wakes its waiters (later outcomes are ignored).
    func resolveWaiters(_ result: Result<String, any Error>) {
        let waiters = self.waiters.withLock { waiters -> [CheckedContinuation<String, any Error>] in
            let first = self.outcome.withLock { outcome -> Bool in
                guard outcome == nil else { return false }
                outcome = result
                return true
            }
            guard first else { return [] }
            let all = waiters
            waiters.removeAll()
            return all
        }
        for waiter in waiters {
            waiter.resume(with: result)
        }
    }
}
