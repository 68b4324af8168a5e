import CoreMetrics
import Logging
import NIOCore
import Synchronization
import XMPPCore
import XMPPStream

extension ComponentConnection {
    /// Connects (and reconnects, with backoff and jitter) the XEP-0225 stream until shutdown.
    func connectionLoop() async throws {
        let policy = self.configuration.reconnect
        var failures = 0
        var delay = policy.initialDelay
        let configured = ConnectTarget(host: self.configuration.host, port: self.configuration.port)
        while !self.isShuttingDown && !Task.isCancelled {
            let target = self.takeRedirectTarget() ?? configured
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
                }
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
                delay = policy.initialDelay
            }
            let wait = max(delay * Double.random(in: 0.5...1.0), penalty)
            self.logger.debug("reconnecting", metadata: ["delay": "\(wait)"])
            await self.sleepUnlessShutdown(wait)
            delay = min(delay * policy.multiplier, policy.maximumDelay)
        }
    }

    func openStream(to target: ConnectTarget) async throws -> ComponentStream.Outcome {
        try await ComponentStream.connect(
            configuration: self.configuration, target: target,
            kind: .xep0225(allowsLegacyFallback: self.configuration.protocolMode == .auto),
            group: self.eventLoopGroup, router: self, logger: self.logger)
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
            if isNew { self.recordConnected(stream.info) }
            self.setCurrentStream(stream)
            if isNew {
                self.emit(.connected(stream.info))
                announced = stream
            }
            await self.bindAllPending(on: stream)

            enum Wake: Sendable {
                case closed
                case shutdown
                case transfer(ConnectTarget)
                case dead
            }
            let current = stream
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
                    stream = current
                    continue
                }
            case .shutdown:
                self.drainOutboundBeforeShutdown()
                await self.unbindAllForShutdown(on: current)
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

    /// Bookkeeping after a stream is gone; returns an extra delay before reconnecting.
    private func streamEnded(_ stream: ComponentStream) async -> Duration {
        let streamError = stream.lastStreamError
        self.setCurrentStream(nil)
        self.pending.failAll(
            ComponentError(.connectionClosed, "the stream closed before the answer came"), stream: ObjectIdentifier(stream))
        let bindings = self.allBindings()
        for binding in bindings {
            let wasBound = binding.state.withLock { state -> Bool in
                guard case .bound = state else {
                    if state != .removed { state = .pending }
                    return false
                }
                state = .pending
                return true
            }
            if wasBound {
                self.emit(.unbound(hostname: binding.requested))
                await binding.handler.hostnameUnbound(binding.requested)
            }
        }
        if self.isShuttingDown {
            for binding in bindings {
                self.removeBinding(binding, reason: "shut down")
            }
            self.emit(.disconnected(reason: "shutdown"))
            return .zero
        }
        var reason = "the server closed the stream"
        var penalty: Duration = .zero
        if let error = streamError {
            reason = "the server ended the stream: \(error)"
            switch error.condition {
            case .seeOtherHost:
                if let text = error.seeOtherHost,
                    let target = ConnectTarget.parse(text, defaultPort: self.configuration.port)
                {
                    self.logger.notice("the server sent us to another host", metadata: ["target": "\(target)"])
                    self.setRedirectTarget(target)
                    self.requestImmediateReconnect()
                }
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

    /// XEP-0051: connect to the new server while the old stream still serves, then close
    /// the old stream, re-bind every hostname on the new one and flush the queues.
    /// Returns the new stream, or `nil` when the new server could not be reached.
    private func transfer(from old: ComponentStream, to target: ConnectTarget) async -> ComponentStream? {
        self.logger.notice("connection transfer requested", metadata: ["target": "\(target)"])
        self.emit(.connecting(host: target.host, port: target.port))
        let outcome: ComponentStream.Outcome
        do {
            outcome = try await self.openStream(to: target)
        } catch {
            self.logger.warning("connection transfer failed; staying on the current server", metadata: ["error": "\(error)"])
            self.recordError("transfer to \(target) failed: \(error)")
            return nil
        }
        guard case .connected(let next) = outcome else {
            self.logger.warning("the transfer target is not a XEP-0225 server; staying on the current server")
            return nil
        }
        // Stop taking work on the old stream: its hostnames are bound again on the new one.
        self.setCurrentStream(nil)
        for binding in self.allBindings() {
            binding.state.withLock { state in
                if case .bound = state { state = .pending }
            }
        }
        await old.closeGracefully()
        self.pending.failAll(
            ComponentError(.connectionClosed, "the stream was transferred before the answer came"), stream: ObjectIdentifier(old))
        return next
    }

    /// Checks an idle stream: whitespace, then an XEP-0199 ping to the server. Returns
    /// `true` when the server did not answer in time (the link is dead); runs until
    /// cancelled otherwise.
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
            guard stream.activity.idleTime >= policy.idleInterval else { continue }
            stream.channel.writeAndFlush(XMLStreamFrame.whitespace, promise: nil)
            guard let from = self.allBindings().compactMap(\.boundHostname).first else { continue }
            let ping = PingFeature.request(
                from: try? JID(from), to: try? JID(self.configuration.serverDomain), id: self.pending.makeID())
            do {
                _ = try await self.rawRequest(ping, via: .stream(stream), timeout: policy.pingTimeout)
            } catch let error as ComponentError where error.kind == .timeout {
                return true
            } catch {
                return false
            }
        }
        return false
    }

    static func isAuthenticationFailure(_ error: any Error) -> Bool {
        guard let negotiation = error as? NegotiationError else { return false }
        return negotiation.kind == .authenticationFailed || negotiation.kind == .handshakeRejected
    }

    /// Fails (with a count in the log) what is still queued when shutting down without a stream.
    func drainOutboundBeforeShutdown() {
        for binding in self.allBindings() where binding.outbound.count > 0 && self.stream(for: binding) == nil {
            self.failQueued(binding, reason: "the connection shut down while \(binding.requested) was not connected")
        }
    }
}
