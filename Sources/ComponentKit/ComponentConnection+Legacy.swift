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
        let policy = self.configuration.reconnect
        var delay = policy.initialDelay
        var everBound = false
        while !self.isShuttingDown && !Task.isCancelled && binding.currentState != .removed {
            let started = ContinuousClock.now
            let proceed = binding.state.withLock { state -> Bool in
                guard state == .pending else { return false }
                state = .binding
                return true
            }
            guard proceed else { return }
            do {
                let outcome = try await ComponentStream.connect(
                    configuration: self.configuration, kind: .xep0114(hostname: binding.requested),
                    group: self.eventLoopGroup, router: self, logger: self.logger)
                guard case .connected(let stream) = outcome else { continue }
                let hostname = binding.requested
                let accepted = binding.state.withLock { state -> Bool in
                    guard state == .binding else { return false }
                    state = .bound(hostname)
                    return true
                }
                guard accepted else {
                    await stream.closeGracefully()
                    return
                }
                binding.legacyStream = stream
                self.flushIfPossible(binding)
                everBound = true
                self.recordConnected(stream.info)
                self.emit(.connected(stream.info))
                self.logger.info("hostname bound", metadata: ["component.hostname": "\(hostname)", "component.protocol": "xep0114"])
                self.emit(.bound(hostname: hostname))
                let context = ComponentContext(
                    hostname: hostname, logger: self.handlerLogger(hostname), connection: self, replyTracker: nil)
                await binding.handler.hostnameBound(hostname, in: context)
                binding.resolveWaiters(.success(hostname))

                await withTaskGroup(of: Void.self) { group in
                    group.addTask { await stream.closeFuture.waitIgnoringErrorsUnlessCancelled() }
                    group.addTask { await self.waitForShutdownRequest() }
                    await group.next()
                    group.cancelAll()
                }
                if stream.channel.isActive {
                    await stream.closeGracefully()
                }
                binding.legacyStream = nil
                self.pending.failAll(
                    ComponentError(.connectionClosed, "the stream of \(hostname) closed"), stream: ObjectIdentifier(stream))
                let wasBound = binding.state.withLock { state -> Bool in
                    guard case .bound = state else { return false }
                    state = self.isShuttingDown ? .removed : .pending
                    return true
                }
                if wasBound {
                    self.emit(.unbound(hostname: hostname))
                    await binding.handler.hostnameUnbound(hostname)
                    self.emit(.disconnected(reason: self.isShuttingDown ? "shutdown" : "the server closed the stream of \(hostname)"))
                }
                if self.isShuttingDown {
                    self.removeBinding(binding, reason: "shutdown")
                    return
                }
            } catch {
                binding.state.withLock { if $0 == .binding { $0 = .pending } }
                let reason = String(describing: error)
                self.recordError(reason)
                self.logger.warning(
                    "XEP-0114 stream failed", metadata: ["component.hostname": "\(binding.requested)", "error": "\(reason)"])
                self.emit(.bindFailed(hostname: binding.requested, reason: reason))
                if !everBound, Self.isDefinitive(error) {
                    binding.resolveWaiters(.failure(error))
                    self.removeBinding(binding, reason: "refused")
                    return
                }
            }
            if self.isShuttingDown || Task.isCancelled { return }
            if ContinuousClock.now - started > policy.stableAfter {
                delay = policy.initialDelay
            }
            await self.sleepUnlessShutdown(delay * Double.random(in: 0.5...1.0))
            delay = min(delay * policy.multiplier, policy.maximumDelay)
        }
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
