import Testing
import XMPPCore
import XMPPStream

@testable import ReferenceServer

@Suite struct ServerComponentNegotiationStateMachineTests {
    typealias Machine = ServerComponentNegotiationStateMachine

    static let header = StreamHeader(contentNamespace: Namespace.client, to: "example.test", from: "component.example.test")
    static let auth = Element("auth", namespace: Namespace.sasl, attributes: ["mechanism": "SCRAM-SHA-256"])

    func machine(tls: Bool = true, requireTLS: Bool = true) -> Machine {
        Machine(configuration: .init(serverDomain: "example.test", tlsAvailable: tls, requireTLS: requireTLS))
    }

    func expectFail(
        _ action: Machine.Action, _ condition: StreamError.Condition, headerSent: Bool,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        guard case .fail(let error, let header) = action else {
            Issue.record("expected a stream error, got \(action)", sourceLocation: sourceLocation)
            return
        }
        #expect(error.condition == condition, sourceLocation: sourceLocation)
        #expect((header != nil) == headerSent, sourceLocation: sourceLocation)
        if let header {
            #expect(header.from == "example.test", sourceLocation: sourceLocation)
        }
    }

    /// Runs a machine through STARTTLS and SASL to the bind features.
    func negotiated() -> Machine {
        var machine = self.machine()
        _ = machine.streamOpened(Self.header)
        _ = machine.received(Element("starttls", namespace: Namespace.tls))
        _ = machine.tlsEstablished()
        _ = machine.streamOpened(Self.header)
        _ = machine.received(Self.auth)
        _ = machine.authenticationSucceeded(identity: "component.example.test")
        _ = machine.streamOpened(Self.header)
        return machine
    }

    @Test func fullNegotiation() {
        var machine = self.machine()
        guard case .openStream(let reply, let offer) = machine.streamOpened(Self.header) else {
            Issue.record("no header")
            return
        }
        #expect(reply.from == "example.test")
        #expect(reply.to == "component.example.test")
        #expect(reply.version == "1.0")
        #expect(reply.contentNamespace == Namespace.client)
        #expect((reply.id ?? "").count == 32)
        #expect(machine.streamID == reply.id)
        #expect(offer == .init(startTLS: true, startTLSRequired: true))

        #expect(machine.received(Element("starttls", namespace: Namespace.tls)) == .proceedWithTLS)
        #expect(machine.tlsEstablished() == .none)
        #expect(machine.isSecured)

        guard case .openStream(let second, let secured) = machine.streamOpened(Self.header) else {
            Issue.record("no second header")
            return
        }
        #expect(second.id != reply.id)
        #expect(secured == .init(sasl: true))
        #expect(machine.received(Self.auth) == .startSASL(Self.auth))
        let response = Element("response", namespace: Namespace.sasl, text: "abc")
        #expect(machine.received(response) == .continueSASL(response))
        #expect(machine.authenticationSucceeded(identity: "component.example.test") == .restartStream)
        #expect(machine.authenticatedIdentity == "component.example.test")

        guard case .openStream(_, let final) = machine.streamOpened(Self.header) else {
            Issue.record("no third header")
            return
        }
        #expect(final == .init(bind: true, streamManagement: true))
        #expect(machine.isEstablished)
        let iq = Element("iq", namespace: Namespace.client, attributes: ["type": "set", "id": "1"])
        #expect(machine.received(iq) == .established(iq))
        #expect(machine.authenticationTimedOut() == .none)
        #expect(machine.streamClosed() == .closeStream)
    }

    @Test func wrongNamespaceIsInvalidNamespace() {
        var machine = self.machine()
        let header = StreamHeader(contentNamespace: Namespace.componentAccept, to: "example.test")
        expectFail(machine.streamOpened(header), .invalidNamespace, headerSent: true)
    }

    @Test func wrongDomainIsHostUnknown() {
        var machine = self.machine()
        expectFail(
            machine.streamOpened(StreamHeader(contentNamespace: Namespace.client, to: "other.test")), .hostUnknown,
            headerSent: true)
        var missing = self.machine()
        expectFail(missing.streamOpened(StreamHeader(contentNamespace: Namespace.client)), .hostUnknown, headerSent: true)
    }

    @Test func missingVersionIsUnsupportedVersion() {
        var machine = self.machine()
        expectFail(
            machine.streamOpened(StreamHeader(contentNamespace: Namespace.client, to: "example.test", version: nil)),
            .unsupportedVersion, headerSent: true)
    }

    @Test func saslBeforeTLSIsRefusedWhenTLSIsRequired() {
        var machine = self.machine()
        _ = machine.streamOpened(Self.header)
        expectFail(machine.received(Self.auth), .policyViolation, headerSent: false)
    }

    @Test func saslWithoutTLSWhenNotRequired() {
        var optional = self.machine(requireTLS: false)
        #expect(optional.streamOpened(Self.header).offer == .init(startTLS: true, startTLSRequired: false, sasl: true))
        #expect(optional.received(Self.auth) == .startSASL(Self.auth))

        var noTLS = self.machine(tls: false, requireTLS: false)
        #expect(noTLS.streamOpened(Self.header).offer == .init(sasl: true))
        expectFail(noTLS.received(Element("starttls", namespace: Namespace.tls)), .policyViolation, headerSent: false)
    }

    @Test func stanzaBeforeAuthenticationIsNotAuthorized() {
        var machine = self.machine()
        _ = machine.streamOpened(Self.header)
        expectFail(machine.received(Element("message", namespace: Namespace.client)), .notAuthorized, headerSent: false)

        var secured = self.machine()
        _ = secured.streamOpened(Self.header)
        _ = secured.received(Element("starttls", namespace: Namespace.tls))
        _ = secured.tlsEstablished()
        _ = secured.streamOpened(Self.header)
        _ = secured.received(Self.auth)
        expectFail(secured.received(Element("iq", namespace: Namespace.client)), .notAuthorized, headerSent: false)
    }

    @Test func threeFailuresArePolicyViolation() {
        var machine = self.machine(tls: false, requireTLS: false)
        _ = machine.streamOpened(Self.header)
        for _ in 1...2 {
            #expect(machine.received(Self.auth) == .startSASL(Self.auth))
            #expect(machine.authenticationFailed() == .none)
        }
        #expect(machine.received(Self.auth) == .startSASL(Self.auth))
        expectFail(machine.authenticationFailed(), .policyViolation, headerSent: false)
    }

    @Test func authenticationTimeout() {
        var fresh = self.machine()
        expectFail(fresh.authenticationTimedOut(), .connectionTimeout, headerSent: true)
        var started = self.machine()
        _ = started.streamOpened(Self.header)
        expectFail(started.authenticationTimedOut(), .connectionTimeout, headerSent: false)
        var done = self.negotiated()
        #expect(done.authenticationTimedOut() == .none)
    }

    @Test func peerStreamErrorClosesTheStream() {
        var machine = self.machine()
        _ = machine.streamOpened(Self.header)
        #expect(machine.received(StreamError(.undefinedCondition).element) == .closeStream)
        #expect(machine.received(Self.auth) == .none)
    }
}

extension ServerComponentNegotiationStateMachine.Action {
    var offer: ServerComponentNegotiationStateMachine.Offer? {
        if case .openStream(_, let offer) = self { return offer }
        return nil
    }
}
