import Testing
import XMPPCore
import XMPPStream

@testable import ReferenceServer

@Suite(.timeLimit(.minutes(1))) struct C2SNegotiationStateMachineTests {
    typealias Machine = C2SNegotiationStateMachine

    static let header = StreamHeader(contentNamespace: Namespace.client, to: "example.test", from: "alice@example.test")
    static let auth = Element("auth", namespace: Namespace.sasl, attributes: ["mechanism": "SCRAM-SHA-256"])

    func machine() -> Machine {
        Machine(configuration: .init(serverDomain: "example.test", maxAuthenticationFailures: 2))
    }

    func expectFail(
        _ action: Machine.Action, _ condition: StreamError.Condition, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        guard case .fail(let error, _) = action else {
            Issue.record("expected a stream error, got \(action)", sourceLocation: sourceLocation)
            return
        }
        #expect(error.condition == condition, sourceLocation: sourceLocation)
    }

    /// STARTTLS, SASL and the restart: the bind features are out.
    func authenticated() -> Machine {
        var machine = self.machine()
        _ = machine.streamOpened(Self.header)
        _ = machine.received(Element("starttls", namespace: Namespace.tls))
        _ = machine.tlsEstablished()
        _ = machine.streamOpened(Self.header)
        _ = machine.received(Self.auth)
        _ = machine.authenticationSucceeded(identity: "alice@example.test")
        _ = machine.streamOpened(Self.header)
        return machine
    }

    static func bindRequest(_ resource: String?) -> Element {
        var bind = Element("bind", namespace: Namespace.bind)
        if let resource { bind.append(Element("resource", namespace: Namespace.bind, text: resource)) }
        return IQ(type: .set, id: "b1", payload: bind).element
    }

    @Test func fullNegotiation() {
        var machine = self.machine()
        guard case .openStream(let reply, let offer) = machine.streamOpened(Self.header) else {
            Issue.record("no header")
            return
        }
        #expect(reply.from == "example.test")
        #expect(reply.to == "alice@example.test")
        #expect(reply.contentNamespace == Namespace.client)
        #expect(offer == .startTLS)
        #expect(machine.received(Element("starttls", namespace: Namespace.tls)) == .proceedWithTLS)
        #expect(machine.tlsEstablished() == .none)
        guard case .openStream(_, .sasl) = machine.streamOpened(Self.header) else {
            Issue.record("no SASL offer after TLS")
            return
        }
        #expect(machine.received(Self.auth) == .startSASL(Self.auth))
        let response = Element("response", namespace: Namespace.sasl, text: "abc")
        #expect(machine.received(response) == .continueSASL(response))
        #expect(machine.authenticationSucceeded(identity: "alice@example.test") == .restartStream)
        guard case .openStream(_, .bind) = machine.streamOpened(Self.header) else {
            Issue.record("no bind offer after SASL")
            return
        }
        let request = Self.bindRequest("phone")
        guard case .bind(let iq, let resource) = machine.received(request) else {
            Issue.record("no bind action")
            return
        }
        #expect(iq.requestID == "b1")
        #expect(resource == "phone")
        #expect(!machine.isEstablished)
        machine.bound(try! JID("alice@example.test/phone"))
        #expect(machine.isEstablished)
        #expect(machine.jid?.description == "alice@example.test/phone")
        let message = Element("message", namespace: Namespace.client)
        #expect(machine.received(message) == .established(message))
        #expect(machine.streamClosed() == .closeStream)
    }

    @Test func aBindRequestWithoutResourceLetsTheServerChoose() {
        var machine = self.authenticated()
        guard case .bind(_, let resource) = machine.received(Self.bindRequest(nil)) else {
            Issue.record("no bind action")
            return
        }
        #expect(resource == nil)
    }

    @Test func badBindRequestsGetStanzaErrorsNotAStreamError() {
        var machine = self.authenticated()
        guard
            case .send(let answer) = machine.received(
                IQ(type: .get, id: "b0", payload: Element("bind", namespace: Namespace.bind)).element)
        else {
            Issue.record("a bind get should be answered with an error")
            return
        }
        #expect(IQ(answer)?.error?.condition == .badRequest)
        // The stream stays usable: a proper request then binds.
        guard case .bind = machine.received(Self.bindRequest("ok")) else {
            Issue.record("no bind after a refused request")
            return
        }
    }

    @Test func stanzasBeforeAuthenticationOrBindingEndTheStream() {
        var machine = self.machine()
        _ = machine.streamOpened(Self.header)
        self.expectFail(machine.received(Element("message", namespace: Namespace.client)), .notAuthorized)

        var bindless = self.authenticated()
        self.expectFail(bindless.received(Element("message", namespace: Namespace.client)), .notAuthorized)
    }

    @Test func saslBeforeTLSIsAPolicyViolation() {
        var machine = self.machine()
        _ = machine.streamOpened(Self.header)
        self.expectFail(machine.received(Self.auth), .policyViolation)
    }

    @Test func badHeaders() {
        var wrongNamespace = self.machine()
        self.expectFail(
            wrongNamespace.streamOpened(StreamHeader(contentNamespace: Namespace.componentAccept, to: "example.test")),
            .invalidNamespace)
        var wrongHost = self.machine()
        self.expectFail(wrongHost.streamOpened(StreamHeader(contentNamespace: Namespace.client, to: "other.test")), .hostUnknown)
        var noVersion = self.machine()
        self.expectFail(
            noVersion.streamOpened(StreamHeader(contentNamespace: Namespace.client, to: "example.test", version: nil)),
            .unsupportedVersion)
    }

    @Test func repeatedAuthenticationFailuresEndTheStream() {
        var machine = self.machine()
        _ = machine.streamOpened(Self.header)
        _ = machine.received(Element("starttls", namespace: Namespace.tls))
        _ = machine.tlsEstablished()
        _ = machine.streamOpened(Self.header)
        _ = machine.received(Self.auth)
        #expect(machine.authenticationFailed() == .none)
        #expect(machine.received(Self.auth) == .startSASL(Self.auth))
        self.expectFail(machine.authenticationFailed(), .policyViolation)
    }

    @Test func timeoutBeforeAuthenticationOnly() {
        var waiting = self.machine()
        _ = waiting.streamOpened(Self.header)
        self.expectFail(waiting.authenticationTimedOut(), .connectionTimeout)
        var done = self.authenticated()
        #expect(done.authenticationTimedOut() == .none)
    }
}
