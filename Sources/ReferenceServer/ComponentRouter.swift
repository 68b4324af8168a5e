import NIOCore
import Synchronization
import XMPPCore
import XMPPStream

/// The shared, thread-safe state of a ``ReferenceServer``: open connections, authenticated
/// component streams, the ``ComponentRoutingTable`` and the subscribers of users' stanzas
/// and hostname events.
///
/// Decisions are taken under the lock; writes and stream yields happen after it is
/// released, so a write that re-enters the router (a channel closing) cannot deadlock.
final class ComponentRouter: Sendable {
    typealias SessionID = ComponentRoutingTable.SessionID

    private struct Session: Sendable {
        var channel: any Channel
        /// The SASL identity (XEP-0225), or `nil` for XEP-0114 streams.
        var identity: String?
    }

    private struct State: Sendable {
        var table: ComponentRoutingTable
        var connections: [SessionID: any Channel] = [:]
        var sessions: [SessionID: Session] = [:]
        var nextID: SessionID = 1
        var nextSubscriber = 0
        var userSubscribers: [Int: AsyncStream<Element>.Continuation] = [:]
        var eventSubscribers: [Int: AsyncStream<HostnameEvent>.Continuation] = [:]
        var userIQResponder: (@Sendable (IQ) -> Element?)?
        /// Fault injection: stanzas written right behind a bind result, in the same write.
        var burstAfterBind: (@Sendable (String) -> [Element])?
        /// XEP-0199 pings from components that the server answered (their keepalive).
        var answeredPings = 0
    }

    let configuration: ReferenceServerConfiguration
    private let state: Mutex<State>
    /// The configured users' client sessions (c2s): stanzas for them go there, not to ``userStanzas()``.
    let clients: C2SSessions
    /// Load generation (benchmarks): called synchronously, on the sender's event loop, with
    /// every stanza for the server's users, before the ``userStanzas()`` subscribers.
    /// (Boxed: a closure read out of a `Mutex` by value gets wrapped in a new reabstraction
    /// thunk on every read.)
    private let userObserver = Mutex<UserObserver?>(nil)

    private final class UserObserver: Sendable {
        let observe: @Sendable (Element) -> Void
        init(_ observe: @escaping @Sendable (Element) -> Void) { self.observe = observe }
    }

    init(configuration: ReferenceServerConfiguration) {
        self.configuration = configuration
        self.state = Mutex(State(table: ComponentRoutingTable(configuration: configuration)))
        self.clients = C2SSessions(users: configuration.users.keys)
    }

    // MARK: Connections

    /// Registers a new connection and returns its id.
    var answeredPings: Int { self.state.withLock { $0.answeredPings } }

    func connectionOpened(_ channel: any Channel) -> SessionID {
        self.state.withLock { state in
            let id = state.nextID
            state.nextID += 1
            state.connections[id] = channel
            return id
        }
    }

    /// Forgets a connection and releases every hostname its stream bound.
    func connectionClosed(_ id: SessionID) {
        let released = self.state.withLock { state in
            state.connections[id] = nil
            state.sessions[id] = nil
            return state.table.release(session: id)
        }
        self.publish(released.map { .unbound(hostname: $0) })
    }

    /// Marks a XEP-0225 stream authenticated (it may now bind).
    func authenticated(_ id: SessionID, channel: any Channel, identity: String) {
        self.state.withLock { $0.sessions[id] = Session(channel: channel, identity: identity) }
    }

    /// Binds a XEP-0114 stream's hostname; `false` on conflict.
    func bindLegacy(_ id: SessionID, channel: any Channel, hostname: String) -> Bool {
        let bound = self.state.withLock { state in
            guard state.table.bindLegacy(hostname, session: id) else { return false }
            state.sessions[id] = Session(channel: channel, identity: nil)
            return true
        }
        if bound { self.publish([.bound(hostname: hostname.lowercased())]) }
        return bound
    }

    // MARK: Stanzas

    /// Handles an element from an established component stream: XEP-0225 bind/unbind, or routing.
    /// - Returns: The stream error that must end the sender's stream, if any.
    func received(_ element: Element, from id: SessionID) -> StreamError? {
        var events: [HostnameEvent] = []
        var burst: [Element] = []
        let (decision, sender): (ComponentRoutingTable.Decision, (any Channel)?) = self.state.withLock { state in
            guard let session = state.sessions[id] else {
                return (.streamError(StreamError(.notAuthorized)), nil)
            }
            if let identity = session.identity, let iq = IQ(element), iq.type == .set,
                let payload = iq.payload, payload.name.namespace == Namespace.component,
                iq.to == nil || iq.to?.description == self.configuration.domain.lowercased()
            {
                switch payload.name.localName {
                case "bind":
                    let before = state.table.boundHostnames
                    switch state.table.bind(payload, session: id, identity: identity) {
                    case .success(let hostname):
                        if !before.contains(hostname) { events.append(.bound(hostname: hostname)) }
                        burst = state.burstAfterBind?(hostname) ?? []
                        let echo = Element(
                            "bind", namespace: Namespace.component,
                            children: [Element("hostname", namespace: Namespace.component, text: hostname)])
                        return (.reply(iq.result(echo).element), session.channel)
                    case .failure(let error):
                        return (.reply(iq.errorResult(error).element), session.channel)
                    }
                case "unbind":
                    switch state.table.unbind(payload, session: id) {
                    case .success(let hostname):
                        events.append(.unbound(hostname: hostname))
                        return (.reply(iq.result().element), session.channel)
                    case .failure(let error):
                        return (.reply(iq.errorResult(error).element), session.channel)
                    }
                default:
                    return (.reply(iq.errorResult(StanzaError(.featureNotImplemented)).element), session.channel)
                }
            }
            let decision = state.table.routeFromComponent(element, session: id)
            if case .reply(let reply) = decision, reply.name.localName == "iq", reply["type"] == "result",
                element.firstChild("ping", namespace: Namespace.ping) != nil
            {
                state.answeredPings += 1
            }
            return (decision, session.channel)
        }
        self.publish(events)
        if !burst.isEmpty, case .reply(let result) = decision, let sender {
            // The bind result and the stanzas routed to the new hostname, in one write:
            // the component reads them together, as it may from any server.
            sender.write(XMLStreamFrame.element(result), promise: nil)
            for stanza in burst {
                sender.write(XMLStreamFrame.element(stanza), promise: nil)
            }
            sender.flush()
            return nil
        }
        return self.execute(decision, sender: sender)
    }

    func setBurstAfterBind(_ burst: (@Sendable (String) -> [Element])?) {
        self.state.withLock { $0.burstAfterBind = burst }
    }

    /// Routes a stanza from a user of the server.
    func inject(_ element: Element) throws(ReferenceServerError) {
        let decision = try self.state.withLock { state throws(ReferenceServerError) in
            try state.table.routeFromUser(element)
        }
        _ = self.execute(decision, sender: nil)
    }

    /// Routes many stanzas from users: one lock for the routing, one `write` per stanza and
    /// one `flush` per target stream (load generation).
    func inject(contentsOf elements: [Element]) throws(ReferenceServerError) {
        let routed = try self.state.withLock { state throws(ReferenceServerError) in
            var routed: [(ComponentRoutingTable.Decision, SessionID?, (any Channel)?)] = []
            routed.reserveCapacity(elements.count)
            for element in elements {
                let decision = try state.table.routeFromUser(element)
                if case .deliver(_, let target) = decision {
                    routed.append((decision, target, state.sessions[target]?.channel))
                } else {
                    routed.append((decision, nil, nil))
                }
            }
            return routed
        }
        var touched: [any Channel] = []
        for (decision, target, channel) in routed {
            guard case .deliver(let element, _) = decision, let target else {
                _ = self.execute(decision, sender: nil)
                continue
            }
            guard let channel, channel.isActive else {
                self.streamFailed(target, element: element, sender: nil, attempt: 0)
                continue
            }
            let promise = channel.eventLoop.makePromise(of: Void.self)
            promise.futureResult.whenFailure { _ in
                self.streamFailed(target, element: element, sender: nil, attempt: 0)
            }
            channel.write(XMLStreamFrame.element(element), promise: promise)
            if !touched.contains(where: { $0 === channel }) { touched.append(channel) }
        }
        for channel in touched { channel.flush() }
    }

    func setUserObserver(_ observer: (@Sendable (Element) -> Void)?) {
        let box = observer.map(UserObserver.init)
        self.userObserver.withLock { $0 = box }
    }

    private func execute(_ decision: ComponentRoutingTable.Decision, sender: (any Channel)?) -> StreamError? {
        switch decision {
        case .deliver(let element, let target):
            self.write(element, to: target, sender: sender, attempt: 0)
        case .deliverAll(let element, let targets):
            for target in targets {
                self.write(element, to: target, sender: sender, attempt: 0, broadcast: true)
            }
        case .toUsers(let element):
            switch self.clients.deliver(element) {
            case .handled: return nil
            case .bounce(let error): return self.execute(sender == nil ? .toUsers(error) : .reply(error), sender: sender)
            case .notAUser: break
            }
            if let observer = self.userObserver.withLock({ $0 }) { observer.observe(element) }
            let (subscribers, responder) = self.state.withLock { (Array($0.userSubscribers.values), $0.userIQResponder) }
            for subscriber in subscribers { subscriber.yield(element) }
            if let responder, element.name.localName == "iq", let iq = IQ(element), iq.type.isRequest,
                let answer = responder(iq)
            {
                try? self.inject(answer)
            }
        case .reply(let element):
            if let sender {
                sender.writeAndFlush(XMLStreamFrame.element(element), promise: nil)
            } else {
                let subscribers = self.state.withLock { Array($0.userSubscribers.values) }
                for subscriber in subscribers { subscriber.yield(element) }
            }
        case .streamError(let error):
            return error
        case .drop:
            break
        }
        return nil
    }

    /// Writes a stanza to a component stream. A stream that is gone (closed between the
    /// routing decision and the write, or failing the write) never silently eats it: its
    /// instances are released, and the stanza is routed again to the domain's other
    /// instances, or bounced to its sender with an error when none is left.
    private func write(
        _ element: Element, to target: SessionID, sender: (any Channel)?, attempt: Int, broadcast: Bool = false
    ) {
        guard let channel = self.state.withLock({ $0.sessions[target]?.channel }), channel.isActive else {
            self.streamFailed(target, element: element, sender: sender, attempt: attempt, broadcast: broadcast)
            return
        }
        let promise = channel.eventLoop.makePromise(of: Void.self)
        promise.futureResult.whenFailure { _ in
            self.streamFailed(target, element: element, sender: sender, attempt: attempt, broadcast: broadcast)
        }
        channel.writeAndFlush(XMLStreamFrame.element(element), promise: promise)
    }

    /// `broadcast`: the stanza was one copy of an ``RoutingAlgorithm/all`` delivery; the
    /// other instances have theirs, so it is not routed again (it would be a duplicate).
    private func streamFailed(
        _ target: SessionID, element: Element, sender: (any Channel)?, attempt: Int, broadcast: Bool = false
    ) {
        // A stream that failed a write is broken (closed, or closing): it is released now,
        // not when its close is noticed, so the stanzas routed meanwhile go elsewhere.
        let (released, channel, decision) = self.state.withLock {
            state -> ([String], (any Channel)?, ComponentRoutingTable.Decision) in
            let released = state.table.release(session: target)
            let channel = state.sessions.removeValue(forKey: target)?.channel
            let domain = Stanza(element)?.to?.domainpart ?? ""
            if broadcast, state.table.hasInstances(domain) {
                return (released, channel, .drop)
            }
            guard attempt < 3 else {
                let bounce = Stanza(element).flatMap {
                    state.table.bounce($0, StanzaError(.serviceUnavailable, text: "the component's stream is gone"))
                }
                return (released, channel, bounce.map { sender == nil ? .toUsers($0) : .reply($0) } ?? .drop)
            }
            return (released, channel, state.table.reroute(element, fromUser: sender == nil))
        }
        channel?.close(promise: nil)
        self.publish(released.map { .unbound(hostname: $0) })
        switch decision {
        case .deliver(let element, let next):
            self.write(element, to: next, sender: sender, attempt: attempt + 1)
        case .deliverAll(let element, let targets):
            for next in targets { self.write(element, to: next, sender: sender, attempt: attempt + 1) }
        default:
            _ = self.execute(decision, sender: sender)
        }
    }

    /// Sets (or clears) the simulated users' answer to IQ requests components send them.
    func setUserIQResponder(_ responder: (@Sendable (IQ) -> Element?)?) {
        self.state.withLock { $0.userIQResponder = responder }
    }

    /// The channel of the stream that bound `hostname`'s domain, if any.
    func channel(boundTo hostname: String) -> (any Channel)? {
        self.state.withLock { state in
            state.table.session(boundTo: hostname).flatMap { state.sessions[$0]?.channel }
        }
    }

    /// Every bound instance: its hostname, stream id and weight.
    var instances: [(hostname: String, session: SessionID, weight: Int)] { self.state.withLock { $0.table.instances } }

    /// The routing algorithm in force for a domain.
    func algorithm(for domain: String) -> RoutingAlgorithm { self.state.withLock { $0.table.algorithm(for: domain) } }

    /// Sets a domain's routing algorithm; `false` when it has no instance.
    func setAlgorithm(_ algorithm: RoutingAlgorithm, for domain: String) -> Bool {
        self.state.withLock { $0.table.setAlgorithm(algorithm, for: domain) }
    }

    // MARK: Observation

    var boundHostnames: [String] { self.state.withLock { $0.table.boundHostnames } }

    /// Every open connection.
    var allConnections: [any Channel] { self.state.withLock { Array($0.connections.values) } }

    /// The channels of authenticated component streams.
    var componentChannels: [any Channel] { self.state.withLock { $0.sessions.values.map(\.channel) } }

    func userStanzas() -> AsyncStream<Element> {
        let (stream, continuation) = AsyncStream<Element>.makeStream()
        let key = self.state.withLock { state in
            let key = state.nextSubscriber
            state.nextSubscriber += 1
            state.userSubscribers[key] = continuation
            return key
        }
        continuation.onTermination = { [weak self] _ in
            _ = self?.state.withLock { $0.userSubscribers.removeValue(forKey: key) }
        }
        return stream
    }

    func hostnameEvents() -> AsyncStream<HostnameEvent> {
        let (stream, continuation) = AsyncStream<HostnameEvent>.makeStream()
        let key = self.state.withLock { state in
            let key = state.nextSubscriber
            state.nextSubscriber += 1
            state.eventSubscribers[key] = continuation
            return key
        }
        continuation.onTermination = { [weak self] _ in
            _ = self?.state.withLock { $0.eventSubscribers.removeValue(forKey: key) }
        }
        return stream
    }

    /// Ends every subscriber's stream.
    func finishSubscribers() {
        let (users, events) = self.state.withLock { state in
            defer {
                state.userSubscribers = [:]
                state.eventSubscribers = [:]
            }
            return (Array(state.userSubscribers.values), Array(state.eventSubscribers.values))
        }
        users.forEach { $0.finish() }
        events.forEach { $0.finish() }
    }

    private func publish(_ events: [HostnameEvent]) {
        guard !events.isEmpty else { return }
        let subscribers = self.state.withLock { Array($0.eventSubscribers.values) }
        for event in events {
            for subscriber in subscribers { subscriber.yield(event) }
        }
    }
}
