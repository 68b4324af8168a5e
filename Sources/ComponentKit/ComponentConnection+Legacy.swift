import Logging
import NIOCore
import Synchronization
import XMPPCore
import XMPPStream

extension ComponentConnection {
    /// Keeps one hostname's XEP-0114 stream up until the hostname is unbound or the
    /// connection shuts down: connect, handshake, serve, and reconnect with backoff.
    ///
    /// A definitive refusal on the first attempt (wrong secret, unknown host, conflict,
    /// plaintext refused by policy) removes the hostname and fails its ``bind(_:handler:)``;
    /// after the hostname was served once, every failure is retried with backoff.
    func superviseLegacyStream(_ binding: Binding) async {
        binding.legacySupervised.store(true, ordering: .releasing)
        defer { binding.legacySupervised.store(false, ordering: .releasing) }
        let policy = self.configuration.reconnect
        var backoff = Backoff(policy: policy)
        var everBound = false
        while !self.isShuttingDown && !Task.isCancelled {
            let started = ContinuousClock.now
            guard self.state.withLock({ $0.machine.legacyConnecting(binding.key) }) else { return }
            do {
                let attempt = ConnectAttempt()
                let outcome = try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        await self.waitForShutdownRequest()
                        if !Task.isCancelled { attempt.abandon() }
                    }
                    defer { group.cancelAll() }
                    return try await ComponentStream.connect(
                        configuration: self.configuration, kind: .xep0114(hostname: binding.requested),
                        group: self.eventLoop, channelFactory: self.channelFactory, router: self, logger: self.logger,
                        attempt: attempt)
                }
                guard case .connected(let stream) = outcome else { continue }
                let hostname = binding.requested
                let accepted = await self.onLoopReturning { () -> Bool in
                    guard case .bound = self.state.withLock({ $0.machine.legacyConnected(binding.key) }) else { return false }
                    binding.legacyStream = stream
                    binding.mailbox.post(.bound(hostname))
                    self.flushQueue(binding)
                    return true
                }
                guard accepted == true else {
                    await stream.closeGracefully()
                    return
                }
                everBound = true
                self.recordConnected(stream.info)
                self.emit(.connected(stream.info))
                self.logger.info(
                    "hostname bound", metadata: ["component.hostname": "\(hostname)", "component.protocol": "xep0114"])
                self.emit(.bound(hostname: hostname))
                binding.resolveWaiters(.success(hostname))

                await withTaskGroup(of: Void.self) { group in
                    group.addTask { await stream.closeFuture.waitIgnoringErrorsUnlessCancelled() }
                    group.addTask { await self.waitForShutdownRequest() }
                    await group.next()
                    group.cancelAll()
                }
                if self.configuration.legacyAcknowledgements, !self.isShuttingDown,
                    stream.acknowledgements.phase == .requested
                {
                    self.logger.error(
                        """
                        the XEP-0114 stream ended and the server never answered <enable xmlns='urn:xmpp:sm:3'/>: \
                        its listener does not take acknowledgements; turn legacyAcknowledgements \
                        (host.toml: [server] legacy_acknowledgements) off for this server
                        """,
                        metadata: ["component.hostname": "\(hostname)"])
                }
                if stream.channel.isActive {
                    if self.isShuttingDown {
                        if await self.askToStopRouting(hostname, on: stream) {
                            // Routed elsewhere from now on, but a stanza another cluster node
                            // picked this stream for just before may still be on its way: the
                            // stream is closed once it has been quiet for a moment.
                            await self.answerReceived(binding, quietFor: .milliseconds(150), on: stream)
                        } else {
                            await self.answerReceived(binding)
                        }
                    }
                    await stream.closeGracefully()
                }
                await self.onLoop {
                    binding.legacyStream = nil
                    self.pending.failAll(
                        ComponentError(.connectionClosed, "the stream of \(hostname) closed"), stream: ObjectIdentifier(stream))
                    guard let bound = self.state.withLock({ $0.machine.legacyClosed(binding.key) }) else { return }
                    if self.isShuttingDown {
                        self.removeBindingForGood(binding, reason: "shut down", unboundHostname: bound)
                    } else {
                        self.emit(.unbound(hostname: bound))
                        binding.mailbox.post(.unbound(bound))
                    }
                }
                self.emit(.disconnected(reason: self.isShuttingDown ? "shutdown" : "the server closed the stream of \(hostname)"))
            } catch {
                let definitive = !everBound && Self.isDefinitive(error)
                self.state.withLock { $0.machine.legacyFailed(binding.key, definitive: definitive) }
                let reason = String(describing: error)
                self.recordError(reason)
                self.logger.warning(
                    "XEP-0114 stream failed", metadata: ["component.hostname": "\(binding.requested)", "error": "\(reason)"])
                self.emit(.bindFailed(hostname: binding.requested, reason: reason))
                if definitive {
                    binding.resolveWaiters(.failure(error))
                    self.removeBindingForGood(binding, reason: "refused")
                    return
                }
            }
            if self.isShuttingDown || Task.isCancelled { return }
            if ContinuousClock.now - started > policy.stableAfter {
                backoff.reset()
            }
            await self.sleepUnlessShutdown(backoff.next())
        }
    }

    /// Before a shutdown closes a hostname's XEP-0114 stream: asks the server to stop
    /// routing the hostname to this stream while the stream stays up, with XEP-0225's
    /// `<unbind/>` sent as an IQ from the hostname to the server's domain:
    ///
    /// ```xml
    /// <iq type='set' from='search.example.com' to='example.com' id='…'>
    ///   <unbind xmlns='urn:xmpp:component:0'><hostname>search.example.com</hostname></unbind>
    /// </iq>
    /// ```
    ///
    /// XEP-0114 has no unbind, so this is an extension: a server that knows it (ejabberd with
    /// this project's `mod_component_balancing`) answers `result` and routes the hostname's
    /// next stanzas to its other connections while what it already queued for this one
    /// still arrives and is answered; any other server answers an error, or not at all
    /// (bounded), and the stream is closed as before. Returns whether the server agreed.
    @discardableResult
    func askToStopRouting(_ hostname: String, on stream: ComponentStream, timeout: Duration = .seconds(2)) async -> Bool {
        var iq = HostnameBinding.unbindRequest(id: self.pending.makeID(), hostname: hostname)
        iq.element["from"] = hostname
        iq.element["to"] = stream.serverDomain
        do {
            let answer = try await self.rawRequest(iq, via: .stream(stream), timeout: timeout)
            let agreed = answer.type == .result
            self.logger.debug(
                agreed ? "the server stopped routing to this stream" : "the server does not know <unbind/> on XEP-0114",
                metadata: ["component.hostname": "\(hostname)"])
            return agreed
        } catch {
            return false
        }
    }

    /// Before a shutdown closes a hostname's XEP-0114 stream: waits (bounded) until its
    /// handler has handled every stanza received so far (including what keeps arriving
    /// meanwhile, until a moment when none waits), so that their answers go out on the
    /// stream before `</stream:stream>`. XEP-0114 has no unbind: closing the stream is the
    /// only way to stop the server routing to this connection, and nothing may be written
    /// after the close, so an answer not written by then is lost without an error.
    ///
    /// With `quietFor` and the stream: also until nothing was read from it for that long.
    func answerReceived(
        _ binding: Binding, timeout: Duration = .seconds(5), quietFor quiet: Duration? = nil, on stream: ComponentStream? = nil
    ) async {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline, !Task.isCancelled {
            let quietEnough = quiet.map { quiet in stream.map { $0.activity.idleTime >= quiet } ?? true } ?? true
            if binding.mailbox.isIdle && quietEnough { return }
            try? await Task.sleep(for: .milliseconds(1))
        }
    }

    /// During a shutdown in XEP-0114 mode: waits (bounded) until every hostname's stream is
    /// closed, so that the handler loops, which answer what arrived before the close, are
    /// not cancelled before.
    func waitForLegacyStreamsToClose(timeout: Duration = .seconds(15)) async {
        let deadline = ContinuousClock.now + timeout
        while self.allBindings().contains(where: { $0.legacyStream != nil || $0.legacySupervised.load(ordering: .acquiring) }),
            ContinuousClock.now < deadline,
            !Task.isCancelled
        {
            try? await Task.sleep(for: .milliseconds(5))
        }
    }

    /// Runs `body` on the loop and returns its result (`nil` if the loop is gone).
    func onLoopReturning<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T? {
        if self.eventLoop.inEventLoop { return body() }
        return try? await self.eventLoop.submit(body).get()
    }

    /// Whether a connection error will not go away by retrying.
    static func isDefinitive(_ error: any Error) -> Bool {
        guard let negotiation = error as? NegotiationError else { return false }
        switch negotiation.kind {
        case .handshakeRejected, .tlsNotOffered, .serverRequiresTLS, .invalidStreamHeader,
            .streamError(.hostUnknown), .streamError(.conflict), .streamError(.notAuthorized):
            return true
        default:
            return false
        }
    }
}
