import CoreMetrics
import Synchronization
import XMPPCore

/// One hostname's binding on a connection: its handler, its mailbox and its state.
final class Binding: Sendable {
    enum State: Hashable, Sendable {
        /// Registered; waiting for a stream to bind on.
        case pending
        /// A bind request is in flight.
        case binding
        /// Bound; the server's hostname is recorded.
        case bound(String)
        /// An unbind request is in flight.
        case unbinding
        /// Removed (unbound, or binding refused); the mailbox is finished.
        case removed
    }

    /// The routing key: the lowercased domain of the hostname.
    let key: String
    /// The hostname as requested (a domain or `domain/resource`).
    let requested: String
    let handler: any ComponentHandler
    let mailbox: Mailbox
    let state = Mutex<State>(.pending)
    /// The hostname's own stream in XEP-0114 mode.
    let legacyStreamBox = Mutex<ComponentStream?>(nil)
    let metrics: HostnameMetrics
    let stanzasIn = Atomic<Int>(0)
    let stanzasOut = Atomic<Int>(0)
    /// Whether the server has bound this hostname at least once (later binds are re-binds
    /// after a reconnect or transfer).
    let everBound = Atomic<Bool>(false)
    /// Consecutive re-binds refused with `conflict` (for the retry backoff).
    let conflictRetries = Atomic<Int>(0)
    /// Waiters for the first bind outcome of ``ComponentConnection/bind(_:handler:)``.
    private let waiters = Mutex<[CheckedContinuation<String, any Error>]>([])

    /// Outgoing stanzas waiting for a stream.
    let outbound: OutboundQueue

    init(key: String, requested: String, handler: any ComponentHandler, queueDepth: Int, outbound: OutboundQueuePolicy) {
        self.key = key
        self.requested = requested
        self.handler = handler
        self.mailbox = Mailbox(depth: queueDepth)
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

    var currentState: State {
        self.state.withLock { $0 }
    }

    /// The hostname the server bound, when bound.
    var boundHostname: String? {
        if case .bound(let hostname) = self.currentState { return hostname }
        return nil
    }

    func addWaiter(_ continuation: CheckedContinuation<String, any Error>) {
        self.waiters.withLock { $0.append(continuation) }
    }

    func resolveWaiters(_ result: Result<String, any Error>) {
        let waiters = self.waiters.withLock { value -> [CheckedContinuation<String, any Error>] in
            let all = value
            value.removeAll()
            return all
        }
        for waiter in waiters {
            waiter.resume(with: result)
        }
    }
}
