import Testing
import XMPPCore
import XMPPStream

@testable import ComponentKit

/// Issue #13, the SDK's configuration-time checks (items 1, 2, 4, 6, 8).
@Suite("Security configuration")
struct SecurityConfigurationTests {
    private func configuration(host: String = "xmpp.example.com") -> ComponentConfiguration {
        ComponentConfiguration(
            host: host, port: 5270, serverDomain: "example.com", identity: "c.example.com",
            password: Secret("sasl-password-1"))
    }

    // MARK: Item 1: no cleartext when TLS is asked for

    @Test func startTLSNeverSendsALegacyHandshakeInCleartextEvenOnLoopback() {
        for host in ["127.0.0.1", "xmpp.example.com"] {
            var configuration = self.configuration(host: host)
            configuration.tlsMode = .startTLS
            configuration.allowPlaintextHandshake = true
            let error = #expect(throws: NegotiationError.self) {
                try ComponentStream.checkPlaintextHandshakePolicy(
                    configuration: configuration, kind: .xep0114(hostname: "c.example.com"))
            }
            #expect(error?.description.contains("tls") == true, "\(String(describing: error))")
        }
    }

    @Test func legacySecretNeverDefaultsToTheSASLPasswordWhenXEP0225IsEnabled() throws {
        for mode in [ComponentConfiguration.ProtocolMode.auto, .xep0225] {
            var configuration = self.configuration()
            configuration.protocolMode = mode
            let error = #expect(throws: ComponentError.self) { try configuration.secret(for: "c.example.com") }
            #expect(error?.description.contains("sasl-password-1") == false)
            configuration.secrets["c.example.com"] = Secret("own")
            #expect(try configuration.secret(for: "c.example.com").value == "own")
            configuration.legacySecret = Secret("shared-legacy")
            #expect(try configuration.secret(for: "d.example.com").value == "shared-legacy")
        }
        var legacy = self.configuration()
        legacy.protocolMode = .xep0114
        #expect(try legacy.secret(for: "c.example.com").value == "sasl-password-1")
    }

    // MARK: Item 2: no SCRAM in cleartext off loopback without an opt-in

    @Test func cleartextXEP0225OffLoopbackNeedsAnExplicitOptIn() throws {
        var configuration = self.configuration()
        configuration.tlsMode = .none
        let error = #expect(throws: NegotiationError.self) {
            try ComponentStream.checkInsecurePlaintextPolicy(
                configuration: configuration, kind: .xep0225(allowsLegacyFallback: false))
        }
        #expect(error?.description.contains("allow_insecure_plaintext") == true)
        configuration.allowInsecurePlaintext = true
        try ComponentStream.checkInsecurePlaintextPolicy(
            configuration: configuration, kind: .xep0225(allowsLegacyFallback: false))
        var loopback = self.configuration(host: "127.0.0.1")
        loopback.tlsMode = .none
        try ComponentStream.checkInsecurePlaintextPolicy(configuration: loopback, kind: .xep0225(allowsLegacyFallback: false))
    }

    @Test func theDialledAddressDecidesNotOnlyTheConfiguredOne() throws {
        // Configured for loopback in cleartext; a transfer or see-other-host points elsewhere.
        var configuration = self.configuration(host: "127.0.0.1")
        configuration.tlsMode = .none
        try ComponentStream.checkInsecurePlaintextPolicy(
            configuration: configuration, kind: .xep0225(allowsLegacyFallback: false))
        #expect(throws: NegotiationError.self) {
            try ComponentStream.checkInsecurePlaintextPolicy(
                configuration: configuration, kind: .xep0225(allowsLegacyFallback: false), host: "evil.example.net")
        }
        #expect(throws: NegotiationError.self) {
            try ComponentStream.checkPlaintextHandshakePolicy(
                configuration: configuration, kind: .xep0114(hostname: "c.example.com"), host: "evil.example.net")
        }
    }

    // MARK: Item 6: inputs the host rejects are rejected by the SDK too

    @Test func emptyTLSServerNameIsRejected() {
        var configuration = self.configuration()
        configuration.tlsServerName = ""
        let error = #expect(throws: ComponentError.self) { try configuration.validate() }
        #expect(error?.description.contains("tlsServerName") == true)
    }

    @Test func unparsableServerDomainIsRejected() {
        for domain in ["", "not a domain", "user@example.com", "example.com/resource"] {
            var configuration = self.configuration()
            configuration.serverDomain = domain
            let error = #expect(throws: ComponentError.self, "\(domain)") { try configuration.validate() }
            #expect(error?.description.contains("serverDomain") == true)
        }
    }

    @Test func requiringChannelBindingWithoutTLSIsRejected() {
        var configuration = self.configuration(host: "127.0.0.1")
        configuration.tlsMode = .none
        configuration.requireChannelBinding = true
        let error = #expect(throws: ComponentError.self) { try configuration.validate() }
        #expect(error?.description.contains("requireChannelBinding") == true)
    }

    @Test func aSoundConfigurationValidates() throws {
        try self.configuration().validate()
    }

    // MARK: Item 8: secrets never in dump() or mirrors

    @Test func secretsDoNotShowInDumpOrMirrors() {
        var configuration = self.configuration()
        configuration.secrets["x.example.com"] = Secret("per-host-secret-2")
        var output = ""
        dump(configuration, to: &output)
        dump(Secret("standalone-secret-3"), to: &output)
        #expect(!output.contains("sasl-password-1"))
        #expect(!output.contains("per-host-secret-2"))
        #expect(!output.contains("standalone-secret-3"))
        let children = Mirror(reflecting: Secret("standalone-secret-3")).children.map { "\($0.value)" }
        #expect(!children.joined().contains("standalone-secret-3"))
    }
}
