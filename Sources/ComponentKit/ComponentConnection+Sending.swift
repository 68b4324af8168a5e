import CoreMetrics
import Logging
import NIOCore
import Synchronization
public import XMPPCore
import XMPPStream

// Outbound: stanzas, the queue of a hostname that has no stream, and IQ requests.
//
// Every decision about a stanza going out (write now, queue, refuse) is taken on the
// connection's event loop, where the binding state changes too: a stanza is never
// written from a hostname after its `<unbind/>` went out, nor queued behind a bind
// result that has already flushed the queue.
extension ComponentConnection {
    /// Sends an element (a stanza from a handler or the user).
    ///
    /// On the event loop (where handlers run) a stanza from a bound hostname is written at
    /// once, without waiting for the write: the write is flushed when the current batch of
    /// work on the loop is done. Elsewhere, or when the stanza must wait in its hostname's
    /// queue, the decision is taken on the loop and `send` returns when the stanza is handed
    /// to a stream.
    func send(element: Element) async throws {
        let key = try Self.checkOutgoing(element)
        if self.eventLoop.inEventLoop, try self.writeIfBound(element, from: key) {
            return
        }
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            self.execute {
                self.sendOnLoop(element, from: key) { continuation.resume(with: $0) }
            }
        }
    }

    /// Checks an outgoing stanza and returns the key of its sender.
    static func checkOutgoing(_ element: Element) throws -> HostnameKey {
        guard let from = element["from"], let key = HostnameKey(address: from) else {
            throw ComponentError(.unboundSender, "an outgoing stanza needs a 'from' under a bound hostname")
        }
        guard element["to"] != nil else {
            throw ComponentError(.invalidStanza, "an outgoing <\(element.name.localName)/> needs a 'to' address")
        }
        do {
            try element.validateCharacters()
        } catch {
            throw ComponentError(.invalidStanza, "the stanza cannot be sent: \(error)")
        }
        return key
    }

    private func unknownSender(_ element: Element) -> ComponentError {
        ComponentError(
            .unboundSender,
            "'\(element["from"] ?? "")' is not under a hostname bound on this connection; the server would reject it")
    }

    /// On the loop: writes the stanza if its hostname is bound and nothing of it is queued.
    /// Returns `false` when it must take the slow path (queue); throws for an unknown sender.
    private func writeIfBound(_ element: Element, from key: HostnameKey) throws -> Bool {
        let (decision, binding, stream) = self.writeDecision(from: key)
        switch decision {
        case .unknownSender:
            throw self.unknownSender(element)
        case .queue:
            return false
        case .write:
            guard let binding, let stream, binding.outbound.count == 0 else { return false }
            self.write(element, binding: binding, ticket: binding.outbound.takeTicket(), on: stream)
            return true
        }
    }

    private func writeDecision(
        from key: HostnameKey
    ) -> (ConnectionStateMachine.SendDecision, Binding?, ComponentStream?) {
        self.state.withLock { state in
            let decision = state.machine.send(from: key)
            switch decision {
            case .write(let owner), .queue(let owner):
                let binding = state.bindings[owner]
                let stream = binding?.legacyStream ?? (state.machine.legacy ? nil : state.stream)
                return (decision, binding, stream?.isWritable == true ? stream : nil)
            case .unknownSender:
                return (decision, nil, nil)
            }
        }
    }

    /// On the loop: writes, queues or refuses a stanza; `completion` is told when it is
    /// handed to a stream (or fails).
    func sendOnLoop(
        _ element: Element, from key: HostnameKey, completion: @escaping @Sendable (Result<Void, any Error>) -> Void
    ) {
        let (decision, binding, stream) = self.writeDecision(from: key)
        guard let binding else {
            completion(.failure(self.unknownSender(element)))
            return
        }
        let ticket = binding.outbound.takeTicket()
        if case .write = decision, let stream, binding.outbound.count == 0 {
            self.write(element, binding: binding, ticket: ticket, on: stream)
            completion(.success(()))
            return
        }
        if self.isFinished {
            completion(.failure(ComponentError(.notConnected, "not connected to the server, and the connection is not running")))
            return
        }
        guard binding.outbound.enqueue(element, ticket: ticket, completion: completion) else {
            self.metrics.queueOverflows.increment()
            completion(
                .failure(
                    ComponentError(
                        .queueFull,
                        "\(binding.requested) is not connected and its outgoing queue is full "
                            + "(\(binding.outbound.policy.maxStanzas) stanzas)")))
            return
        }
        if case .write = decision {
            self.flushQueue(binding)
        }
    }

    /// Hands a stanza to the stream (flushed with the rest of the batch). Should the write
    /// fail (the link broke), the stanza goes back into the hostname's queue in send order.
    private func write(
        _ element: Element, binding: Binding, ticket: UInt64, on stream: ComponentStream,
        completion: (@Sendable (Result<Void, any Error>) -> Void)? = nil
    ) {
        let promise = stream.channel.eventLoop.makePromise(of: Void.self)
        stream.writeBatched(element, promise: promise)
        binding.countOut()
        promise.futureResult.whenComplete { result in
            switch result {
            case .success:
                completion?(.success(()))
            case .failure:
                binding.stanzasOut.subtract(1, ordering: .relaxed)
                guard binding.outbound.enqueue(element, ticket: ticket, completion: completion) else {
                    self.metrics.queueOverflows.increment()
                    completion?(.failure(ComponentError(.queueFull, "\(binding.requested)'s outgoing queue is full")))
                    return
                }
            }
        }
    }

    /// On the loop: writes a hostname's queued stanzas, in order, if it is bound.
    func flushQueue(_ binding: Binding) {
        guard binding.outbound.count > 0 else { return }
        let (decision, _, stream) = self.writeDecision(from: binding.key)
        guard case .write = decision, let stream, binding.outbound.beginFlush() else { return }
        // A write that fails at once (the stream closed meanwhile) puts its stanza back in
        // the queue: stop as soon as the stream cannot take writes, or this loop would take
        // it out again, forever.
        while stream.isWritable {
            let batch = binding.outbound.nextBatch()
            if batch.isEmpty { return }
            for entry in batch {
                self.write(entry.element, binding: binding, ticket: entry.ticket, on: stream, completion: entry.completion)
            }
        }
        // Ends the flush; what is left waits for the next stream (or fails with the binding).
        binding.outbound.requeueFront([])
    }

    /// Fails queued stanzas that waited too long; runs while the connection runs.
    func expireQueuedStanzas() async {
        let policy = self.configuration.outboundQueue
        let period = min(policy.maxAge / 4, .seconds(1))
        while !self.isShuttingDown && !Task.isCancelled {
            await self.sleepUnlessShutdown(period)
            for binding in self.allBindings() {
                for entry in binding.outbound.expired() {
                    self.metrics.queueExpired.increment()
                    entry.completion?(
                        .failure(
                            ComponentError(
                                .expired,
                                "\(binding.requested) stayed disconnected longer than \(policy.maxAge); the stanza was not sent"))
                    )
                }
            }
        }
    }

    /// Fails everything a binding still has queued (it is being removed, or the connection stops).
    func failQueued(_ binding: Binding, reason: String) {
        let entries = binding.outbound.drain()
        guard !entries.isEmpty else { return }
        self.logger.warning(
            "queued stanzas were not sent",
            metadata: ["component.hostname": "\(binding.requested)", "count": "\(entries.count)", "reason": "\(reason)"])
        for entry in entries {
            entry.completion?(.failure(ComponentError(.notConnected, "\(reason); the stanza was not sent")))
        }
    }

    // MARK: IQ requests

    /// Sends an IQ request and waits for its answer (see ``ComponentContext/request(_:timeout:redirects:)``).
    ///
    /// A redirect (an error with code 302 carrying the redirected query, see ``IQRedirect``)
    /// is followed only when `redirects` allows it: by default only to the same domain with
    /// the same query, so that a peer cannot make the component send its query to an
    /// arbitrary address (a confused deputy). At most three redirects in a row are followed.
    /// - Parameters:
    ///   - iq: A `get` or `set` whose `from` is under a bound hostname; an id is assigned if missing.
    ///   - timeout: How long to wait; the configuration's default when `nil`.
    ///   - redirects: Which redirects to follow.
    /// - Returns: The answer (`result` or `error`; a redirect not followed is returned as is).
    public func request(_ iq: IQ, timeout: Duration? = nil, redirects: IQRedirectPolicy = .sameDomain) async throws -> IQ {
        guard iq.type.isRequest else {
            throw ComponentError(.invalidStanza, "an IQ request must be of type get or set, not \(iq.type.rawValue)")
        }
        var iq = iq
        if iq.element["id"] == nil {
            iq.element["id"] = self.pending.makeID()
        }
        let original = iq
        var current = iq
        var followed = 0
        while true {
            let key = try Self.checkOutgoing(current.element)
            let answer = try await self.rawRequest(
                current, via: .hostname(key), timeout: timeout ?? self.configuration.requestTimeout)
            guard redirects != .never, let redirected = IQRedirect.redirectedQuery(in: answer) else {
                return answer
            }
            try IQRedirect.validate(original: original, redirected: redirected)
            guard redirects.allows(original: original, redirected: redirected) else {
                self.logger.notice(
                    "not following an IQ redirect the policy does not allow",
                    metadata: ["stanza.id": "\(original.requestID)", "redirect.to": "\(redirected.element["to"] ?? "-")"])
                return answer
            }
            followed += 1
            guard followed <= IQRedirect.maximumRedirects else {
                throw ComponentError(
                    .tooManyRedirects,
                    "IQ '\(original.requestID)' was redirected more than \(IQRedirect.maximumRedirects) times in a row")
            }
            self.logger.debug(
                "following an IQ redirect",
                metadata: ["stanza.id": "\(original.requestID)", "redirect.to": "\(redirected.element["to"] ?? "-")"])
            current = redirected
        }
    }

    /// How a request travels: on a given stream (binding IQs, pings to the server), or as
    /// a hostname's stanza (queued while it has no stream).
    enum RequestRoute: Sendable {
        case stream(ComponentStream)
        case hostname(HostnameKey)
    }

    /// Sends an IQ request and waits for the answer matched by id and sender.
    func rawRequest(_ iq: IQ, via route: RequestRoute, timeout: Duration) async throws -> IQ {
        let id = iq.requestID
        let pending = self.pending
        let metrics = self.metrics
        let started = ContinuousClock.now
        defer {
            let elapsed = ContinuousClock.now - started
            metrics.iqLatency.recordNanoseconds(
                elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<IQ, any Error>) in
                self.execute {
                    self.sendRequest(iq, via: route, timeout: timeout) { continuation.resume(with: $0) }
                }
            }
        } onCancel: {
            pending.fail(id: id, CancellationError())
        }
    }

    /// On the loop: registers a request, arms its timeout and sends it. `completion` runs
    /// exactly once: on the event loop, in stream order, when the answer is read (so a bind
    /// result takes effect before the stanza that follows it), or with an error. With no
    /// `timeout` the request waits as long as its stream lives (binding requests: a late
    /// answer must still take effect, or the server and the connection disagree).
    func sendRequest(
        _ iq: IQ, via route: RequestRoute, timeout: Duration?,
        completion: @escaping @Sendable (Result<IQ, any Error>) -> Void
    ) {
        let id = iq.requestID
        let pending = self.pending
        let metrics = self.metrics
        let streamIdentity: ObjectIdentifier?
        if case .stream(let stream) = route {
            streamIdentity = ObjectIdentifier(stream)
        } else {
            streamIdentity = nil
        }
        guard pending.register(id: id, expectedFrom: iq.element["to"], stream: streamIdentity, completion: completion) else {
            completion(
                .failure(ComponentError(.invalidStanza, "an IQ request with id '\(id)' is already waiting for its answer")))
            return
        }
        if let timeout {
            let scheduled = self.eventLoop.scheduleTask(in: .nanoseconds(timeout.nanoseconds)) {
                metrics.iqTimeouts.increment()
                pending.fail(id: id, ComponentError(.timeout, "no answer to IQ '\(id)' within \(timeout)"))
            }
            pending.setTimeout(id: id, scheduled)
        }
        switch route {
        case .stream(let stream):
            let promise = self.eventLoop.makePromise(of: Void.self)
            promise.futureResult.whenFailure { error in
                pending.fail(id: id, ComponentError(.connectionClosed, "the request could not be sent: \(error)"))
            }
            stream.writeBatched(iq.element, promise: promise)
        case .hostname(let key):
            self.sendOnLoop(iq.element, from: key) { result in
                if case .failure(let error) = result {
                    pending.fail(id: id, error)
                }
            }
        }
    }
}

extension Duration {
    /// Whole nanoseconds (saturating), for NIO's `TimeAmount`.
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = self.components
        let (product, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        guard !overflow else { return seconds < 0 ? .min : .max }
        return product.addingReportingOverflow(attoseconds / 1_000_000_000).partialValue
    }
}
