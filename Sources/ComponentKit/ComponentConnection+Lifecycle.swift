import CoreMetrics
import Logging
import NIOCore
import Synchronization
import XMPPCore
import XMPPStream

// The XEP-0225 stream's life: connect (and reconnect with backoff), bind, serve,
// transfer, keep alive, and end.
extension ComponentConnection {
    /// Connects (and reconnects, with backoff and jitter) the XEP-0225 stream until shutdown.
    func connectionLoop() async throws {
        let policy = self.configuration.reconnect
        var backoff = Backoff(policy: policy)
        var failures = 0
        let configured = ConnectTarget(host: self.configuration.host, port: self.configuration.port)
        while !self.isShuttingDown && !Task.isCancelled {
            let target = self.state.withLock { $0.machine.nextTarget(configured: configured) }
            self.emit(.connecting(host: target.host, port: target.port))
            let started = ContinuousClock.now
            var penalty: Duration = .zero
            do {
                switch try await self.openStream(to: target) {
                case .connected(let stream):
                    failures = 0
                    self.metrics.connects.increment()
                    penalty = try await self.serve(stream)
                case .fallBackToLegacy(let reason):
                    self.logger.notice("falling back to XEP-0114: one stream per hostname", metadata: ["reason": "\(reason)"])
                    self.switchToLegacy(reason: reason)
                    await self.waitForShutdownRequest()
                    return
                case nil:
                    break  // shutdown while connecting
                }
            } catch let error as ComponentError where error.kind == .invalidConfiguration {
                // Permanent: retrying cannot help.
                self.recordError(error.message)
                throw error
            } catch let error as NegotiationError
                where error.streamError?.condition == .seeOtherHost
                && self.followSeeOtherHost(error.streamError!, overTLS: error.streamErrorOverTLS)
            {
                // Sent elsewhere while negotiating: followed at once, like after negotiation
                // (only from inside TLS; more than three in a row back off below).
                self.recordError(error.message)
                self.emit(.disconnected(reason: "the server ended the stream: \(error.streamError!)"))
            } catch {
                failures += 1
                self.metrics.connectFailures.increment()
                let reason = String(describing: error)
                self.recordError(reason)
                self.logger.warning("component connection failed", metadata: ["error": "\(reason)", "attempt": "\(failures)"])
                self.emit(.disconnected(reason: reason))
                if let limit = policy.maxAttempts, failures >= limit {
                    throw error
                }
                if Self.isAuthenticationFailure(error) {
                    // Wrong credentials do not fix themselves: do not hammer the server.
                    penalty = policy.maximumDelay
                }
            }
            if self.isShuttingDown || Task.isCancelled { break }
            if self.takePendingImmediateReconnect() {
                continue
            }
            if ContinuousClock.now - started > policy.stableAfter {
                backoff.reset()
            }
            let wait = max(backoff.next(), penalty)
            self.logger.debug("reconnecting", metadata: ["delay": "\(wait)"])
            await self.sleepUnlessShutdown(wait)
        }
    }

    /// Opens a stream; `nil` when shutdown was asked for meanwhile (the attempt is abandoned
    /// at once, whatever the network is doing).
    func openStream(to target: ConnectTarget) async throws -> ComponentStream.Outcome? {
        let attempt = ConnectAttempt()
        return try await withThrowingTaskGroup(of: ComponentStream.Outcome?.self) { group in
            group.addTask {
                try await ComponentStream.connect(
                    configuration: self.configuration, target: target,
                    kind: .xep0225(allowsLegacyFallback: self.configuration.protocolMode == .auto),
                    group: self.eventLoop, channelFactory: self.channelFactory, router: self, logger: self.logger,
                    attempt: attempt)
            }
            group.addTask {
                await self.waitForShutdownRequest()
                if !Task.isCancelled { attempt.abandon() }
                return nil
            }
            defer { group.cancelAll() }
            if let outcome = try await group.next()! {
                return outcome
            }
            // Shutdown came first: the abandoned attempt ends promptly; close what it made.
            do {
                if case .connected(let stream)?? = try await group.next() {
                    stream.channel.close(promise: nil)
                }
            } catch {}
            return nil
        }
    }

    /// Serves a negotiated stream until it closes, shutdown, or a transfer moves it.
    /// Returns an extra delay before reconnecting (e.g. after a `conflict`).
    private func serve(_ initial: ComponentStream) async throws -> Duration {
        var stream = initial
        var announced: ComponentStream?
        while true {
            // Announce each stream once: serving the same stream again after a failed
            // transfer must not clear the error that transfer recorded.
            let isNew = announced !== stream
            if isNew {
                self.recordConnected(stream.info)
                self.emit(.connected(stream.info))
                announced = stream
            }
            let current = stream
            self.execute { self.streamOpened(current) }

            enum Wake: Sendable {
                case closed
                case shutdown
                case transfer(ConnectTarget)
                case dead
            }
            let wake = await withTaskGroup(of: Wake?.self) { group -> Wake in
                group.addTask {
                    await current.closeFuture.waitIgnoringErrorsUnlessCancelled()
                    return .closed
                }
                group.addTask {
                    await self.waitForShutdownRequest()
                    return .shutdown
                }
                group.addTask {
                    guard let target = await self.nextTransferRequest() else { return nil }
                    return .transfer(target)
                }
                group.addTask {
                    await self.monitorLiveness(current) ? .dead : nil
                }
                var result: Wake = .closed
                while let next = await group.next() {
                    if let next {
                        result = next
                        break
                    }
                }
                group.cancelAll()
                return result
            }

            switch wake {
            case .transfer(let target):
                if let next = await self.transfer(from: current, to: target) {
                    stream = next
                    continue
                }
                // The transfer failed: keep serving the original stream.
                if current.channel.isActive {
                    continue
                }
            case .shutdown:
                self.failQueuedWithoutStream()
                if current.acknowledgements.isEnabled {
                    await self.handBackForShutdown(current)
                } else {
                    await self.unbindAllForShutdown(on: current)
                }
                await current.closeGracefully()
            case .dead:
                self.logger.warning("the server stopped answering; declaring the stream dead")
                current.channel.close(promise: nil)
            case .closed:
                break
            }
            return await self.streamEnded(current)
        }
    }

    /// On the loop: a stream is up; bind every pending hostname on it.
    private func streamOpened(_ stream: ComponentStream) {
        guard stream.channel.isActive else { return }
        self.pending.setServerDomain(stream.serverDomain)
        let bindings = self.state.withLock { state -> [Binding] in
            state.stream = stream
            return state.machine.streamOpened(hasTLS: stream.negotiated.tls != nil).compactMap { state.bindings[$0] }
        }
        for binding in bindings {
            self.startBind(binding, on: stream)
        }
    }

    // MARK: Binding

    /// On the loop: sends `<bind/>` for a pending hostname. The answer is applied in
    /// stream order (``bindAnswered(_:requestID:on:result:)``).
    func startBind(_ binding: Binding, on stream: ComponentStream) {
        let id = self.pending.makeID()
        let proceed = self.state.withLock { state in
            state.stream === stream && state.machine.bindStarted(binding.key, requestID: id)
        }
        guard proceed else { return }
        let request = HostnameBinding.bindRequest(id: id, hostname: binding.requested, weight: binding.weight)
        // No timeout while the stream lives: a server answers a stream's requests in order,
        // and a late `result` still binds the hostname there. Given up locally, it would
        // leave the server routing to a hostname nobody serves here (and reading may be
        // paused by our own budget, with the answer waiting in the socket). A `bind()` that
        // stops waiting sends an `<unbind/>` behind it instead; a dead stream fails it.
        self.sendRequest(request, via: .stream(stream), timeout: nil) { result in
            self.bindAnswered(binding, requestID: id, on: stream, result: result)
        }
        let timeout = self.configuration.requestTimeout
        self.eventLoop.scheduleTask(in: .nanoseconds(timeout.nanoseconds)) {
            let waiting = self.state.withLock { $0.machine.hostnames[binding.key]?.phase == .binding(requestID: id) }
            guard waiting, stream.channel.isActive else { return }
            self.logger.warning(
                "no answer to a bind request yet; still waiting for it",
                metadata: ["component.hostname": "\(binding.requested)", "waited": "\(timeout)"])
        }
    }

    /// Runs where the answer was read (the loop), before the next element is routed.
    private func bindAnswered(_ binding: Binding, requestID: String, on stream: ComponentStream, result: Result<IQ, any Error>) {
        switch result {
        case .success(let answer) where answer.type != .error:
            let hostname = HostnameBinding.boundHostname(in: answer) ?? binding.requested
            let outcome = self.state.withLock {
                $0.machine.bindSucceeded(binding.key, requestID: requestID, hostname: hostname)
            }
            guard case .bound = outcome else { return }
            binding.mailbox.post(.bound(hostname))
            self.flushQueue(binding)
            self.metrics.bindsSucceeded.increment()
            self.logger.info("hostname bound", metadata: ["component.hostname": "\(hostname)"])
            self.emit(.bound(hostname: hostname))
            binding.resolveWaiters(.success(hostname))
        case .success(let answer):
            let stanzaError = answer.error ?? StanzaError(.undefinedCondition)
            let error = ComponentError(
                .bindRefused(stanzaError.condition),
                "the server refused to bind \(binding.requested): \(stanzaError)", stanzaError: stanzaError)
            self.metrics.bindsRefused.increment()
            let failure = self.state.withLock {
                $0.machine.bindFailed(binding.key, requestID: requestID, refusal: stanzaError.condition)
            }
            switch failure {
            case .retry(let attempt):
                self.retryRebind(binding, on: stream, attempt: attempt, after: error)
            case .removed:
                self.emit(.bindFailed(hostname: binding.requested, reason: error.message))
                binding.resolveWaiters(.failure(error))
                self.removeBindingForGood(binding, reason: "refused by the server")
            case .pending, .stale:
                break
            }
        case .failure(let error):
            let failure = self.state.withLock { $0.machine.bindFailed(binding.key, requestID: requestID, refusal: nil) }
            guard failure != .stale else { return }
            self.metrics.bindsFailed.increment()
            self.emit(.bindFailed(hostname: binding.requested, reason: String(describing: error)))
            binding.resolveWaiters(.failure(error))
        }
    }

    /// A re-bind (after a reconnect or transfer) refused with `conflict`: the server most
    /// likely still holds our previous stream, which it has not yet noticed is dead (a
    /// half-open link). The hostname was ours, so keep it (its queue too) and try again
    /// with the reconnect backoff instead of dropping it for good.
    private func retryRebind(_ binding: Binding, on stream: ComponentStream, attempt: Int, after error: ComponentError) {
        let wait = Backoff(policy: self.configuration.reconnect).delay(forAttempt: attempt)
        self.recordError(error.message)
        self.logger.warning(
            "re-bind refused with conflict; retrying",
            metadata: ["component.hostname": "\(binding.requested)", "attempt": "\(attempt)", "delay": "\(wait)"])
        self.emit(.bindFailed(hostname: binding.requested, reason: "\(error.message); retrying in \(wait)"))
        self.eventLoop.scheduleTask(in: .nanoseconds(wait.nanoseconds)) {
            guard stream.channel.isActive else { return }
            self.startBind(binding, on: stream)
        }
    }

    /// Graceful shutdown: unbind every bound hostname (bounded), then the stream closes.
    /// Each goes through the state machine like any unbind: from the moment its `<unbind/>`
    /// is sent, nothing more leaves from it (a handler still answering would otherwise make
    /// the server end the stream with invalid-from).
    func unbindAllForShutdown(on stream: ComponentStream) async {
        let bound = self.state.withLock { state in
            state.machine.hostnames.compactMap { key, record in
                record.boundHostname.map { (key, $0) }
            }
        }
        await withTaskGroup(of: Void.self) { group in
            for (key, hostname) in bound {
                group.addTask {
                    _ = try? await withCheckedThrowingContinuation { continuation in
                        self.execute {
                            self.startUnbind(key, hostname: hostname, timeout: .seconds(5), continuation: continuation)
                        }
                    }
                }
            }
        }
    }

    /// Graceful shutdown of a stream with acknowledgements: no unbind. What the handlers
    /// already hold is handled while the hostnames are still bound (their answers go out);
    /// what arrives from now on is left unacknowledged. The `<a/>` before the close tells
    /// the server what was handled, and it routes the rest again, to the domain's other
    /// instances or back as errors: a rolling restart loses nothing and handles nothing
    /// twice. (With `<unbind/>` first, a stanza the server routed before it read the unbind
    /// would arrive when no answer may leave any more, and be acknowledged as handled.)
    func handBackForShutdown(_ stream: ComponentStream, timeout: Duration = .seconds(5)) async {
        stream.acknowledgements.stopDelivering()
        let bindings = self.allBindings()
        await withTaskGroup(of: Void.self) { group in
            for binding in bindings {
                group.addTask { await self.answerReceived(binding, timeout: timeout) }
            }
        }
    }

    // MARK: The end of a stream

    /// Bookkeeping after a stream is gone; returns an extra delay before reconnecting.
    private func streamEnded(_ stream: ComponentStream) async -> Duration {
        let streamError = stream.lastStreamError
        await self.onLoop { self.streamClosed(stream) }
        if self.isShuttingDown {
            self.emit(.disconnected(reason: "shutdown"))
            return .zero
        }
        var reason = "the server closed the stream"
        var penalty: Duration = .zero
        if let error = streamError {
            reason = "the server ended the stream: \(error)"
            switch error.condition {
            case .seeOtherHost:
                _ = self.followSeeOtherHost(error, overTLS: stream.negotiated.tls != nil)
            case .conflict:
                // Another instance holds our identity: back off hard instead of fighting over it.
                penalty = self.configuration.reconnect.maximumDelay
            case .notAuthorized, .policyViolation:
                penalty = self.configuration.reconnect.maximumDelay / 2
            default:
                break
            }
        }
        self.emit(.disconnected(reason: reason))
        return penalty
    }

    /// A `see-other-host` stream error (during negotiation or after it): decides whether to
    /// connect there next, at once. Returns `true` when it is followed.
    func followSeeOtherHost(_ error: StreamError, overTLS: Bool) -> Bool {
        guard let text = error.seeOtherHost, let target = ConnectTarget.parse(text, defaultPort: self.configuration.port)
        else { return false }
        let decision = self.state.withLock { $0.machine.seeOtherHost(target, fromStreamWithTLS: overTLS) }
        switch decision {
        case .follow(let target):
            self.logger.notice("the server sent us to another host", metadata: ["target": "\(target)"])
            self.requestImmediateReconnect()
            return true
        case .backOff:
            self.logger.warning(
                "too many see-other-host redirects in a row; backing off to the configured server",
                metadata: ["target": "\(target)"])
        case .refusedWithoutTLS:
            self.logger.warning("not following see-other-host from a stream without TLS", metadata: ["target": "\(target)"])
        }
        return false
    }

    /// On the loop: every hostname goes back to pending (or away, on shutdown); pending
    /// requests of the stream fail; handlers hear `hostnameUnbound`.
    private func streamClosed(_ stream: ComponentStream) {
        let (closed, bindings) = self.state.withLock { state in
            guard state.stream === stream else {
                return ((wasBound: [(HostnameKey, String)](), unbound: [(HostnameKey, String?)]()), [HostnameKey: Binding]())
            }
            state.stream = nil
            return (state.machine.streamClosed(), state.bindings)
        }
        self.pending.failAll(
            ComponentError(.connectionClosed, "the stream closed before the answer came"), stream: ObjectIdentifier(stream))
        let shuttingDown = self.isShuttingDown
        for (key, hostname) in closed.wasBound {
            guard let binding = bindings[key] else { continue }
            if shuttingDown {
                self.removeBindingForGood(binding, reason: "shut down", unboundHostname: hostname)
            } else {
                self.emit(.unbound(hostname: hostname))
                binding.mailbox.post(.unbound(hostname))
            }
        }
        for (key, hostname) in closed.unbound {
            guard let binding = bindings[key] else { continue }
            self.removeBindingForGood(binding, reason: "unbound (the stream closed)", unboundHostname: hostname)
        }
    }

    /// XEP-0051: connect to the new server while the old stream still serves, then close
    /// the old stream, re-bind every hostname on the new one and flush the queues.
    /// Returns the new stream, or `nil` when the new server could not be reached.
    private func transfer(from old: ComponentStream, to target: ConnectTarget) async -> ComponentStream? {
        self.logger.notice("connection transfer requested", metadata: ["target": "\(target)"])
        self.emit(.connecting(host: target.host, port: target.port))
        let outcome: ComponentStream.Outcome?
        do {
            outcome = try await self.openStream(to: target)
        } catch {
            self.logger.warning("connection transfer failed; staying on the current server", metadata: ["error": "\(error)"])
            self.recordError("transfer to \(target) failed: \(error)")
            return nil
        }
        guard case .connected(let next)? = outcome else {
            self.logger.warning("the transfer target is not a XEP-0225 server; staying on the current server")
            return nil
        }
        // Sticky: later reconnects go to the new server until the configuration is reloaded.
        self.state.withLock { $0.machine.transferSucceeded(target) }
        // Stop taking work on the old stream: its hostnames are bound again on the new one.
        await self.onLoop { self.streamClosed(old) }
        await old.closeGracefully()
        return next
    }

    // MARK: Liveness

    /// Checks an idle stream: whitespace, then an XEP-0199 ping to the server. Returns
    /// `true` when the server did not answer in time and nothing else was read from it
    /// meanwhile (the link is dead); runs until cancelled otherwise. A stream whose reading
    /// is paused (every mailbox together is over the connection's budget) is not checked:
    /// it is idle by our choice.
    func monitorLiveness(_ stream: ComponentStream) async -> Bool {
        let policy = self.configuration.keepalive
        guard policy.isEnabled else {
            await self.waitForShutdownRequest()
            return false
        }
        let check = min(policy.idleInterval / 2, .seconds(5))
        while !Task.isCancelled && stream.channel.isActive {
            try? await Task.sleep(for: check)
            if Task.isCancelled { return false }
            guard stream.activity.idleTime >= policy.idleInterval, !stream.activity.isPaused else { continue }
            stream.channel.writeAndFlush(XMLStreamFrame.whitespace, promise: nil)
            let from = self.state.withLock { state in
                state.machine.hostnames.values.compactMap(\.boundHostname).min()
            }
            guard let from else { continue }
            let ping = PingFeature.request(
                from: try? JID(from), to: try? JID(stream.serverDomain), id: self.pending.makeID())
            do {
                _ = try await self.rawRequest(ping, via: .stream(stream), timeout: policy.pingTimeout)
            } catch let error as ComponentError where error.kind == .timeout {
                // Paused meanwhile: the answer may be sitting unread behind our own pause.
                if stream.activity.isPaused { continue }
                // Read from meanwhile: the server is alive, and its answer is queued behind
                // what it wrote before (e.g. a backlog read at the pace of the handlers).
                if stream.activity.idleTime < policy.pingTimeout { continue }
                return true
            } catch {
                return false
            }
        }
        return false
    }

    /// Failures that do not fix themselves, so the reconnect backs off hard: wrong
    /// credentials, and cleartext refused (by our policy, or a server, or a man in the middle,
    /// that would take us off TLS).
    static func isAuthenticationFailure(_ error: any Error) -> Bool {
        guard let negotiation = error as? NegotiationError else { return false }
        return negotiation.kind == .authenticationFailed || negotiation.kind == .handshakeRejected
            || negotiation.kind == .tlsNotOffered
    }

    /// Fails (with a count in the log) what is still queued when shutting down: nothing
    /// will carry it any more.
    func failQueuedWithoutStream() {
        for binding in self.allBindings() where binding.outbound.count > 0 {
            let bound = self.state.withLock { state in
                if case .write = state.machine.send(from: binding.key) { return state.stream != nil }
                return false
            }
            if !bound {
                self.failQueued(binding, reason: "the connection shut down while \(binding.requested) was not connected")
            }
        }
    }

    // MARK: Waiting

    /// Runs `body` on the loop and waits for it.
    func onLoop(_ body: @escaping @Sendable () -> Void) async {
        if self.eventLoop.inEventLoop {
            body()
            return
        }
        try? await self.eventLoop.submit(body).get()
    }

    func requestImmediateReconnect() {
        self.state.withLock { $0.immediateReconnect = true }
    }

    func takePendingImmediateReconnect() -> Bool {
        self.state.withLock { state in
            let value = state.immediateReconnect
            state.immediateReconnect = false
            return value
        }
    }

    /// Switches to XEP-0114 after a fallback: every registered hostname gets its own stream.
    func switchToLegacy(reason: String) {
        let (spawner, bindings) = self.state.withLock { state -> (AsyncStream<Spawn>.Continuation?, [Binding]) in
            let keys = state.machine.fellBackToLegacy()
            return (state.spawner, keys.compactMap { state.bindings[$0] })
        }
        self.emit(.fellBackToLegacy(reason: reason))
        for binding in bindings {
            spawner?.yield(.legacyStream(binding))
        }
    }

    /// Waits until shutdown is requested (returns at once if it already was).
    func waitForShutdownRequest() async {
        let id = self.state.withLock { state -> Int in
            let id = state.nextWaiter
            state.nextWaiter += 1
            return id
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = self.state.withLock { state -> Bool in
                    if state.machine.phase != .running || state.machine.shutdownRequested || Task.isCancelled { return true }
                    state.shutdownWaiters[id] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = self.state.withLock { state in
                state.shutdownWaiters.removeValue(forKey: id)
            }
            waiter?.resume()
        }
    }

    /// Sleeps, returning early on shutdown.
    func sleepUnlessShutdown(_ duration: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await Task.sleep(for: duration) }
            group.addTask { await self.waitForShutdownRequest() }
            await group.next()
            group.cancelAll()
        }
    }

    /// Asks the serving loop to move to another server (XEP-0051).
    func requestTransfer(to target: ConnectTarget) {
        let waiter = self.state.withLock { state -> CheckedContinuation<ConnectTarget?, Never>? in
            guard let waiter = state.transferWaiter else {
                state.transferRequest = target
                return nil
            }
            state.transferWaiter = nil
            return waiter
        }
        waiter?.resume(returning: target)
    }

    /// Waits for a transfer request; `nil` on shutdown or cancellation.
    func nextTransferRequest() async -> ConnectTarget? {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<ConnectTarget?, Never>) in
                let immediate = self.state.withLock { state -> ConnectTarget?? in
                    if state.machine.phase != .running || Task.isCancelled { return .some(nil) }
                    if let request = state.transferRequest {
                        state.transferRequest = nil
                        return .some(request)
                    }
                    state.transferWaiter = continuation
                    return .none
                }
                if let immediate { continuation.resume(returning: immediate) }
            }
        } onCancel: {
            let waiter = self.state.withLock { state -> CheckedContinuation<ConnectTarget?, Never>? in
                let waiter = state.transferWaiter
                state.transferWaiter = nil
                return waiter
            }
            waiter?.resume(returning: nil)
        }
    }
}
