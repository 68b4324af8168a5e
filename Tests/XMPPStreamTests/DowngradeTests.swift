import Testing
import XMPPCore
import XMPPStream

/// Issue #13 item 1: with `tls = "starttls"`, `auto` never falls back to XEP-0114 (which has
/// no STARTTLS, so its handshake would go in cleartext). Every sign of a component port is
/// an error naming the setting to change.
@Suite("No cleartext downgrade in auto mode")
struct DowngradeTests {
    private func machine(tls: ComponentNegotiationStateMachine.TLSPolicy) -> ComponentNegotiationStateMachine {
        ComponentNegotiationStateMachine(
            configuration: .init(
                serverDomain: "example.com", defaultHostname: "component.example.com", tls: tls,
                allowsLegacyFallback: true))
    }

    private func failure(_ action: ComponentNegotiationStateMachine.Action) -> NegotiationError? {
        if case .fail(let error) = action { return error }
        return nil
    }

    @Test func componentAcceptHeaderUnderStartTLSIsAnErrorNamingTheSetting() throws {
        var m = self.machine(tls: .startTLS)
        _ = m.start()
        let action = m.streamOpened(StreamHeader(contentNamespace: Namespace.componentAccept, id: "mitm", version: nil))
        let error = try #require(self.failure(action), "expected a failure, got \(action)")
        #expect(error.description.contains("tls"))
        #expect(error.description.contains("direct"))
    }

    @Test func everyOtherLegacySignUnderStartTLSIsAnError() {
        var noVersion = self.machine(tls: .startTLS)
        _ = noVersion.start()
        #expect(
            self.failure(noVersion.streamOpened(StreamHeader(contentNamespace: Namespace.client, id: "x", version: nil))) != nil)

        var invalidNamespace = self.machine(tls: .startTLS)
        _ = invalidNamespace.start()
        #expect(self.failure(invalidNamespace.received(StreamError(.invalidNamespace).element)) != nil)

        var hangUp = self.machine(tls: .startTLS)
        _ = hangUp.start()
        #expect(self.failure(hangUp.connectionClosed()) != nil)
    }

    @Test func directTLSAndNoTLSMayStillFallBack() {
        for tls in [ComponentNegotiationStateMachine.TLSPolicy.direct, .none] {
            var m = self.machine(tls: tls)
            _ = m.start()
            let action = m.streamOpened(StreamHeader(contentNamespace: Namespace.componentAccept, id: "x", version: nil))
            if case .fallBackToLegacy = action {
            } else {
                Issue.record("tls \(tls): expected a fallback, got \(action)")
            }
        }
    }
}
