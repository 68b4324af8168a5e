import XMPPCore

/// The state of a ``ComponentConnection``, with no I/O: the connection's phase, every
/// hostname's binding state, where the next stream goes, and shutdown.
///
/// Events are `mutating` methods that return what to do; the connection performs the
/// actions. Everything the server says is fed in on the stream's event loop in the order
/// the bytes arrived, so a bind result read before a stanza has taken effect before that
/// stanza is routed ("stream order is state order").
///
/// A hostname's life: `pending` (waiting for a stream) → `binding` (a `<bind/>` in
/// flight) → `bound` → `unbinding` (an `<unbind/>` in flight) → removed. A stream that
/// closes puts every hostname back to `pending` (they are bound again on the next
/// stream); shutdown removes them all.
struct ConnectionStateMachine: Sendable {
    enum Phase: Hashable, Sendable {
        case idle
        case running
        case shuttingDown
        case finished
    }

    enum HostnamePhase: Hashable, Sendable {
        /// Registered; waiting for a stream to bind on.
        case pending
        /// A bind request with this id is in flight.
        case binding(requestID: String)
        /// Bound under the hostname the server returned.
        case bound(hostname: String)
        /// An unbind request with this id is in flight; nothing more leaves from it.
        case unbinding(hostname: String, requestID: String)
    }

    struct Hostname: Hashable, Sendable {
        /// The hostname as requested.
        var requested: String
        var phase: HostnamePhase = .pending
        /// Whether the server bound it at least once (later binds are re-binds).
        var everBound = false
        /// Consecutive re-binds refused with `conflict`.
        var conflictRetries = 0
        /// Whether the handler was told the hostname is bound (a `bound` not yet followed by
        /// an `unbound`): an unbind sent while the bind was in flight ends without telling
        /// it `unbound`, unless the server's answers made it bound in between.
        var announced = false

        /// The hostname the server bound, while bound or unbinding.
        var boundHostname: String? {
            switch self.phase {
            case .bound(let hostname), .unbinding(let hostname, _): hostname
            case .pending, .binding: nil
            }
        }
    }

    private(set) var phase: Phase = .idle
    private(set) var shutdownRequested = false
    /// Whether hostnames are served by XEP-0114 streams (configured, or after a fallback).
    private(set) var legacy: Bool
    /// Whether a negotiated XEP-0225 stream is up.
    private(set) var streamUp = false
    /// Whether that stream is protected by TLS.
    private(set) var streamHasTLS = false
    private(set) var hostnames: [HostnameKey: Hostname] = [:]
    /// Where the next connection goes when it is not the configured server.
    private(set) var redirectTarget: ConnectTarget?
    /// The server a XEP-0051 transfer moved the connection to: every later reconnect goes
    /// there (sticky) until the configuration is reloaded (``forgetTransferTarget()``).
    private(set) var transferTarget: ConnectTarget?
    /// `see-other-host` redirects followed since a stream last bound a hostname.
    private(set) var redirectsInARow = 0
    /// At most this many `see-other-host` in a row are followed at once; past it the
    /// connection backs off to the configured server with the reconnect delay.
    static let maximumRedirectsInARow = 3

    init(legacy: Bool) {
        self.legacy = legacy
    }

    // MARK: Life

    enum StartError: Error, Equatable {
        case alreadyStarted
    }

    /// `run()` starts: returns the hostnames registered before it.
    mutating func start() throws(StartError) -> [HostnameKey] {
        guard self.phase == .idle else { throw .alreadyStarted }
        self.phase = self.shutdownRequested ? .shuttingDown : .running
        return self.hostnames.keys.sorted()
    }

    /// Shutdown was asked for; `true` the first time while running.
    mutating func requestShutdown() -> Bool {
        self.shutdownRequested = true
        guard self.phase == .running else { return false }
        self.phase = .shuttingDown
        return true
    }

    /// `run()` returns: every hostname still registered is removed.
    mutating func finish() -> [HostnameKey] {
        self.phase = .finished
        self.streamUp = false
        let remaining = self.hostnames.keys.sorted()
        self.hostnames.removeAll()
        return remaining
    }

    var isRunning: Bool { self.phase == .running }

    // MARK: Registering

    enum AddResult: Hashable, Sendable {
        /// Added; `bindNow` when a XEP-0225 stream is up to bind it on.
        case added(bindNow: Bool, startLegacyStream: Bool)
        /// The hostname is already registered (as `existing`).
        case duplicate(existing: String)
        case shuttingDown
    }

    mutating func add(_ key: HostnameKey, requested: String) -> AddResult {
        if let existing = self.hostnames[key] {
            return .duplicate(existing: existing.requested)
        }
        if self.phase == .shuttingDown || self.phase == .finished || self.shutdownRequested {
            return .shuttingDown
        }
        self.hostnames[key] = Hostname(requested: requested)
        let running = self.phase == .running
        return .added(bindNow: running && !self.legacy && self.streamUp, startLegacyStream: running && self.legacy)
    }

    /// Removes a hostname for good; returns what it was.
    @discardableResult
    mutating func remove(_ key: HostnameKey) -> Hostname? {
        self.hostnames.removeValue(forKey: key)
    }

    // MARK: Binding (XEP-0225)

    /// A bind request is about to be written; `false` when the hostname is not pending.
    mutating func bindStarted(_ key: HostnameKey, requestID: String) -> Bool {
        guard self.phase == .running, self.streamUp, var hostname = self.hostnames[key], hostname.phase == .pending else {
            return false
        }
        hostname.phase = .binding(requestID: requestID)
        self.hostnames[key] = hostname
        return true
    }

    enum BindResult: Hashable, Sendable {
        /// Bound; `rebind` when it had been bound before (a reconnect or transfer).
        case bound(hostname: String, rebind: Bool)
        /// The answer is for a request no longer in flight (removed meanwhile): ignore it.
        case stale
    }

    mutating func bindSucceeded(_ key: HostnameKey, requestID: String, hostname bound: String) -> BindResult {
        guard var hostname = self.hostnames[key], hostname.phase == .binding(requestID: requestID) else { return .stale }
        let rebind = hostname.everBound
        hostname.phase = .bound(hostname: bound)
        hostname.everBound = true
        hostname.announced = true
        hostname.conflictRetries = 0
        self.hostnames[key] = hostname
        self.redirectsInARow = 0
        return .bound(hostname: bound, rebind: rebind)
    }

    enum BindFailure: Hashable, Sendable {
        /// A re-bind refused with `conflict`: the server probably still holds our previous,
        /// half-open stream. Kept pending; retry after the reconnect backoff's `attempt`.
        case retry(attempt: Int)
        /// Refused for good: the hostname is removed.
        case removed
        /// No answer (timeout, stream closed): back to pending, bound on the next stream.
        case pending
        case stale
    }

    mutating func bindFailed(_ key: HostnameKey, requestID: String, refusal: StanzaError.Condition?) -> BindFailure {
        guard var hostname = self.hostnames[key], hostname.phase == .binding(requestID: requestID) else { return .stale }
        guard let refusal else {
            hostname.phase = .pending
            self.hostnames[key] = hostname
            return .pending
        }
        if refusal == .conflict, hostname.everBound {
            hostname.phase = .pending
            hostname.conflictRetries += 1
            self.hostnames[key] = hostname
            return .retry(attempt: hostname.conflictRetries)
        }
        self.hostnames.removeValue(forKey: key)
        return .removed
    }

    // MARK: Unbinding

    enum UnbindStart: Hashable, Sendable {
        /// Send `<unbind/>` for this hostname (the hostname is now `unbinding`).
        case send(hostname: String)
        /// Not bound on a stream (pending, or a bind in flight with no stream to send the
        /// unbind on): removed locally.
        case removedLocally(wasBinding: Bool)
        /// An unbind is already in flight.
        case inProgress
        case notRegistered
    }

    mutating func unbindStarted(_ key: HostnameKey, requestID: String) -> UnbindStart {
        guard var hostname = self.hostnames[key] else { return .notRegistered }
        switch hostname.phase {
        case .bound(let bound) where !self.legacy && self.streamUp:
            hostname.phase = .unbinding(hostname: bound, requestID: requestID)
            self.hostnames[key] = hostname
            return .send(hostname: bound)
        case .unbinding:
            return .inProgress
        case .binding where !self.legacy && self.streamUp:
            // The server handles a stream's requests in order: the unbind goes right behind
            // the bind in flight, whose answer is then stale. Removing the hostname here
            // without telling the server would leave it bound there, with stanzas routed to
            // a hostname nobody serves. A refused bind makes the unbind `item-not-found`.
            hostname.phase = .unbinding(hostname: hostname.requested, requestID: requestID)
            self.hostnames[key] = hostname
            return .send(hostname: hostname.requested)
        case .binding:
            self.hostnames.removeValue(forKey: key)
            return .removedLocally(wasBinding: true)
        case .pending, .bound:
            self.hostnames.removeValue(forKey: key)
            return .removedLocally(wasBinding: false)
        }
    }

    enum UnbindOutcome: Hashable, Sendable {
        case succeeded
        case refused(StanzaError.Condition)
        case noAnswer
    }

    enum UnbindResult: Hashable, Sendable {
        /// Gone: the server confirmed, or answered `item-not-found` (it holds no such binding).
        /// `hostname` is `nil` when the handler was never told it was bound (the unbind went
        /// out while the bind was in flight): there is no `unbound` to tell.
        case removed(hostname: String?)
        /// The server refused: still bound, stanzas keep flowing. `announce`: the handler
        /// has not been told it is bound yet (the unbind went out while the bind was in
        /// flight, and the bind's answer was set aside).
        case stillBound(hostname: String, announce: Bool)
        case stale
    }

    mutating func unbindAnswered(_ key: HostnameKey, requestID: String, outcome: UnbindOutcome) -> UnbindResult {
        guard var hostname = self.hostnames[key], case .unbinding(let bound, let id) = hostname.phase, id == requestID
        else { return .stale }
        switch outcome {
        case .succeeded, .refused(.itemNotFound):
            self.hostnames.removeValue(forKey: key)
            return .removed(hostname: hostname.announced ? bound : nil)
        case .refused, .noAnswer:
            let announce = !hostname.announced
            hostname.phase = .bound(hostname: bound)
            hostname.everBound = true
            hostname.announced = true
            self.hostnames[key] = hostname
            return .stillBound(hostname: bound, announce: announce)
        }
    }

    // MARK: Routing and sending

    /// Which hostname a stanza addressed to `key` belongs to: the instance itself, its
    /// domain, or (for the bare domain and JIDs under it, `domain/other` included, when only
    /// instances of it are registered) one of its instances.
    ///
    /// When several instances of one domain share this connection, the server cannot say
    /// which one it chose: a stanza goes to the instance picked by a stable hash of its
    /// sender (`spreadBy`), among those bound (or binding), so that one remote JID stays on
    /// one instance while the set of instances is unchanged. Without a sender, the first.
    func owner(of key: HostnameKey, spreadBy sender: String? = nil) -> HostnameKey? {
        if self.hostnames[key] != nil { return key }
        if key.resource != nil {
            // `domain/other`: the domain's, or (only instances registered) like the domain.
            let domain = key.domainKey
            if self.hostnames[domain] != nil { return domain }
        }
        let instances = self.hostnames.filter { $0.key.domain == key.domain }
        guard instances.count > 1, let sender else { return instances.keys.min() }
        let live = instances.filter { $0.value.phase != .pending }.keys.sorted()
        guard !live.isEmpty else { return instances.keys.min() }
        return live[Int(Self.stableHash(sender) % UInt64(live.count))]
    }

    /// FNV-1a over the UTF-8 bytes: the same on every run (unlike `Hasher`).
    static func stableHash(_ text: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x100_0000_01b3
        }
        return hash
    }

    enum RouteDecision: Hashable, Sendable {
        /// Hand it to this hostname's handler. `mayAnswer`: an error may be sent from the
        /// hostname if the handler cannot take it (not while its unbind is in flight: the
        /// server may already have processed it).
        case deliver(HostnameKey, mayAnswer: Bool)
        /// Not served on this connection. Nothing may be sent from it either: a server ends
        /// the whole stream with `invalid-from` for a stanza from a hostname not bound there.
        case notServed
    }

    /// Where an inbound stanza goes. A hostname whose bind is still in flight receives
    /// what the server routes to it: the server is the authority on what it routes.
    func route(_ key: HostnameKey, from sender: String? = nil) -> RouteDecision {
        guard let owner = self.owner(of: key, spreadBy: sender), let hostname = self.hostnames[owner] else { return .notServed }
        switch hostname.phase {
        case .binding, .bound: return .deliver(owner, mayAnswer: true)
        case .unbinding: return .deliver(owner, mayAnswer: false)
        case .pending: return .notServed
        }
    }

    enum SendDecision: Hashable, Sendable {
        /// Write it now.
        case write(HostnameKey)
        /// Hold it in the hostname's queue (not bound yet, reconnecting, or unbinding).
        case queue(HostnameKey)
        /// The sender is not a hostname registered here.
        case unknownSender
    }

    /// What to do with a stanza sent from `key`. From the moment an unbind is sent,
    /// nothing more leaves from that hostname: it queues, and fails if the unbind succeeds.
    func send(from key: HostnameKey) -> SendDecision {
        var owner = self.owner(of: key)
        if key.resource == nil, self.hostnames[key] == nil {
            // From the bare domain (or a JID under it) with only instances registered: any
            // bound instance of the domain carries it.
            let bound = self.hostnames.filter {
                if case .bound = $0.value.phase { return $0.key.domain == key.domain }
                return false
            }
            owner = bound.keys.min() ?? owner
        }
        guard let owner, let hostname = self.hostnames[owner] else { return .unknownSender }
        if case .bound = hostname.phase, self.legacy || self.streamUp {
            return .write(owner)
        }
        return .queue(owner)
    }

    // MARK: The XEP-0225 stream

    /// A stream is negotiated: returns the hostnames to bind on it.
    mutating func streamOpened(hasTLS: Bool) -> [HostnameKey] {
        self.streamUp = true
        self.streamHasTLS = hasTLS
        return self.hostnames.filter { $0.value.phase == .pending }.keys.sorted()
    }

    /// The stream closed (or is being replaced by a transfer): every hostname goes back to
    /// pending, to be bound on the next stream; during shutdown they are removed. Returns
    /// the hostnames that were bound (their handlers hear `hostnameUnbound`) and those
    /// whose unbind was in flight (the server dropped them with the stream).
    mutating func streamClosed() -> (wasBound: [(HostnameKey, String)], unbound: [(HostnameKey, String?)]) {
        self.streamUp = false
        var wasBound: [(HostnameKey, String)] = []
        var unbound: [(HostnameKey, String?)] = []
        for key in self.hostnames.keys.sorted() {
            guard var hostname = self.hostnames[key] else { continue }
            switch hostname.phase {
            case .bound(let bound):
                wasBound.append((key, bound))
                hostname.announced = false
            case .unbinding(let bound, _):
                unbound.append((key, hostname.announced ? bound : nil))
                self.hostnames.removeValue(forKey: key)
                continue
            case .pending, .binding:
                break
            }
            hostname.phase = .pending
            self.hostnames[key] = hostname
        }
        if self.phase != .running {
            for (key, _) in wasBound { self.hostnames.removeValue(forKey: key) }
        }
        return (wasBound, unbound)
    }

    /// Switches to XEP-0114 after a fallback: every hostname gets its own stream.
    mutating func fellBackToLegacy() -> [HostnameKey] {
        self.legacy = true
        self.streamUp = false
        return self.hostnames.keys.sorted()
    }

    // MARK: XEP-0114 streams (one per hostname)

    /// A hostname's own stream is about to be opened; `false` when it is not pending.
    mutating func legacyConnecting(_ key: HostnameKey) -> Bool {
        guard self.phase == .running, var hostname = self.hostnames[key], hostname.phase == .pending else { return false }
        hostname.phase = .binding(requestID: "xep0114")
        self.hostnames[key] = hostname
        return true
    }

    mutating func legacyConnected(_ key: HostnameKey) -> BindResult {
        self.bindSucceeded(key, requestID: "xep0114", hostname: self.hostnames[key]?.requested ?? key.description)
    }

    /// The hostname's stream failed to open: back to pending, or removed when `definitive`.
    mutating func legacyFailed(_ key: HostnameKey, definitive: Bool) {
        guard var hostname = self.hostnames[key], hostname.phase == .binding(requestID: "xep0114") else { return }
        if definitive {
            self.hostnames.removeValue(forKey: key)
        } else {
            hostname.phase = .pending
            self.hostnames[key] = hostname
        }
    }

    /// The hostname's stream closed: returns the hostname if it was bound.
    mutating func legacyClosed(_ key: HostnameKey) -> String? {
        guard var hostname = self.hostnames[key], let bound = hostname.boundHostname else { return nil }
        if self.phase == .running {
            hostname.phase = .pending
            self.hostnames[key] = hostname
        } else {
            self.hostnames.removeValue(forKey: key)
        }
        return bound
    }

    // MARK: Where the next stream goes

    enum RedirectDecision: Hashable, Sendable {
        /// Connect there next, at once.
        case follow(ConnectTarget)
        /// Too many in a row: back off, then the configured server.
        case backOff
        /// Refused: a redirect is never followed from a stream without TLS.
        case refusedWithoutTLS
    }

    /// The server ended the stream with `see-other-host`.
    mutating func seeOtherHost(_ target: ConnectTarget, fromStreamWithTLS hasTLS: Bool) -> RedirectDecision {
        guard hasTLS else { return .refusedWithoutTLS }
        self.redirectsInARow += 1
        guard self.redirectsInARow <= Self.maximumRedirectsInARow else {
            self.redirectsInARow = 0
            self.redirectTarget = nil
            return .backOff
        }
        var target = target
        if target.domain == nil { target.domain = self.transferTarget?.domain }
        self.redirectTarget = target
        return .follow(target)
    }

    /// A transfer succeeded: later reconnects go to `target`.
    mutating func transferSucceeded(_ target: ConnectTarget) {
        self.transferTarget = target
    }

    /// The configuration was reloaded: reconnects go to the configured server again.
    mutating func forgetTransferTarget() {
        self.transferTarget = nil
    }

    /// A transfer (XEP-0051) failed: keep the target for the next reconnect.
    mutating func setRedirectTarget(_ target: ConnectTarget?) {
        self.redirectTarget = target
    }

    /// Where to connect next (consumes a one-shot redirect).
    mutating func nextTarget(configured: ConnectTarget) -> ConnectTarget {
        defer { self.redirectTarget = nil }
        return self.redirectTarget ?? self.transferTarget ?? configured
    }

    enum TransferDecision: Hashable, Sendable {
        case accept(ConnectTarget)
        case refusedWithoutTLS
        case refusedLegacy
    }

    /// The server asked for a XEP-0051 transfer.
    func transfer(to target: ConnectTarget) -> TransferDecision {
        if self.legacy { return .refusedLegacy }
        guard self.streamHasTLS else { return .refusedWithoutTLS }
        return .accept(target)
    }
}
