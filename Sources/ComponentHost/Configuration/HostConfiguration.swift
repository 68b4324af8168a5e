public import ComponentKit
public import Logging
import XMPPTLS

/// A validated `host.toml`: where the server is, how to authenticate, where the admin
/// socket and metrics listen, how to log, and which hostnames run which plugins.
///
/// Load it with ``load(path:environment:registry:)`` or ``parse(_:path:environment:registry:)``;
/// both check everything they can (unknown keys, types, values, plugin names and options,
/// secret files) and throw a ``ConfigurationError`` naming the line, the key and what was
/// expected. Secrets read from files or the environment are ``/ComponentKit/Secret``s and
/// never appear in errors, descriptions or logs.
public struct HostConfiguration: Sendable {
    /// `[server]`: where to connect and how.
    public struct Server: Hashable, Sendable {
        /// `host`: the host name or address to connect to.
        public var host: String
        /// `port` (default 5347).
        public var port: Int
        /// `domain`: the server's XMPP domain (the XEP-0225 stream's `to`).
        public var domain: String
        /// `protocol`: `auto` (default), `xep0225` or `xep0114`.
        public var protocolMode: ComponentConfiguration.ProtocolMode
        /// `tls`: `starttls` (default), `direct` or `none`.
        public var tls: ComponentConfiguration.TLSMode
        /// `ca_file`: trusted CA certificates (PEM); the system store when `nil`.
        public var caFile: String?
        /// `server_name`: the certificate name to verify; the domain when `nil`.
        public var serverName: String?
        /// `allow_plaintext_handshake`: allow the XEP-0114 handshake in cleartext to a
        /// non-loopback host (default `false`).
        public var allowPlaintextHandshake: Bool
        /// `allow_insecure_plaintext`: allow XEP-0225 (SASL and every stanza) without TLS to a
        /// non-loopback host (default `false`: such a configuration is refused).
        public var allowInsecurePlaintext = false
        /// `acknowledgements`: acknowledge handled stanzas with XEP-0198 when the server
        /// offers it on the XEP-0225 stream (default `true`; see
        /// ``/ComponentKit/ComponentConfiguration/acknowledgements``).
        public var acknowledgements = true
        /// `legacy_acknowledgements`: acknowledge handled stanzas on XEP-0114 streams too
        /// (default `false`; only for ejabberd with this project's `ejabberd_service_acks`
        /// listener, see ``/ComponentKit/ComponentConfiguration/legacyAcknowledgements``).
        public var legacyAcknowledgements = false
    }

    /// Where a secret came from (for explanations; never the secret itself).
    public enum SecretSource: Hashable, Sendable, CustomStringConvertible {
        /// Read from a file (a systemd credential is the file in `$CREDENTIALS_DIRECTORY`).
        case file(String)
        /// Read from an environment variable.
        case environment(String)
        /// Not configured (SASL EXTERNAL with a client certificate).
        case none

        /// `file /path`, `environment variable NAME` or `none`.
        public var description: String {
            switch self {
            case .file(let path): "file \(path)"
            case .environment(let name): "environment variable \(name)"
            case .none: "none"
            }
        }
    }

    /// `[auth]`: the SASL identity and its credentials.
    public struct Auth: Hashable, Sendable {
        /// `identity`: the SASL authentication identity (a domain), also the default hostname.
        public var identity: String
        /// The password from `password_file` or `password_env`.
        public var password: Secret
        /// Where ``password`` came from.
        public var passwordSource: SecretSource
        /// `mechanisms`: the SASL mechanisms allowed; all supported ones when `nil`.
        public var mechanisms: [String]?
        /// `client_certificate`: a client certificate chain (PEM) for SASL EXTERNAL.
        public var clientCertificate: String?
        /// `client_key`: the key of ``clientCertificate`` (PEM).
        public var clientKey: String?
        /// `require_channel_binding`: refuse a server that offers no `-PLUS` SASL mechanism
        /// with a channel binding the SDK supports (default `false`; needs TLS).
        public var requireChannelBinding = false
    }

    /// `[logging]`: the log format and level (the command line can override both).
    public struct Logging: Hashable, Sendable {
        /// The output format.
        public enum Format: String, Hashable, Sendable, CaseIterable {
            /// One readable line per event (the default).
            case human
            /// One JSON object per line.
            case json
        }

        /// `format`: `human` (default) or `json`.
        public var format: Format
        /// `level`: `trace`, `debug`, `info` (default), `notice`, `warning`, `error` or `critical`.
        public var level: Logger.Level

        /// Creates logging settings.
        /// - Parameters:
        ///   - format: The output format.
        ///   - level: The lowest level logged.
        public init(format: Format = .human, level: Logger.Level = .info) {
            self.format = format
            self.level = level
        }
    }

    /// One `[[component]]`: a hostname and the plugin that serves it.
    public struct Component: Hashable, Sendable {
        /// `hostname`: the hostname to bind.
        public var hostname: String
        /// `plugin`: the plugin's name.
        public var plugin: String
        /// `[component.options]`, validated against the plugin (defaults filled in).
        public var options: PluginOptions
        /// `secret_file`: this hostname's XEP-0114 secret, read from the file.
        public var secret: Secret?
        /// The path of ``secret``.
        public var secretFile: String?
        /// `weight`: this instance's share when the server balances the hostname's domain
        /// over several instances (`domain/resource` hostnames) by weight; 1…1000, `nil`
        /// when not set. Sent at bind time (see ``/ComponentKit/ComponentConnection/bind(_:weight:handler:)``).
        public var weight: Int?

        /// Creates an entry.
        /// - Parameters:
        ///   - hostname: The hostname.
        ///   - plugin: The plugin's name.
        ///   - options: Validated options.
        ///   - secret: A per-hostname XEP-0114 secret.
        ///   - secretFile: Where the secret came from.
        public init(
            hostname: String, plugin: String, options: PluginOptions = PluginOptions(), secret: Secret? = nil,
            secretFile: String? = nil
        ) {
            self.hostname = hostname
            self.plugin = plugin
            self.options = options
            self.secret = secret
            self.secretFile = secretFile
        }
    }

    /// `[server]`.
    public var server: Server
    /// `[auth]`.
    public var auth: Auth
    /// `[admin] socket`, or the default path (see ``defaultAdminSocketPath(environment:isRoot:)``).
    public var adminSocket: String
    /// `[metrics] listen`; no metrics endpoint when `nil`.
    public var metricsListen: ListenAddress?
    /// `[logging]`.
    public var logging: Logging
    /// Every `[[component]]`, in file order.
    public var components: [Component]
    /// `[limits]`: how much may wait for the handlers (see ``/ComponentKit/HostnameBudget``).
    public var limits = Limits()

    /// `[limits]`: the budgets that isolate hostnames sharing a stream.
    public struct Limits: Hashable, Sendable {
        /// `hostname_stanzas` and `hostname_bytes`: the budget of each hostname; past it, its
        /// excess is answered with `resource-constraint` while the others keep flowing.
        public var hostname = HostnameBudget()
        /// `connection_bytes`: the budget of all hostnames together; past it, reading pauses.
        public var connection = ConnectionBudgetPolicy()

        /// The defaults (4 096 stanzas and 4 MiB per hostname, 64 MiB in all).
        public init() {}
    }
    /// The file the configuration was read from, if any (where `--persist` writes).
    public var path: String?

    /// A TCP listening address, `host:port` (`[::1]:port` for IPv6).
    public struct ListenAddress: Hashable, Sendable, CustomStringConvertible {
        /// The address or host name to listen on.
        public var host: String
        /// The port (0 picks a free one).
        public var port: Int

        /// Creates an address.
        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }

        /// `host:port`, with brackets around IPv6 addresses.
        public var description: String {
            self.host.contains(":") ? "[\(self.host)]:\(self.port)" : "\(self.host):\(self.port)"
        }
    }

    /// Creates a configuration in code (files go through ``load(path:environment:registry:)``).
    /// - Parameters:
    ///   - server: `[server]`.
    ///   - auth: `[auth]`.
    ///   - adminSocket: The admin socket's path.
    ///   - logging: `[logging]`.
    ///   - components: The hostnames and their plugins.
    public init(
        server: Server, auth: Auth, adminSocket: String, logging: Logging = Logging(format: .human, level: .info),
        components: [Component] = []
    ) {
        self.server = server
        self.auth = auth
        self.adminSocket = adminSocket
        self.logging = logging
        self.components = components
    }

    /// The ``/ComponentKit/ComponentConfiguration`` for the connection.
    public var componentConfiguration: ComponentConfiguration {
        var configuration = ComponentConfiguration(
            host: self.server.host, port: self.server.port, serverDomain: self.server.domain,
            identity: self.auth.identity, password: self.auth.password)
        configuration.protocolMode = self.server.protocolMode
        configuration.tlsMode = self.server.tls
        if let caFile = self.server.caFile {
            configuration.trustRoots = .caFile(caFile)
        }
        configuration.tlsServerName = self.server.serverName
        configuration.allowPlaintextHandshake = self.server.allowPlaintextHandshake
        configuration.allowInsecurePlaintext = self.server.allowInsecurePlaintext
        configuration.acknowledgements = self.server.acknowledgements
        configuration.legacyAcknowledgements = self.server.legacyAcknowledgements
        configuration.requireChannelBinding = self.auth.requireChannelBinding
        configuration.saslMechanisms = self.auth.mechanisms
        configuration.clientCertificateFile = self.auth.clientCertificate
        configuration.clientKeyFile = self.auth.clientKey
        configuration.hostnameBudget = self.limits.hostname
        configuration.connectionBudget = self.limits.connection
        for component in self.components {
            if let secret = component.secret {
                configuration.secrets[component.hostname] = secret
            }
        }
        return configuration
    }

    /// The admin socket used when `[admin] socket` is not set:
    /// `/run/component-host/admin.sock` as root, else
    /// `$XDG_RUNTIME_DIR/component-host/admin.sock`, else
    /// `/tmp/component-host-UID/admin.sock`.
    /// - Parameters:
    ///   - environment: The process environment.
    ///   - isRoot: Whether the process runs as root.
    public static func defaultAdminSocketPath(environment: [String: String], isRoot: Bool) -> String {
        if isRoot {
            return "/run/component-host/admin.sock"
        }
        if let runtime = environment["XDG_RUNTIME_DIR"], runtime.hasPrefix("/") {
            return runtime + "/component-host/admin.sock"
        }
        return "/tmp/component-host-\(SystemCalls.userID)/admin.sock"
    }
}
