public import ComponentKit

/// The built-in `external` plugin: the hostname is served by a component in another
/// process (any language, XEP-0114 `jabber:component:accept`) that connects to the host's
/// local listener; the host carries its stanzas upstream on its own stream.
///
/// ```toml
/// [[component]]
/// hostname = "gateway.example.com"
/// plugin = "external"
/// [component.options]
/// listen = "127.0.0.1:5347"
/// secret_file = "/etc/component-host/gateway.secret"
/// command = ["/usr/bin/python3", "/srv/gateway/main.py"]
/// restart = "on-failure"
/// ```
///
/// Several hostnames may share one `listen` address: the stream header's `to` picks the
/// hostname, and the handshake is checked with that hostname's secret. The hostname is
/// bound upstream when its component's handshake succeeds and unbound when its stream
/// ends (after `grace_seconds`, during which its stanzas wait). With `command`, the host
/// starts the component once the upstream is connected, with `COMPONENT_HOSTNAME`,
/// `COMPONENT_LISTEN` (`host:port` or `unix:/path`) and `COMPONENT_SECRET` in its
/// environment, restarts it per `restart` with backoff, logs its output, and stops it
/// (SIGTERM, then SIGKILL after `stop_grace_seconds`) on shutdown.
public enum ExternalPlugin: ComponentPlugin {
    /// `external`.
    public static let name = "external"
    /// One sentence for `component-host plugins`.
    public static let description =
        "Serves the hostname with a component in another process (XEP-0114 on a local listener), optionally started and supervised by the host."
    /// The options (see the type's documentation).
    public static let options = [
        PluginOption(
            "listen", type: .string,
            help:
                "Local XEP-0114 listener: loopback \"127.0.0.1:PORT\" or \"unix:/path\" (mode 0600); may be shared by several hostnames."
        ),
        PluginOption("secret_file", type: .string, default: .string(""), help: "File holding the component's XEP-0114 secret."),
        PluginOption(
            "secret_env", type: .string, default: .string(""),
            help: "Environment variable holding the component's XEP-0114 secret (instead of secret_file)."),
        PluginOption(
            "command", type: .stringArray, default: .stringArray([]),
            help: "Program and arguments to start and supervise (optional)."),
        PluginOption("restart", type: .string, default: .string("on-failure"), help: "always, on-failure or never."),
        PluginOption(
            "grace_seconds", type: .double, default: .double(5),
            help: "How long the hostname stays bound, its stanzas waiting, after its component disconnected."),
        PluginOption(
            "stop_grace_seconds", type: .double, default: .double(5),
            help: "Time between SIGTERM and SIGKILL when the host stops the command."),
    ]

    /// Environment variable names passed to a supervised command.
    public enum Environment {
        /// The hostname the component serves.
        public static let hostname = "COMPONENT_HOSTNAME"
        /// Where to connect: `host:port` or `unix:/path`.
        public static let listen = "COMPONENT_LISTEN"
        /// The XEP-0114 secret.
        public static let secret = "COMPONENT_SECRET"
    }

    /// Checks the address (loopback or Unix socket), the secret source and the restart policy.
    public static func check(options: PluginOptions) throws {
        _ = try ExternalOptions(options)
    }

    /// Makes the handler (reads the secret).
    public static func make(options: PluginOptions, context: PluginContext) throws -> any ComponentHandler {
        let parsed = try ExternalOptions(options)
        return ExternalHandler(
            hostname: context.hostname, options: parsed, secret: try parsed.readSecret(), logger: context.logger)
    }
}
