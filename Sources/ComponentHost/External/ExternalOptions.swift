import Foundation

/// The options of the built-in ``ExternalPlugin``, parsed and checked.
///
/// ```toml
/// [component.options]
/// listen = "127.0.0.1:5347"            # or "unix:/run/component-host/gw.sock" (mode 0600)
/// secret_env = "GW_SECRET"             # or secret_file = "/etc/component-host/gw.secret"
/// command = ["/usr/bin/python3", "/srv/gw/main.py"]   # optional: started and supervised
/// restart = "on-failure"               # always | on-failure | never
/// grace_seconds = 5                    # how long a hostname stays bound (its stanzas waiting) after its component left
/// ```
struct ExternalOptions: Hashable, Sendable {
    /// When a supervised command is started again.
    enum RestartPolicy: String, Hashable, Sendable, CaseIterable {
        /// Whenever it exits.
        case always
        /// When it exits with a non-zero status or a signal (the default).
        case onFailure = "on-failure"
        /// Never.
        case never
    }

    /// Where the local XEP-0114 listener is.
    var listen: ListenAddress
    /// Where the shared secret comes from (never the secret itself).
    var secretSource: SecretSource
    /// The command to start and supervise; empty: none (the component is started by someone else).
    var command: [String]
    /// When the command is started again.
    var restart: RestartPolicy
    /// How long the hostname stays bound after its local stream ended.
    var grace: Duration
    /// How long a stopped child has between SIGTERM and SIGKILL.
    var stopGrace: Duration

    /// Where a secret comes from.
    enum SecretSource: Hashable, Sendable {
        /// A file's content (trailing newline removed).
        case file(String)
        /// An environment variable of the host.
        case environment(String)
    }

    /// Parses validated plugin options.
    /// - Throws: ``PluginError`` naming the option.
    init(_ options: PluginOptions) throws {
        let listenText = options.string("listen") ?? ""
        self.listen = try ListenAddress(parsing: listenText)
        let file = options.string("secret_file") ?? ""
        let environment = options.string("secret_env") ?? ""
        switch (file.isEmpty, environment.isEmpty) {
        case (false, false):
            throw PluginError.invalidValue("secret_file", "set secret_file or secret_env, not both")
        case (true, true):
            throw PluginError(
                .missingOption, option: "secret_file",
                "plugin 'external' needs secret_file or secret_env: the XEP-0114 secret the local component authenticates with")
        case (false, true):
            self.secretSource = .file(file)
        case (true, false):
            self.secretSource = .environment(environment)
        }
        self.command = options.strings("command") ?? []
        if let first = self.command.first, first.isEmpty {
            throw PluginError.invalidValue("command", "the program (first element) is empty")
        }
        let restartText = options.string("restart") ?? "on-failure"
        guard let restart = RestartPolicy(rawValue: restartText) else {
            throw PluginError.invalidValue(
                "restart", "'\(restartText)' is not one of: \(RestartPolicy.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        self.restart = restart
        let grace = options.double("grace_seconds") ?? 5
        guard grace >= 0, grace <= 3600 else {
            throw PluginError.invalidValue("grace_seconds", "expected 0 to 3600 seconds, found \(grace)")
        }
        self.grace = .milliseconds(Int64(grace * 1000))
        let stopGrace = options.double("stop_grace_seconds") ?? 5
        guard stopGrace >= 0, stopGrace <= 600 else {
            throw PluginError.invalidValue("stop_grace_seconds", "expected 0 to 600 seconds, found \(stopGrace)")
        }
        self.stopGrace = .milliseconds(Int64(stopGrace * 1000))
    }

    /// Reads the secret.
    /// - Throws: ``PluginError`` when the file cannot be read, the variable is unset, or either is empty.
    func readSecret() throws -> String {
        switch self.secretSource {
        case .file(let path):
            let text: String
            do {
                text = try String(contentsOfFile: path, encoding: .utf8)
            } catch {
                throw PluginError.invalidValue("secret_file", "cannot read \(path): \(HostConfiguration.reason(error))")
            }
            let secret = text.trimmingCharacters(in: .newlines)
            guard !secret.isEmpty else { throw PluginError.invalidValue("secret_file", "\(path) is empty") }
            return secret
        case .environment(let name):
            guard let secret = ProcessInfo.processInfo.environment[name], !secret.isEmpty else {
                throw PluginError.invalidValue("secret_env", "the environment variable \(name) is not set or is empty")
            }
            return secret
        }
    }
}

/// A local listener's address: loopback TCP or a Unix socket (created with mode 0600).
enum ListenAddress: Hashable, Sendable, CustomStringConvertible {
    /// A TCP port on a loopback address.
    case tcp(host: String, port: Int)
    /// A Unix-domain socket path.
    case unix(path: String)

    /// Parses `host:port` (loopback only: `127.0.0.0/8`, `::1` as `[::1]:port`, `localhost`) or `unix:/absolute/path`.
    /// - Throws: ``PluginError`` on option `listen` saying what is accepted.
    init(parsing text: String) throws {
        let accepted = "expected a loopback \"127.0.0.1:PORT\", \"[::1]:PORT\", \"localhost:PORT\" or \"unix:/absolute/path\""
        if text.hasPrefix("unix:") {
            let path = String(text.dropFirst(5))
            guard path.hasPrefix("/") else {
                throw PluginError.invalidValue("listen", "'\(text)': a Unix socket path must be absolute; \(accepted)")
            }
            guard path.utf8.count < 90 else {
                throw PluginError.invalidValue("listen", "'\(text)': the socket path is too long (at most 89 bytes)")
            }
            self = .unix(path: path)
            return
        }
        let host: String
        let portText: String
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                throw PluginError.invalidValue("listen", "'\(text)' is not an address; \(accepted)")
            }
            host = String(text[text.index(after: text.startIndex)..<close])
            portText = String(text[text.index(close, offsetBy: 2)...])
        } else {
            guard let colon = text.lastIndex(of: ":"), !text[..<colon].contains(":") else {
                throw PluginError.invalidValue("listen", "'\(text)' is not an address; \(accepted)")
            }
            host = String(text[..<colon])
            portText = String(text[text.index(after: colon)...])
        }
        guard let port = Int(portText), (1...65535).contains(port) else {
            throw PluginError.invalidValue("listen", "'\(text)': the port must be 1 to 65535; \(accepted)")
        }
        guard Self.isLoopback(host) else {
            throw PluginError.invalidValue(
                "listen",
                "'\(text)' is not a loopback address: the local XEP-0114 listener carries a cleartext handshake and is "
                    + "only offered on loopback or a Unix socket; \(accepted)")
        }
        self = .tcp(host: host.lowercased() == "localhost" ? "127.0.0.1" : host, port: port)
    }

    static func isLoopback(_ host: String) -> Bool {
        if host.lowercased() == "localhost" || host == "::1" { return true }
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return false }
        let octets = parts.compactMap { UInt8($0) }
        return octets.count == 4 && octets[0] == 127
    }

    /// `host:port` (`[::1]:port`) or `unix:/path`: what the component is told to connect to.
    var description: String {
        switch self {
        case .tcp(let host, let port): host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        case .unix(let path): "unix:\(path)"
        }
    }
}
