/// A request on the admin socket: one JSON object on one line.
///
/// The admin protocol is line-delimited JSON over a Unix stream socket (mode 0600):
/// the client writes one request per line, the host answers each with one
/// ``AdminResponse`` line, in order; either side may close at any time. Lines are at most
/// 64 KiB. Requests:
///
/// ```json
/// {"command":"status"}
/// {"command":"bind","hostname":"kv.example.com","plugin":"kv","set":["max_keys=10"],"persist":false}
/// {"command":"bind","hostname":"echo2.example.com","plugin":"echo","options":{"prefix":"> "}}
/// {"command":"unbind","hostname":"kv.example.com","persist":true}
/// ```
///
/// `set` holds `key=value` strings typed by the host with the plugin's option
/// declarations (what the CLI sends); `options` holds JSON values. Both may be given;
/// `options` wins on the same key.
public struct AdminRequest: Codable, Hashable, Sendable {
    /// The commands.
    public enum Command: String, Codable, Hashable, Sendable {
        /// Bind a hostname to a plugin.
        case bind
        /// Unbind a hostname.
        case unbind
        /// Report the host's status.
        case status
    }

    /// The command.
    public var command: Command
    /// The hostname (`bind`, `unbind`).
    public var hostname: String?
    /// The plugin (`bind`).
    public var plugin: String?
    /// Options as JSON values (`bind`).
    public var options: [String: PluginOptionValue]?
    /// Options as `key=value` strings (`bind`).
    public var set: [String]?
    /// Whether to write the change to the configuration file (`bind`, `unbind`).
    public var persist: Bool?
    /// The instance's weight for the server's `weighted` balancing, 1–1000 (`bind`).
    public var weight: Int?

    /// Creates a request.
    public init(
        command: Command, hostname: String? = nil, plugin: String? = nil, options: [String: PluginOptionValue]? = nil,
        set: [String]? = nil, persist: Bool? = nil, weight: Int? = nil
    ) {
        self.command = command
        self.hostname = hostname
        self.plugin = plugin
        self.options = options
        self.set = set
        self.persist = persist
        self.weight = weight
    }
}

/// The answer to an ``AdminRequest``: one JSON object on one line.
///
/// ```json
/// {"ok":true,"message":"kv.example.com bound to plugin kv","component":{…}}
/// {"ok":false,"error":"unknown plugin 'weather'; this host has: echo, external, kv"}
/// {"ok":true,"status":{"server":"xmpp.example.com:5270","connected":true,"protocol":"XEP-0225",…}}
/// ```
public struct AdminResponse: Codable, Hashable, Sendable {
    /// Whether the command succeeded.
    public var ok: Bool
    /// What happened, for people.
    public var message: String?
    /// Why it failed.
    public var error: String?
    /// The status (`status`).
    public var status: HostStatus?
    /// The hostname's status (`bind`).
    public var component: HostStatus.Component?

    /// Creates a response.
    public init(
        ok: Bool, message: String? = nil, error: String? = nil, status: HostStatus? = nil,
        component: HostStatus.Component? = nil
    ) {
        self.ok = ok
        self.message = message
        self.error = error
        self.status = status
        self.component = component
    }

    /// A failure.
    public static func failure(_ error: String) -> AdminResponse {
        AdminResponse(ok: false, error: error)
    }
}
