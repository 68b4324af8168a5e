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
        /// For an ``ExternalPlugin`` hostname: its local component and supervised process.
        public var external: External?

        enum CodingKeys: String, CodingKey {
            case hostname, plugin, options, origin, state, hangs, external
            case stanzasIn = "stanzas_in"
            case stanzasOut = "stanzas_out"
            case hungOn = "hung_on"
            case hungSeconds = "hung_seconds"
        }
    }

    /// An external (out-of-process) component's local side.
    public struct External: Codable, Hashable, Sendable {
        /// The listener it connects to (`host:port` or `unix:/path`).
        public var listen: String
        /// Whether its XEP-0114 stream is up.
        public var connected: Bool
        /// Why the listener could not be opened, if it could not.
        public var listenError: String?
        /// The supervised process's id, while it runs.
        public var pid: Int32?
        /// `waiting`, `running`, `backoff`, `stopping`, `exited` or `stopped` (with a `command`).
        public var processState: String?
        /// How many times the process was restarted.
        public var restarts: Int?
        /// Seconds since the process started, while it runs.
        public var uptimeSeconds: Double?
        /// How the process last ended.
        public var lastExit: String?

        /// Creates an external component's status.
        public init(listen: String, connected: Bool, listenError: String? = nil) {
            self.listen = listen
            self.connected = connected
            self.listenError = listenError
        }

        enum CodingKeys: String, CodingKey {
            case listen, connected, pid, restarts
            case listenError = "listen_error"
            case processState = "process_state"
            case uptimeSeconds = "uptime_seconds"
            case lastExit = "last_exit"
        }

        /// One line for people.
        var note: String {
            var parts = ["local \(self.connected ? "connected" : "not connected") on \(self.listen)"]
            if let error = self.listenError { parts.append(error) }
            if let state = self.processState {
                var process = "process \(state)"
                if let pid = self.pid { process += " pid \(pid)" }
                if let uptime = self.uptimeSeconds { process += " up \(Int(uptime))s" }
                process += ", \(self.restarts ?? 0) restart(s)"
                if let exit = self.lastExit { process += ", last \(exit)" }
                parts.append(process)
            }
            return parts.joined(separator: "; ")
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
            if let external = component.external {
                note = note.isEmpty ? external.note : note + "; " + external.note
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
