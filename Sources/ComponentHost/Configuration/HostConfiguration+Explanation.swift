import ComponentKit
import Logging

extension HostConfiguration {
    /// What a host with this configuration would do, for `check-config`: the server, the
    /// protocol, TLS, authentication, the admin socket and metrics, each hostname with its
    /// plugin and options. Secrets are named by their source, never shown.
    public var explanation: String {
        var lines: [String] = []
        let server = self.server
        lines.append("server:     \(server.host):\(server.port), XMPP domain \(server.domain)")
        let protocolText: String
        switch server.protocolMode {
        case .auto:
            protocolText =
                server.tls == .startTLS
                ? "auto, but no XEP-0114 fallback with tls = \"starttls\" (XEP-0114 has no STARTTLS)"
                : "auto (XEP-0225 when offered, else the XEP-0114 fallback)"
        case .xep0225: protocolText = "XEP-0225 only (one stream, SASL, many hostnames)"
        case .xep0114: protocolText = "XEP-0114 only (one stream and handshake per hostname)"
        }
        lines.append("protocol:   \(protocolText)")
        let trust = server.caFile.map { "CA file \($0)" } ?? "the system trust store"
        let name = server.serverName ?? server.domain
        switch server.tls {
        case .startTLS: lines.append("tls:        STARTTLS (required), certificate name \(name) verified against \(trust)")
        case .direct: lines.append("tls:        direct TLS, certificate name \(name) verified against \(trust)")
        case .none: lines.append("tls:        none (cleartext)")
        }
        var auth = "identity \(self.auth.identity), password from \(self.auth.passwordSource)"
        if let certificate = self.auth.clientCertificate {
            auth += ", client certificate \(certificate) (SASL EXTERNAL)"
        }
        auth += ", mechanisms: \(self.auth.mechanisms?.joined(separator: ", ") ?? "all supported, strongest first")"
        if self.auth.requireChannelBinding {
            auth += ", channel binding required"
        }
        lines.append("auth:       \(auth)")
        lines.append("admin:      \(self.adminSocket) (mode 0600)")
        lines.append("metrics:    \(self.metricsListen.map { "http://\($0)/metrics" } ?? "off")")
        lines.append("logging:    \(self.logging.format.rawValue), level \(self.logging.level.rawValue)")
        if self.components.isEmpty {
            lines.append("hostnames:  none (bind some at runtime with `component-host bind`)")
        } else {
            lines.append("hostnames:")
            for component in self.components {
                var line = "  \(component.hostname) → \(component.plugin)"
                if !component.options.values.isEmpty {
                    line += " (\(component.options))"
                }
                if let file = component.secretFile {
                    line += ", XEP-0114 secret from file \(file)"
                }
                lines.append(line)
            }
        }
        let warnings = self.warnings
        if !warnings.isEmpty {
            lines.append("")
            lines.append(contentsOf: warnings.map { "warning: \($0)" })
        }
        return lines.joined(separator: "\n")
    }

    /// Things that work but deserve a second look.
    public var warnings: [String] {
        var warnings: [String] = []
        let loopback = Self.isLoopback(self.server.host)
        if self.server.tls == .none && !loopback {
            if self.server.protocolMode != .xep0225 {
                if self.server.allowPlaintextHandshake {
                    warnings.append(
                        "XEP-0114 handshakes go in cleartext to \(self.server.host), which is not a loopback address: "
                            + "the digest can be attacked offline and every stanza can be read (allow_plaintext_handshake = true)"
                    )
                } else {
                    warnings.append(
                        "tls = \"none\" to \(self.server.host), which is not a loopback address: the XEP-0114 handshake "
                            + "will be refused unless allow_plaintext_handshake = true (and stanzas travel in cleartext)")
                }
            } else {
                warnings.append(
                    "tls = \"none\" to \(self.server.host), which is not a loopback address: stanzas travel in cleartext")
            }
        }
        if self.server.allowInsecurePlaintext && self.server.tls == .none && self.server.protocolMode != .xep0114 && !loopback {
            warnings.append(
                "allow_insecure_plaintext = true: SCRAM and every stanza go in cleartext to \(self.server.host); "
                    + "a fake server can capture a proof to attack offline")
        }
        for (path, key) in self.secretFiles {
            if let mode = SystemCalls.mode(of: path), mode & 0o077 != 0 {
                warnings.append(
                    "\(key) \(path) is readable by group or others (mode \(String(mode, radix: 8))): chmod 600 \(path)")
            }
        }
        if self.server.allowPlaintextHandshake && self.server.tls != .none {
            warnings.append("allow_plaintext_handshake = true has no effect with tls = \"\(self.server.tls.rawValue)\"")
        }
        if let mechanisms = self.auth.mechanisms, mechanisms.contains("PLAIN"), self.server.tls == .none {
            warnings.append("PLAIN is allowed but there is no TLS: the SDK refuses PLAIN outside TLS")
        }
        if let listen = self.metricsListen, !Self.isLoopback(listen.host) {
            warnings.append("metrics listen on \(listen), reachable beyond this machine (no authentication)")
        }
        if self.server.protocolMode == .auto && self.server.tls != .startTLS {
            for component in self.components where component.secret == nil {
                warnings.append(
                    "\(component.hostname) has no secret_file: if auto falls back to XEP-0114 it cannot authenticate "
                        + "(the SASL password is never used as a XEP-0114 secret when XEP-0225 is enabled)")
            }
        }
        if self.server.protocolMode == .xep0114 && self.components.isEmpty {
            warnings.append("protocol = \"xep0114\" with no [[component]]: nothing will connect until a bind")
        }
        return warnings
    }

    /// The files secrets were read from, with the key that named them.
    var secretFiles: [(path: String, key: String)] {
        var files: [(String, String)] = []
        if case .file(let path) = self.auth.passwordSource {
            files.append((path, "password file"))
        }
        for component in self.components {
            if let path = component.secretFile {
                files.append((path, "secret file of \(component.hostname)"))
            }
        }
        return files
    }

    static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.") || host == "[::1]"
    }
}
