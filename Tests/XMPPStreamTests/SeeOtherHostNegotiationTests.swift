import Testing
import XMPPCore
import XMPPStream

/// A `see-other-host` while negotiating says whether it came inside TLS: the connection
/// follows it only then.
@Suite("see-other-host during negotiation")
struct SeeOtherHostNegotiationTests {
    let header = StreamHeader(contentNamespace: Namespace.client, from: "example.com", id: "s1", version: "1.0")
    let redirect = StreamError(.seeOtherHost, seeOtherHost: "node2.example.com:5270").element

    func machine() -> ComponentNegotiationStateMachine {
        ComponentNegotiationStateMachine(
            configuration: .init(serverDomain: "example.com", defaultHostname: "component.example.com", tls: .startTLS))
    }

    @Test func insideTLS() {
        var machine = self.machine()
        _ = machine.start()
        _ = machine.streamOpened(self.header)
        _ = machine.received(
            Element("features", namespace: Namespace.stream, children: [Element("starttls", namespace: Namespace.tls)]))
        _ = machine.received(Element("proceed", namespace: Namespace.tls))
        _ = machine.tlsEstablished()
        _ = machine.streamOpened(self.header)
        guard case .fail(let error) = machine.received(self.redirect) else {
            Issue.record("expected a failure")
            return
        }
        #expect(error.kind == .streamError(.seeOtherHost))
        #expect(error.streamError?.seeOtherHost == "node2.example.com:5270")
        #expect(error.streamErrorOverTLS)
    }

    @Test func beforeTLS() {
        var machine = self.machine()
        _ = machine.start()
        _ = machine.streamOpened(self.header)
        guard case .fail(let error) = machine.received(self.redirect) else {
            Issue.record("expected a failure")
            return
        }
        #expect(error.kind == .streamError(.seeOtherHost))
        #expect(!error.streamErrorOverTLS)
    }
}
