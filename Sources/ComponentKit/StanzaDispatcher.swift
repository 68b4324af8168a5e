public import Logging
public import XMPPCore

/// Delivers stanzas to a handler the way a ``ComponentConnection`` does, enforcing the
/// exactly-one-answer rule for IQ requests.
///
/// For each stanza: the handler runs with a fresh ``ComponentContext``; a
/// ``/XMPPCore/StanzaError`` it throws answers an IQ request with that error, any other
/// error with `internal-server-error`; a request it leaves unanswered is offered to each
/// installed ``ComponentFeature`` (the handler's ``ComponentHandler/features``, then the
/// built-ins), and gets `service-unavailable` when none answers. A second answer the
/// handler tries to send is refused (``ComponentError/Kind/invalidStanza``).
///
/// The connection uses one per bound hostname; tests use one to drive a handler through
/// a test transport (`ComponentKitTesting`'s `TestContext.deliver(_:to:)` does).
public struct StanzaDispatcher: Sendable {
    /// What happened to one delivered stanza.
    public struct Outcome: Sendable {
        /// The answer the dispatcher itself sent for an IQ request (a feature's, a thrown
        /// error's, or `service-unavailable`); `nil` when the handler answered, or the
        /// stanza was not a request.
        public var answer: IQ?
        /// An error the handler threw other than a ``/XMPPCore/StanzaError`` (logged, and
        /// counted by the connection), if any.
        public var handlerError: (any Error)?

        /// Creates an outcome.
        /// - Parameters:
        ///   - answer: The answer the dispatcher sent.
        ///   - handlerError: The unexpected error the handler threw.
        public init(answer: IQ? = nil, handlerError: (any Error)? = nil) {
            self.answer = answer
            self.handlerError = handlerError
        }
    }

    /// The handler stanzas are delivered to.
    public let handler: any ComponentHandler
    let installed: InstalledFeatures

    /// The built-in features of every bound hostname, in the order they are asked:
    /// ``PingFeature``, ``ServiceDiscoveryFeature``, ``SoftwareVersionFeature``.
    /// - Parameter version: What the software-version feature discloses.
    public static func builtInFeatures(version: SoftwareVersion = .sdk) -> [any ComponentFeature] {
        [ServiceDiscoveryFeature(), PingFeature(), SoftwareVersionFeature(version)]
    }

    /// Creates a dispatcher.
    /// - Parameters:
    ///   - handler: The handler.
    ///   - builtInFeatures: The features installed after the handler's own; by default
    ///     ``builtInFeatures(version:)`` with this SDK's version.
    public init(handler: any ComponentHandler, builtInFeatures: [any ComponentFeature] = Self.builtInFeatures()) {
        self.handler = handler
        self.installed = InstalledFeatures(handler: handler, builtIns: builtInFeatures)
    }

    /// Every installed feature, in the order they are asked: the handler's, then the built-ins.
    public var features: [any ComponentFeature] {
        self.installed.features
    }

    /// The hostname's service-discovery information as installed (see ``ComponentContext/discoInfo``).
    public var discoInfo: DiscoInfo {
        self.installed.discoInfo
    }

    /// A context for binding events (``ComponentHandler/hostnameBound(_:in:)``), with no
    /// request to answer.
    /// - Parameters:
    ///   - hostname: The bound hostname.
    ///   - logger: The handler's logger.
    ///   - transport: What the context works through.
    public func context(hostname: String, logger: Logger, transport: any ComponentTransport) -> ComponentContext {
        ComponentContext(
            hostname: hostname, logger: logger, transport: transport, replyTracker: nil, installed: self.installed)
    }

    /// Delivers one stanza to the handler and makes sure an IQ request gets exactly one answer.
    /// - Parameters:
    ///   - stanza: The stanza, addressed to `hostname` or an address under it.
    ///   - hostname: The bound hostname.
    ///   - logger: The handler's logger.
    ///   - transport: What the handler's context works through; answers go out through it.
    /// - Returns: What happened (the answer sent by the dispatcher, an unexpected error).
    @discardableResult
    public func dispatch(
        _ stanza: Stanza, hostname: String, logger: Logger, transport: any ComponentTransport
    ) async -> Outcome {
        var request: IQ?
        if case .iq(let iq) = stanza, iq.type.isRequest {
            request = iq
        }
        let tracker = request.map { IQReplyTracker(requestID: $0.requestID) }
        let context = ComponentContext(
            hostname: hostname, logger: logger, transport: transport, replyTracker: tracker, installed: self.installed)
        var outcome = Outcome()
        do {
            try await self.handler.handle(stanza, in: context)
        } catch let error as StanzaError {
            if let request, let tracker, tracker.markAnswered() {
                outcome.answer = request.errorResult(error)
            }
        } catch is CancellationError where Task.isCancelled {
            // The connection is stopping and cancelled the handler: nothing to answer with.
            return outcome
        } catch {
            outcome.handlerError = error
            logger.error("handler threw", metadata: ["error": "\(error)", "stanza.id": "\(stanza.id ?? "-")"])
            if let request, let tracker, tracker.markAnswered() {
                outcome.answer = request.errorResult(StanzaError(.internalServerError))
            }
        }
        if let request, let tracker, !tracker.isAnswered {
            let answer = await self.featureAnswer(to: request, in: context)
            if tracker.markAnswered() {
                outcome.answer = answer
            }
        }
        if let answer = outcome.answer {
            do {
                try await transport.send(.iq(Self.fromHostname(answer, hostname: hostname)))
            } catch {
                logger.warning(
                    "could not send an IQ answer", metadata: ["error": "\(error)", "stanza.id": "\(answer.requestID)"])
            }
        }
        return outcome
    }

    /// The first installed feature's answer, or `service-unavailable`.
    private func featureAnswer(to request: IQ, in context: ComponentContext) async -> IQ {
        for feature in self.installed.features {
            do {
                if let answer = try await feature.answer(request, in: context) {
                    return answer
                }
            } catch let error as StanzaError {
                return request.errorResult(error)
            } catch {
                context.logger.error(
                    "feature threw", metadata: ["error": "\(error)", "stanza.id": "\(request.requestID)"])
                return request.errorResult(StanzaError(.internalServerError))
            }
        }
        return request.errorResult(StanzaError(.serviceUnavailable))
    }

    private static func fromHostname(_ iq: IQ, hostname: String) -> IQ {
        var iq = iq
        if iq.element["from"] == nil {
            iq.element["from"] = hostname
        }
        return iq
    }
}
