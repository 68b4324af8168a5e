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
    /// The component stream a stanza came from: where replies and bounces go.
    typealias Sender = (id: SessionID, channel: any Channel)

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
        /// XEP-0198 state of the streams that enabled acknowledgements. Kept apart from
        /// `sessions` (which a failed write empties at once): a stream's unacknowledged
        /// stanzas are routed again when its connection is really gone.
        var acknowledgements: [SessionID: StreamAcknowledgements] = [:]
        /// Unacknowledged stanzas routed again after their stream ended.
        var reroutedUnacknowledged = 0
        /// Unacknowledged IQ results and errors dropped with their stream (the answers to
        /// requests of the stream that is gone).
        var droppedUnacknowledgedAnswers = 0
    }

    /// A stanza (or other element) to write to a component stream.
    private struct Outgoing: Sendable {
        var element: Element
        /// The domain whose routing chose the stream (XEP-0198 routes it again if the
        /// stream ends before acknowledging it), or `nil`.
        var routedDomain: String?
        /// Called when the write fails; `queued`: the stream's acknowledgement queue holds
        /// the stanza (it is routed again when the stream ends), so it must not be routed now.
        var failed: (@Sendable (_ queued: Bool) -> Void)?
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

    /// Unacknowledged stanzas routed again after their stream ended (XEP-0198).
    var reroutedUnacknowledged: Int { self.state.withLock { $0.reroutedUnacknowledged } }

    /// Unacknowledged IQ results and errors dropped with their stream (XEP-0198).
    var droppedUnacknowledgedAnswers: Int { self.state.withLock { $0.droppedUnacknowledgedAnswers } }

    /// Forgets a connection, releases every hostname its stream bound, and routes again the
    /// stanzas it had not acknowledged (XEP-0198): to the domains' other instances, or
    /// bounced when none is left. Unacknowledged IQ answers are dropped (their requester is
    /// gone). At least once: a stanza handled but not yet acknowledged may arrive twice.
    func connectionClosed(_ id: SessionID) {
        let (released, unacknowledged) = self.state.withLock { state in
            state.connections[id] = nil
            state.sessions[id] = nil
            let unacknowledged = state.acknowledgements.removeValue(forKey: id)?.unacknowledged ?? []
            return (state.table.release(session: id), unacknowledged)
        }
        self.publish(released.map { .unbound(hostname: $0) })
        guard !unacknowledged.isEmpty else { return }
        let decisions = self.state.withLock { state in
            var decisions: [ComponentRoutingTable.Decision] = []
            for item in unacknowledged where item.routedDomain != nil {
                if item.element.name.localName == "iq", item.element["type"] == "result" || item.element["type"] == "error" {
                    state.droppedUnacknowledgedAnswers += 1
                    continue
                }
                state.reroutedUnacknowledged += 1
                decisions.append(state.table.redeliver(item.element))
            }
            return decisions
        }
        for decision in decisions {
            switch decision {
            case .deliver(let element, let next):
                self.write(element, to: next, sender: nil, attempt: 1)
            case .deliverAll(let element, let targets):
                for next in targets { self.write(element, to: next, sender: nil, attempt: 1, broadcast: true) }
            default:
                _ = self.execute(decision, sender: nil)
            }
        }
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
        let (decision, channel): (ComponentRoutingTable.Decision, (any Channel)?) = self.state.withLock { state in
            guard let session = state.sessions[id] else {
                return (.streamError(StreamError(.notAuthorized)), nil)
            }
            if session.identity != nil, element.name.namespace == StreamAcknowledgements.namespace {
                return (self.streamManagement(element, from: id, state: &state), session.channel)
            }
            state.acknowledgements[id]?.received()
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
        let sender = channel.map { (id: id, channel: $0) }
        if !burst.isEmpty, case .reply(let result) = decision, let channel {
            // The bind result and the stanzas routed to the new hostname, in one write:
            // the component reads them together, as it may from any server.
            self.transmit(([result] + burst).map { Outgoing(element: $0) }, session: id, channel: channel)
            return nil
        }
        return self.execute(decision, sender: sender)
    }

    /// A XEP-0198 element from an authenticated XEP-0225 stream (the Prosody module's `handle_sm`).
    private func streamManagement(
        _ element: Element, from id: SessionID, state: inout State
    ) -> ComponentRoutingTable.Decision {
        switch (element.name.localName, state.acknowledgements[id] != nil) {
        case ("enable", false):
            // A `resume` attribute is ignored: resumption is not offered.
            state.acknowledgements[id] = StreamAcknowledgements(
                maximumUnacknowledged: self.configuration.maximumUnacknowledgedStanzas)
            return .reply(StreamAcknowledgements.enabled)
        case ("enable", true):
            return .reply(StreamAcknowledgements.alreadyEnabled)
        case ("r", true):
            return .reply(state.acknowledgements[id]!.answer)
        case ("a", true):
            switch state.acknowledgements[id]!.acknowledge(element["h"]) {
            case .success(let requestAgain):
                return requestAgain ? .reply(StreamAcknowledgements.requestElement) : .drop
            case .failure(let error):
                return .streamError(error)
            }
        default:
            return .streamError(
                StreamError(
                    .unsupportedStanzaType, text: "Enable stream management with <enable/> before <r/> or <a/>"))
        }
    }

    /// Writes a stanza to the stream that bound `hostname` as the server itself (not routed).
    /// - Returns: `false` when no stream has bound it.
    func sendAsServer(_ element: Element, toBound hostname: String) -> Bool {
        let target = self.state.withLock { state in
            state.table.session(boundTo: hostname).flatMap { id in state.sessions[id].map { (id, $0.channel) } }
        }
        guard let (id, channel) = target else { return false }
        self.transmit([Outgoing(element: element)], session: id, channel: channel)
        return true
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
        var batches: [(target: SessionID, channel: any Channel, outgoing: [Outgoing])] = []
        for (decision, target, channel) in routed {
            guard case .deliver(let element, _) = decision, let target else {
                _ = self.execute(decision, sender: nil)
                continue
            }
            guard let channel, channel.isActive else {
                self.streamFailed(target, element: element, sender: nil, attempt: 0)
                continue
            }
            let outgoing = Outgoing(
                element: element, routedDomain: Self.routedDomain(element),
                failed: { queued in
                    self.streamFailed(target, element: queued ? nil : element, sender: nil, attempt: 0)
                })
            if let index = batches.firstIndex(where: { $0.target == target }) {
                batches[index].outgoing.append(outgoing)
            } else {
                batches.append((target, channel, [outgoing]))
            }
        }
        for batch in batches { self.transmit(batch.outgoing, session: batch.target, channel: batch.channel) }
    }

    func setUserObserver(_ observer: (@Sendable (Element) -> Void)?) {
        let box = observer.map(UserObserver.init)
        self.userObserver.withLock { $0 = box }
    }

    private func execute(
        _ decision: ComponentRoutingTable.Decision, sender: Sender?
    ) -> StreamError? {
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
                self.transmit([Outgoing(element: element)], session: sender.id, channel: sender.channel)
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
        _ element: Element, to target: SessionID, sender: Sender?, attempt: Int, broadcast: Bool = false
    ) {
        guard let channel = self.state.withLock({ $0.sessions[target]?.channel }), channel.isActive else {
            self.streamFailed(target, element: element, sender: sender, attempt: attempt, broadcast: broadcast)
            return
        }
        let outgoing = Outgoing(
            element: element, routedDomain: broadcast ? nil : Self.routedDomain(element),
            failed: { queued in
                self.streamFailed(
                    target, element: queued ? nil : element, sender: sender, attempt: attempt, broadcast: broadcast)
            })
        self.transmit([outgoing], session: target, channel: channel)
    }

    /// The domain whose routing chose a stream for this stanza: its `to`'s.
    private static func routedDomain(_ element: Element) -> String? {
        Stanza(element)?.to?.domainpart
    }

    /// Writes elements to a component stream on its event loop, counting the stanzas when
    /// the stream enabled XEP-0198 acknowledgements. The count is taken in the same event
    /// loop task as the write, so it follows the order of the stanzas on the wire whatever
    /// thread routed them; every stanza write to a XEP-0225 stream goes through here.
    private func transmit(_ outgoing: [Outgoing], session: SessionID, channel: any Channel) {
        if channel.eventLoop.inEventLoop {
            self.transmitOnEventLoop(outgoing, session: session, channel: channel)
        } else {
            channel.eventLoop.execute { self.transmitOnEventLoop(outgoing, session: session, channel: channel) }
        }
    }

    private func transmitOnEventLoop(_ outgoing: [Outgoing], session: SessionID, channel: any Channel) {
        // The limit is checked after the flush (below): a burst larger than it, written at
        // once, is not a component that fails to acknowledge; nor is one that stopped reading.
        let actions: [StreamAcknowledgements.SendAction?] = self.state.withLock { state in
            guard state.acknowledgements[session] != nil else { return outgoing.map { _ in nil } }
            return outgoing.map { item in
                guard StreamAcknowledgements.isStanza(item.element) else { return nil }
                return state.acknowledgements[session]!.sent(
                    item.element, routedDomain: item.routedDomain, peerIsReading: false)
            }
        }
        var overflow: StreamError?
        var armTimer = false
        for (item, action) in zip(outgoing, actions) {
            var promise: EventLoopPromise<Void>?
            if let failed = item.failed {
                let queued = action != nil
                promise = channel.eventLoop.makePromise()
                promise?.futureResult.whenFailure { _ in failed(queued) }
            }
            channel.write(XMLStreamFrame.element(item.element), promise: promise)
            switch action {
            case .request?:
                channel.write(XMLStreamFrame.element(StreamAcknowledgements.requestElement), promise: nil)
            case .armTimer?:
                armTimer = true
            case .overflow(let error)?:
                overflow = error
            case .none?, nil:
                break
            }
        }
        channel.flush()
        if overflow == nil, channel.isWritable {
            // Written and taken (the write buffer is below its high-water mark): the component
            // reads what it is sent, but does not acknowledge it.
            overflow = self.state.withLock { $0.acknowledgements[session]?.checkOverflow() }
        }
        if armTimer {
            channel.eventLoop.scheduleTask(in: StreamAcknowledgements.requestDelay) {
                let request = self.state.withLock { $0.acknowledgements[session]?.timerFired() ?? false }
                if request {
                    channel.writeAndFlush(XMLStreamFrame.element(StreamAcknowledgements.requestElement), promise: nil)
                }
            }
        }
        if let overflow {
            // Its unacknowledged stanzas are routed again once the connection is gone.
            channel.write(XMLStreamFrame.element(overflow.element), promise: nil)
            channel.writeAndFlush(XMLStreamFrame.close).whenComplete { _ in channel.close(promise: nil) }
        }
    }

    /// `broadcast`: the stanza was one copy of an ``RoutingAlgorithm/all`` delivery; the
    /// other instances have theirs, so it is not routed again (it would be a duplicate).
    ///
    /// `element`: `nil` when the stream's XEP-0198 queue holds the stanza (it is routed again
    /// when the connection is gone, not here: never twice).
    private func streamFailed(
        _ target: SessionID, element: Element?, sender: Sender?, attempt: Int, broadcast: Bool = false
    ) {
        // A stream that failed a write is broken (closed, or closing): it is released now,
        // not when its close is noticed, so the stanzas routed meanwhile go elsewhere.
        let (released, channel, decision) = self.state.withLock {
            state -> ([String], (any Channel)?, ComponentRoutingTable.Decision) in
            let released = state.table.release(session: target)
            let channel = state.sessions.removeValue(forKey: target)?.channel
            guard let element else { return (released, channel, .drop) }
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
            return (
                released, channel,
                sender == nil ? state.table.redeliver(element) : state.table.reroute(element, fromUser: false)
            )
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
