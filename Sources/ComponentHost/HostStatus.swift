import Foundation

/// What a host is doing: the server, the negotiated stream, and each hostname with its
/// plugin, state and counters. The admin socket's `status` answer (JSON, snake_case keys).
public struct HostStatus: Codable, Hashable, Sendable {
    /// One hostname.
    public struct Component: Codable, Hashable, Sendable {
        /// The hostname (as the server bound it, once bound).
        public var hostname: String
        /// The plugin serving it.
        public var plugin: String
        /// The plugin's options.
        public var options: [String: PluginOptionValue]
        /// `configuration` (from the file) or `runtime` (bound over the admin socket, not persisted).
        public var origin: String
        /// `pending`, `binding`, `bound`, `unbinding` or `unbound` (ComponentKit's states).
        public var state: String
        /// Stanzas received for it.
        public var stanzasIn: Int
        /// Stanzas sent from it.
        public var stanzasOut: Int
        /// How many times its handler was detected hung.
        public var hangs: Int
        /// The stanza its handler is hung on, if it is hung now.
        public var hungOn: String?
        /// For how long, in seconds.
        public var hungSeconds: Double?

        enum CodingKeys: String, CodingKey {
            case hostname, plugin, options, origin, state, hangs
            case stanzasIn = "stanzas_in"
            case stanzasOut = "stanzas_out"
            case hungOn = "hung_on"
            case hungSeconds = "hung_seconds"
        }
    }

    /// `host:port`.
    public var server: String
    /// The server's XMPP domain.
    public var domain: String
    /// Whether a stream is up.
    public var connected: Bool
    /// `XEP-0225` or `XEP-0114` once negotiated.
    public var protocolInUse: String?
    /// The negotiated TLS version (`TLSv1.3`), if any.
    public var tlsVersion: String?
    /// The SASL mechanism used, if any.
    public var saslMechanism: String?
    /// The last connection error.
    public var lastError: String?
    /// The hostnames, sorted.
    public var components: [Component]

    enum CodingKeys: String, CodingKey {
        case server, domain, connected, components
        case protocolInUse = "protocol"
        case tlsVersion = "tls_version"
        case saslMechanism = "sasl_mechanism"
        case lastError = "last_error"
    }

    /// A table for people (`component-host status`).
    public var rendered: String {
        var lines: [String] = []
        lines.append("server:     \(self.server) (domain \(self.domain))")
        lines.append("connected:  \(self.connected ? "yes" : "no")\(self.lastError.map { " (last error: \($0))" } ?? "")")
        lines.append("protocol:   \(self.protocolInUse ?? "-")")
        lines.append("tls:        \(self.tlsVersion ?? "-")")
        lines.append("sasl:       \(self.saslMechanism ?? "-")")
        if self.components.isEmpty {
            lines.append("hostnames:  none")
            return lines.joined(separator: "\n")
        }
        lines.append("")
        let header = ["HOSTNAME", "PLUGIN", "STATE", "IN", "OUT", "ORIGIN", "NOTE"]
        var rows = [header]
        for component in self.components {
            var note = ""
            if let stanza = component.hungOn, let seconds = component.hungSeconds {
                note = "HUNG \(Int(seconds))s on \(stanza)"
            } else if component.hangs > 0 {
                note = "\(component.hangs) hang(s)"
            }
            rows.append([
                component.hostname, component.plugin, component.state, String(component.stanzasIn),
                String(component.stanzasOut), component.origin, note,
            ])
        }
        let widths = (0..<header.count).map { column in rows.map { $0[column].count }.max() ?? 0 }
        for row in rows {
            let padded = row.enumerated().map { column, cell in
                column == row.count - 1 ? cell : cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
            }
            lines.append(padded.joined(separator: "  ").trimmingTrailingSpaces())
        }
        return lines.joined(separator: "\n")
    }
}

extension String {
    fileprivate func trimmingTrailingSpaces() -> String {
        var copy = self
        while copy.hasSuffix(" ") { copy.removeLast() }
        return copy
    }
}
