import Testing
import XMPPCore
import XMPPStream

private func features(_ children: Element...) -> Element {
    Element("features", namespace: Namespace.stream, children: children)
}

private let startTLSFeature = Element("starttls", namespace: Namespace.tls)
private let requiredStartTLSFeature = Element(
    "starttls", namespace: Namespace.tls, children: [Element("required", namespace: Namespace.tls)])
private let mechanismsFeature = Element(
    "mechanisms", namespace: Namespace.sasl,
    children: [
        Element("mechanism", namespace: Namespace.sasl, text: "SCRAM-SHA-256"),
        Element("mechanism", namespace: Namespace.sasl, text: "PLAIN"),
    ])
private let bindFeature = Element("bind", namespace: Namespace.component)
private let clientHeader = StreamHeader(contentNamespace: Namespace.client, from: "example.com", id: "s1", version: "1.0")

private func machine(tls: ComponentNegotiationStateMachine.TLSPolicy = .startTLS, auto: Bool = false)
    -> ComponentNegotiationStateMachine
{
    ComponentNegotiationStateMachine(
        configuration: .init(
            serverDomain: "example.com", defaultHostname: "component.example.com", tls: tls, allowsLegacyFallback: auto))
}

private func failureKind(_ action: ComponentNegotiationStateMachine.Action) -> NegotiationError.Kind? {
    if case .fail(let error) = action { return error.kind }
    return nil
}

@Suite("XEP-0225 negotiation state machine")
struct ComponentNegotiationStateMachineTests {
    @Test func fullPathStartTLSThenSASLThenBind() {
        var m = machine()
        #expect(m.start() == .sendHeader)
        #expect(m.outgoingHeader.to == "example.com")
        #expect(m.outgoingHeader.from == "component.example.com")
        #expect(m.outgoingHeader.contentNamespace == Namespace.client)
        #expect(m.outgoingHeader.version == "1.0")
        #expect(m.streamOpened(clientHeader) == .none)
        #expect(m.streamID == "s1")
        #expect(m.received(features(startTLSFeature, mechanismsFeature)) == .send(Element("starttls", namespace: Namespace.tls)))
        #expect(m.received(Element("proceed", namespace: Namespace.tls)) == .startTLS)
        #expect(!m.isSecured)
        #expect(m.tlsEstablished() == .sendHeader)
        #expect(m.isSecured)
        #expect(m.streamOpened(clientHeader) == .none)
        let secured = features(mechanismsFeature)
        #expect(m.received(secured) == .authenticate(features: secured))
        let challenge = Element("challenge", namespace: Namespace.sasl, text: "abc=")
        #expect(m.received(challenge) == .forwardToSASL(challenge))
        let success = Element("success", namespace: Namespace.sasl)
        #expect(m.received(success) == .forwardToSASL(success))
        #expect(m.authenticationSucceeded() == .restartAndSendHeader)
        #expect(m.streamOpened(clientHeader) == .none)
        let final = features(bindFeature)
        #expect(m.received(final) == .negotiated(features: final))
        #expect(m.isNegotiated)
    }

    @Test func noStartTLSWhileRequiredSendsNothingInCleartext() {
        var m = machine()
        _ = m.start()
        _ = m.streamOpened(clientHeader)
        let action = m.received(features(mechanismsFeature))
        #expect(failureKind(action) == .tlsNotOffered)
        // After failing, nothing else is produced (in particular no SASL).
        #expect(failureKind(m.received(features(mechanismsFeature))) != nil)
    }

    @Test func serverRequiringTLSIsRefusedWhenTLSDisabled() {
        var m = machine(tls: .none)
        _ = m.start()
        _ = m.streamOpened(clientHeader)
        #expect(failureKind(m.received(features(requiredStartTLSFeature, mechanismsFeature))) == .serverRequiresTLS)
    }

    @Test func tlsDisabledGoesStraightToSASLWhenTLSOptional() {
        var m = machine(tls: .none)
        _ = m.start()
        _ = m.streamOpened(clientHeader)
        let offered = features(startTLSFeature, mechanismsFeature)
        #expect(m.received(offered) == .authenticate(features: offered))
    }

    @Test func directTLSSkipsStartTLS() {
        var m = machine(tls: .direct)
        #expect(m.isSecured)
        _ = m.start()
        _ = m.streamOpened(clientHeader)
        let offered = features(mechanismsFeature)
        #expect(m.received(offered) == .authenticate(features: offered))
    }

    @Test func tlsFailureFromServer() {
        var m = machine()
        _ = m.start()
        _ = m.streamOpened(clientHeader)
        _ = m.received(features(startTLSFeature))
        #expect(failureKind(m.received(Element("failure", namespace: Namespace.tls))) == .tlsRefusedByServer)
    }

    @Test func saslFailureIsReported() {
        var m = machine(tls: .direct)
        _ = m.start()
        _ = m.streamOpened(clientHeader)
        _ = m.received(features(mechanismsFeature))
        struct Refused: Error, CustomStringConvertible { var description: String { "not-authorized" } }
        let action = m.authenticationFailed(Refused())
        guard case .fail(let error) = action else {
            Issue.record("expected failure, got \(action)")
            return
        }
        #expect(error.kind == .authenticationFailed)
        #expect(error.description == "SASL authentication as component.example.com failed: not-authorized")
    }

    @Test func noMechanismsOffered() {
        var m = machine(tls: .direct)
        _ = m.start()
        _ = m.streamOpened(clientHeader)
        #expect(failureKind(m.received(features())) == .noSASLMechanisms)
    }

    @Test func missingBindFeatureIsAClearError() {
        var m = machine(tls: .direct)
        _ = m.start()
        _ = m.streamOpened(clientHeader)
        _ = m.received(features(mechanismsFeature))
        _ = m.received(Element("success", namespace: Namespace.sasl))
        _ = m.authenticationSucceeded()
        _ = m.streamOpened(clientHeader)
        let action = m.received(features(Element("bind", namespace: Namespace.bind)))
        guard case .fail(let error) = action else {
            Issue.record("expected failure, got \(action)")
            return
        }
        #expect(error.kind == .noComponentBinding)
        #expect(error.message.contains("urn:xmpp:component:0"))
        #expect(error.message.contains("{urn:ietf:params:xml:ns:xmpp-bind}bind"))
    }

    @Test func unexpectedElementsFail() {
        var m = machine()
        _ = m.start()
        _ = m.streamOpened(clientHeader)
        let message = Element("message", namespace: Namespace.client)
        #expect(failureKind(m.received(message)) == .unexpectedElement(message.name))

        var m2 = machine(tls: .direct)
        _ = m2.start()
        _ = m2.streamOpened(clientHeader)
        _ = m2.received(features(mechanismsFeature))
        #expect(failureKind(m2.received(message)) == .unexpectedElement(message.name))
    }

    @Test func streamErrorsAreMapped() {
        var m = machine()
        _ = m.start()
        _ = m.streamOpened(clientHeader)
        let error = StreamError(.hostUnknown, text: "no such domain")
        #expect(failureKind(m.received(error.element)) == .streamError(.hostUnknown))

        var m2 = machine()
        _ = m2.start()
        #expect(failureKind(m2.received(StreamError(.systemShutdown).element)) == .streamError(.systemShutdown))
    }

    @Test func closedDuringNegotiation() {
        var m = machine()
        _ = m.start()
        _ = m.streamOpened(clientHeader)
        _ = m.received(features(startTLSFeature))
        #expect(failureKind(m.connectionClosed()) == .closedDuringNegotiation)
    }

    // MARK: auto mode

    @Test func autoFallsBackOnComponentAcceptHeader() {
        var m = machine(tls: .direct, auto: true)
        _ = m.start()
        let action = m.streamOpened(StreamHeader(contentNamespace: Namespace.componentAccept, id: "x", version: nil))
        guard case .fallBackToLegacy(let reason) = action else {
            Issue.record("expected fallback, got \(action)")
            return
        }
        #expect(reason.contains("jabber:component:accept"))
    }

    @Test func autoFallsBackOnMissingVersionAndOnInvalidNamespaceError() {
        var m = machine(tls: .none, auto: true)
        _ = m.start()
        if case .fallBackToLegacy = m.streamOpened(StreamHeader(contentNamespace: Namespace.client, id: "x", version: nil)) {
        } else {
            Issue.record("expected fallback on a header without version")
        }

        var m2 = machine(tls: .direct, auto: true)
        _ = m2.start()
        if case .fallBackToLegacy = m2.received(StreamError(.invalidNamespace).element) {
        } else {
            Issue.record("expected fallback on invalid-namespace")
        }

        var m3 = machine(tls: .none, auto: true)
        _ = m3.start()
        if case .fallBackToLegacy = m3.connectionClosed() {
        } else {
            Issue.record("expected fallback when the server hangs up on the header")
        }
    }

    @Test func withoutAutoTheSameSignsAreErrors() {
        var m = machine(auto: false)
        _ = m.start()
        #expect(
            failureKind(m.streamOpened(StreamHeader(contentNamespace: Namespace.componentAccept, id: "x", version: nil)))
                == .invalidStreamHeader)
        var m2 = machine(auto: false)
        _ = m2.start()
        #expect(failureKind(m2.connectionClosed()) == .closedDuringNegotiation)
    }

    @Test func autoNeverDowngradesAfterStartTLSWasOffered() {
        var m = machine(auto: true)
        _ = m.start()
        _ = m.streamOpened(clientHeader)
        _ = m.received(features(startTLSFeature))
        _ = m.received(Element("proceed", namespace: Namespace.tls))
        _ = m.tlsEstablished()
        // A misbehaving (or attacked) server now claims to be a component port.
        let action = m.received(StreamError(.invalidNamespace).element)
        #expect(failureKind(action) == .streamError(.invalidNamespace))
    }
}

@Suite("XEP-0114 handshake state machine")
struct LegacyComponentNegotiationStateMachineTests {
    private let acceptHeader = StreamHeader(
        contentNamespace: Namespace.componentAccept, from: "echo.localhost", id: "3BF96D32", version: nil)

    @Test func successfulHandshake() {
        var m = LegacyComponentNegotiationStateMachine(hostname: "echo.localhost", secret: "sEcReT")
        #expect(m.start() == .sendHeader)
        #expect(m.outgoingHeader.to == "echo.localhost")
        #expect(m.outgoingHeader.contentNamespace == Namespace.componentAccept)
        #expect(m.outgoingHeader.version == nil)
        #expect(
            m.streamOpened(acceptHeader)
                == .send(
                    Element("handshake", namespace: Namespace.componentAccept, text: "c9baffe00b849eb7092177dbabf5aa1613e9409f")))
        #expect(m.received(Element("handshake", namespace: Namespace.client)) == .negotiated)
        #expect(m.isNegotiated)
    }

    @Test func wrongSecretIsReportedAsSuch() {
        var m = LegacyComponentNegotiationStateMachine(hostname: "echo.localhost", secret: "wrong")
        _ = m.start()
        _ = m.streamOpened(acceptHeader)
        let action = m.received(StreamError(.notAuthorized).element)
        guard case .fail(let error) = action else {
            Issue.record("expected failure, got \(action)")
            return
        }
        #expect(error.kind == .handshakeRejected)
        #expect(error.message.contains("secret is wrong"))
        #expect(!error.message.contains("wrong\u{0}"))
        #expect(!error.description.contains("sEcReT"))
    }

    @Test func unknownHostAndConflict() {
        var m = LegacyComponentNegotiationStateMachine(hostname: "nope.localhost", secret: "s")
        _ = m.start()
        if case .fail(let error) = m.received(StreamError(.hostUnknown).element) {
            #expect(error.kind == .streamError(.hostUnknown))
            #expect(error.message.contains("nope.localhost"))
        } else {
            Issue.record("expected host-unknown failure")
        }
        var m2 = LegacyComponentNegotiationStateMachine(hostname: "echo.localhost", secret: "s")
        _ = m2.start()
        _ = m2.streamOpened(acceptHeader)
        if case .fail(let error) = m2.received(StreamError(.conflict).element) {
            #expect(error.kind == .streamError(.conflict))
        } else {
            Issue.record("expected conflict failure")
        }
    }

    @Test func headerWithoutIDOrWrongNamespace() {
        var m = LegacyComponentNegotiationStateMachine(hostname: "echo.localhost", secret: "s")
        _ = m.start()
        // No handshake can be computed, but the stream error that usually follows says why.
        #expect(m.streamOpened(StreamHeader(contentNamespace: Namespace.componentAccept, id: "", version: nil)) == .none)
        if case .fail(let error) = m.received(StreamError(.hostUnknown).element) {
            #expect(error.kind == .streamError(.hostUnknown))
        } else {
            Issue.record("expected host-unknown after a header without id")
        }
        var m1 = LegacyComponentNegotiationStateMachine(hostname: "echo.localhost", secret: "s")
        _ = m1.start()
        _ = m1.streamOpened(StreamHeader(contentNamespace: Namespace.componentAccept, version: nil))
        if case .fail(let error) = m1.connectionClosed() {
            #expect(error.kind == .invalidStreamHeader)
        } else {
            Issue.record("expected failure for a header without id")
        }
        var m2 = LegacyComponentNegotiationStateMachine(hostname: "echo.localhost", secret: "s")
        _ = m2.start()
        if case .fail(let error) = m2.streamOpened(clientHeader) {
            #expect(error.kind == .invalidStreamHeader)
        } else {
            Issue.record("expected failure for a jabber:client header")
        }
    }

    @Test func serverHangsUpAfterHandshake() {
        var m = LegacyComponentNegotiationStateMachine(hostname: "echo.localhost", secret: "s")
        _ = m.start()
        _ = m.streamOpened(acceptHeader)
        if case .fail(let error) = m.connectionClosed() {
            #expect(error.kind == .closedDuringNegotiation)
            #expect(error.message.contains("echo.localhost"))
        } else {
            Issue.record("expected failure")
        }
    }
}
