import ComponentKit
import Foundation
import Testing

@testable import ComponentHost
@testable import StockPlugins

@Suite("Configuration")
struct ConfigurationTests {
    @Test func validFileIsDecoded() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let path = try Fixtures.write(in: directory, Fixtures.configuration(extra: "[component.options]\nmax_keys = 3"))
        let configuration = try HostConfiguration.load(path: path, environment: [:], registry: .stock)
        #expect(configuration.server.host == "127.0.0.1")
        #expect(configuration.server.port == 1)
        #expect(configuration.server.protocolMode == .xep0225)
        #expect(configuration.server.tls == .startTLS)
        #expect(configuration.auth.identity == "component.example.com")
        #expect(configuration.auth.password.value == Fixtures.password)  // trailing newline dropped
        #expect(configuration.auth.passwordSource == .file("\(directory.path)/password"))
        #expect(configuration.components.map(\.hostname) == ["echo.example.com", "kv.example.com"])
        #expect(configuration.components[0].options.string("prefix") == "> ")
        #expect(configuration.components[1].options.integer("max_keys") == 3)
        #expect(configuration.components[1].options.boolean("read_only") == false)  // default filled in
        #expect(configuration.path == path)
        let kit = configuration.componentConfiguration
        #expect(kit.serverDomain == "example.com")
        #expect(kit.password.value == Fixtures.password)
    }

    /// `[limits]` reaches the connection; too small a budget is refused with the key.
    @Test func limitsReachTheConnection() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let text = Fixtures.configuration().replacingOccurrences(
            of: "[admin]",
            with: "[limits]\nhostname_stanzas = 100\nhostname_bytes = 1048576\nconnection_bytes = 8388608\n\n[admin]")
        let configuration = try HostConfiguration.load(
            path: try Fixtures.write(in: directory, text), environment: [:], registry: .stock)
        let kit = configuration.componentConfiguration
        #expect(kit.hostnameBudget == HostnameBudget(maxStanzas: 100, maxBytes: 1 << 20))
        #expect(kit.connectionBudget == ConnectionBudgetPolicy(maxBytes: 8 << 20))
        // Defaults when absent.
        let plain = try HostConfiguration.load(
            path: try Fixtures.write(in: directory, Fixtures.configuration()), environment: [:], registry: .stock)
        #expect(plain.componentConfiguration.hostnameBudget == HostnameBudget())

        let small = Fixtures.configuration().replacingOccurrences(
            of: "[admin]", with: "[limits]\nhostname_bytes = 1000\n\n[admin]")
        let error = #expect(throws: ConfigurationError.self) {
            try HostConfiguration.load(path: try Fixtures.write(in: directory, small), environment: [:], registry: .stock)
        }
        #expect(error.map { "\($0)" }?.hasSuffix("limits.hostname_bytes: expected at least 65536, found 1000") == true)
    }

    /// `acknowledgements` in `[server]` reaches the connection (on unless turned off); a
    /// value that is not a boolean is refused with the key.
    @Test func acknowledgementsReachTheConnection() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let plain = try HostConfiguration.load(
            path: try Fixtures.write(in: directory, Fixtures.configuration()), environment: [:], registry: .stock)
        #expect(plain.componentConfiguration.acknowledgements)
        let off = Fixtures.configuration().replacingOccurrences(of: "[server]", with: "[server]\nacknowledgements = false")
        let configuration = try HostConfiguration.load(
            path: try Fixtures.write(in: directory, off), environment: [:], registry: .stock)
        #expect(!configuration.componentConfiguration.acknowledgements)
        let wrong = Fixtures.configuration().replacingOccurrences(of: "[server]", with: "[server]\nacknowledgements = \"yes\"")
        let error = #expect(throws: ConfigurationError.self) {
            try HostConfiguration.load(path: try Fixtures.write(in: directory, wrong), environment: [:], registry: .stock)
        }
        #expect(error.map { "\($0)" }?.contains("server.acknowledgements") == true, "\(String(describing: error))")
    }

    /// `legacy_acknowledgements` (XEP-0114 streams, for ejabberd's `ejabberd_service_acks`)
    /// is off unless turned on, and refused with its key when not a boolean.
    @Test func legacyAcknowledgementsAreOptIn() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let plain = try HostConfiguration.load(
            path: try Fixtures.write(in: directory, Fixtures.configuration()), environment: [:], registry: .stock)
        #expect(!plain.componentConfiguration.legacyAcknowledgements)
        let on = Fixtures.configuration().replacingOccurrences(of: "[server]", with: "[server]\nlegacy_acknowledgements = true")
        let configuration = try HostConfiguration.load(
            path: try Fixtures.write(in: directory, on), environment: [:], registry: .stock)
        #expect(configuration.componentConfiguration.legacyAcknowledgements)
        let wrong = Fixtures.configuration().replacingOccurrences(
            of: "[server]", with: "[server]\nlegacy_acknowledgements = 1")
        let error = #expect(throws: ConfigurationError.self) {
            try HostConfiguration.load(path: try Fixtures.write(in: directory, wrong), environment: [:], registry: .stock)
        }
        #expect(
            error.map { "\($0)" }?.contains("server.legacy_acknowledgements") == true, "\(String(describing: error))")
    }

    @Test func exampleConfigurationIsValid() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let example = try String(contentsOfFile: Self.repositoryRoot + "/Examples/config/host.toml", encoding: .utf8)
        let path = try Fixtures.write(
            in: directory, example.replacingOccurrences(of: "/etc/component-host/password", with: "password"))
        let configuration = try HostConfiguration.load(path: path, environment: [:], registry: .stock)
        #expect(configuration.metricsListen == HostConfiguration.ListenAddress(host: "127.0.0.1", port: 9464))
        #expect(configuration.components.count == 2)
    }

    @Test func passwordFromEnvironment() throws {
        let text = Fixtures.configuration().replacingOccurrences(
            of: "password_file = \"password\"", with: "password_env = \"HOST_PASSWORD\"")
        let configuration = try HostConfiguration.parse(text, environment: ["HOST_PASSWORD": "from-env"], registry: .stock)
        #expect(configuration.auth.password.value == "from-env")
        #expect(configuration.auth.passwordSource == .environment("HOST_PASSWORD"))
        let error = #expect(throws: ConfigurationError.self) {
            try HostConfiguration.parse(text, environment: [:], registry: .stock)
        }
        #expect(error?.key == "auth.password_env")
        #expect(error?.message == "the environment variable HOST_PASSWORD is not set or empty")
    }

    @Test func perHostnameSecretFile() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        try directory.write("kv.secret", "kv-secret\n")
        let path = try Fixtures.write(in: directory, Fixtures.configuration(extra: "secret_file = \"kv.secret\""))
        let configuration = try HostConfiguration.load(path: path, environment: [:], registry: .stock)
        #expect(configuration.components[1].secret?.value == "kv-secret")
        #expect(try configuration.componentConfiguration.secret(for: "kv.example.com").value == "kv-secret")
        // XEP-0225 is enabled: the SASL password is not a XEP-0114 secret (issue #13 item 1).
        #expect(throws: ComponentError.self) { try configuration.componentConfiguration.secret(for: "echo.example.com") }
    }

    /// Each broken file, with the exact message: line, key and what was expected.
    @Test(arguments: [
        ("port = 1", "prot = 1", "host.toml:3: server.prot: unknown key; did you mean \"port\"?"),
        ("port = 1", "port = \"5270\"", "host.toml:3: server.port: expected an integer, found a string"),
        ("port = 1", "port = 70000", "host.toml:3: server.port: expected a port from 1 to 65535, found 70000"),
        (
            "protocol = \"xep0225\"", "protocol = \"xmpp\"",
            "host.toml:5: server.protocol: expected one of auto, xep0225, xep0114; found \"xmpp\""
        ),
        ("tls = \"starttls\"", "tls = true", "host.toml:6: server.tls: expected a string, found a boolean"),
        (
            "domain = \"example.com\"", "domain = \"user@example.com\"",
            "host.toml:4: server.domain: expected a domain name (e.g. \"example.com\"), found \"user@example.com\""
        ),
        (
            "domain = \"example.com\"\n", "",
            "host.toml:1: server.domain: required: the server's XMPP domain (e.g. \"example.com\")"
        ),
        (
            "plugin = \"echo\"", "plugin = \"ehco\"",
            "host.toml:17: component[0].plugin: unknown plugin \"ehco\"; this host has: echo, external, kv"
        ),
        (
            "prefix = \"> \"", "prefix = 3",
            "host.toml:19: component[0].options.prefix: option 'prefix' of plugin 'echo' must be a string, not an integer (3)"
        ),
        (
            "prefix = \"> \"", "prefx = \"> \"",
            "host.toml:19: component[0].options.prefx: unknown option 'prefx': plugin 'echo' takes: prefix"
        ),
        (
            "hostname = \"kv.example.com\"", "hostname = \"ECHO.example.com\"",
            "host.toml:22: component[1].hostname: ECHO.example.com is already configured by component[0] (line 15)"
        ),
        ("[admin]", "[admn]", "host.toml:12: admn: unknown key; did you mean \"admin\"?"),
        (
            "password_file = \"password\"", "password_file = \"missing\"",
            "host.toml:10: auth.password_file: cannot read DIR/missing: No such file or directory"
        ),
        (
            "port = 1", "port = 1\nport = 2",
            "host.toml:4: TOML syntax: Error while parsing key-value pair: cannot redefine existing integer 'port'"
        ),
        (
            "[server]", "[server]\nsecret = 1",
            "host.toml:2: server.secret: unknown key; expected one of: host, port, domain, protocol, tls, ca_file, server_name, allow_plaintext_handshake, allow_insecure_plaintext, acknowledgements, legacy_acknowledgements"
        ),
    ])
    func errorsNameLineKeyAndExpectation(_ find: String, _ replace: String, _ expected: String) throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let text = Fixtures.configuration().replacingOccurrences(of: find, with: replace)
        let path = try Fixtures.write(in: directory, text)
        let error = #expect(throws: ConfigurationError.self) {
            try HostConfiguration.load(path: path, environment: [:], registry: .stock)
        }
        let description = error.map { "\($0)" }?
            .replacingOccurrences(of: directory.path + "/", with: "")
            .replacingOccurrences(of: "cannot read missing", with: "cannot read DIR/missing")
        #expect(description == expected)
    }

    @Test func secretsNeverAppearInErrorsOrDescriptions() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        // A bad option after a good password: the error must not contain the password.
        let text = Fixtures.configuration().replacingOccurrences(of: "prefix = \"> \"", with: "prefix = false")
        let path = try Fixtures.write(in: directory, text)
        do {
            _ = try HostConfiguration.load(path: path, environment: [:], registry: .stock)
            Issue.record("expected an error")
        } catch {
            #expect(!"\(error)".contains(Fixtures.password))
        }
        let good = try HostConfiguration.load(
            path: try Fixtures.write(in: directory, Fixtures.configuration()), environment: [:], registry: .stock)
        #expect(!"\(good)".contains(Fixtures.password))
        #expect(!good.explanation.contains(Fixtures.password))
        #expect("\(good.auth.password)" == "<redacted>")
    }

    @Test func explanationAndWarnings() throws {
        let text = Fixtures.configuration()
            .replacingOccurrences(of: "host = \"127.0.0.1\"", with: "host = \"xmpp.example.com\"")
            .replacingOccurrences(of: "protocol = \"xep0225\"", with: "protocol = \"xep0114\"")
            .replacingOccurrences(of: "tls = \"starttls\"", with: "tls = \"none\"\nallow_plaintext_handshake = true")
            .replacingOccurrences(of: "password_file = \"password\"", with: "password_env = \"P\"")
        let configuration = try HostConfiguration.parse(text, path: "host.toml", environment: ["P": "x"], registry: .stock)
        let explanation = configuration.explanation
        #expect(explanation.contains("server:     xmpp.example.com:1, XMPP domain example.com"))
        #expect(explanation.contains("protocol:   XEP-0114 only"))
        #expect(explanation.contains("tls:        none (cleartext)"))
        #expect(explanation.contains("password from environment variable P"))
        #expect(explanation.contains("  echo.example.com → echo (prefix = \"> \")"))
        #expect(
            explanation.contains(
                "  kv.example.com → kv (max_key_bytes = 256, max_keys = 1000, max_value_bytes = 4096, read_only = false, writers = \"\")"
            ))
        #expect(configuration.warnings.count == 1)
        #expect(explanation.contains("warning: XEP-0114 handshakes go in cleartext to xmpp.example.com"))
        let loopback = try HostConfiguration.parse(
            text.replacingOccurrences(of: "xmpp.example.com", with: "127.0.0.1"), environment: ["P": "x"], registry: .stock)
        #expect(loopback.warnings.isEmpty)
    }

    @Test func sourceMapFindsKeysInArraysOfTables() {
        let map = TOMLSourceMap(
            """
            [server] # comment
            host = "a#b"
            [[component]]
            hostname = "x"
            [[component]]
            "hostname" = "y"
            [component.options]
            prefix = 1
            """)
        #expect(map.line(for: "server.host") == 2)
        #expect(map.line(for: "component[1].hostname") == 6)
        #expect(map.line(for: "component[1].options.prefix") == 8)
        #expect(map.line(for: "component[1].options.missing") == 7)
        #expect(map.line(for: "component[0].plugin") == 3)
    }

    static var repositoryRoot: String {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }
}
