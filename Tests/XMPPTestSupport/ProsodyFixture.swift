public import Foundation

/// A real Prosody server on 127.0.0.1, configured at run time in a temporary directory and
/// run in the foreground as the `prosody` user (when the tests run as root).
///
/// ```swift
/// let prosody = try await ProsodyFixture.start(.init(
///     components: [.init(hostname: "echo.localhost", secret: "s3cret")],
///     accounts: [.init(username: "alice", password: "pw")]))
/// defer { prosody.stop() }
/// // c2s on prosody.c2sPort (STARTTLS, verify against prosody.caCertificatePath),
/// // XEP-0114 on prosody.componentPort
/// ```
///
/// Every listener binds 127.0.0.1 on ports from ``FreePort``; ``restart()`` keeps the ports
/// and the data. The server is stopped by process ID; if a test forgets to, the
/// ``TestProcessRegistry`` kills it at exit.
public final class ProsodyFixture: @unchecked Sendable {
    // @unchecked: `process` is guarded by `lock`; everything else is immutable.

    /// A `Component "hostname"` block: XEP-0114 (`mod_component`) by default, or
    /// `Component "hostname" "module"` for a component module such as `component_xep0225`.
    public struct Component: Sendable, Hashable {
        /// The component's hostname.
        public var hostname: String
        /// Its `component_secret`; `nil` writes none (e.g. a hostname that
        /// `mod_component_xep0225` only lets an identity bind).
        public var secret: String?
        /// The component module (`Component "hostname" "module"`); `nil` for Prosody's XEP-0114 `mod_component`.
        public var module: String?
        /// Extra raw Lua lines inside the block (e.g. `modules_enabled = { ... }`).
        public var extraLines: [String]

        /// Creates a component block.
        public init(hostname: String, secret: String?, module: String? = nil, extraLines: [String] = []) {
            self.hostname = hostname
            self.secret = secret
            self.module = module
            self.extraLines = extraLines
        }
    }

    /// A c2s account on the virtual host.
    public struct Account: Sendable, Hashable {
        /// The localpart.
        public var username: String
        /// The password.
        public var password: String

        /// Creates an account.
        public init(username: String, password: String) {
            self.username = username
            self.password = password
        }
    }

    /// What to run.
    public struct Configuration: Sendable {
        /// The `VirtualHost`; also the domain of the certificate (with `*.domain`).
        public var domain: String
        /// The components.
        public var components: [Component]
        /// Accounts registered with `prosodyctl` before start.
        public var accounts: [Account]
        /// Whether to open a direct-TLS port (`ssl_ports`, through `mod_net_multiplex`) on
        /// which components (and clients) speak TLS from the first byte.
        public var directTLSPort: Bool
        /// Extra module directories (`plugin_paths`).
        public var pluginPaths: [String]
        /// Extra global modules (`modules_enabled`).
        public var extraModules: [String]
        /// Raw Lua lines in the global section (e.g. settings of an extra module).
        public var extraGlobalLines: [String]
        /// Whether to allocate a port for `mod_component_xep0225` (written as
        /// `component_xep0225_ports` on 127.0.0.1 and waited for at start). The module itself
        /// comes from ``pluginPaths`` and a `Component "…" "component_xep0225"` block.
        public var xep0225Port: Bool
        /// Raw Lua lines inside the `VirtualHost` block.
        public var extraVirtualHostLines: [String]
        /// The minimum log level written to the log file.
        public var logLevel: String
        /// How long start-up may take before the fixture fails (with the log tail).
        public var startupTimeout: Duration

        /// Creates a configuration.
        public init(
            domain: String = "localhost",
            components: [Component] = [],
            accounts: [Account] = [],
            directTLSPort: Bool = false,
            pluginPaths: [String] = [],
            extraModules: [String] = [],
            extraGlobalLines: [String] = [],
            xep0225Port: Bool = false,
            extraVirtualHostLines: [String] = [],
            logLevel: String = "debug",
            startupTimeout: Duration = .seconds(15)
        ) {
            self.domain = domain
            self.components = components
            self.accounts = accounts
            self.directTLSPort = directTLSPort
            self.pluginPaths = pluginPaths
            self.extraModules = extraModules
            self.extraGlobalLines = extraGlobalLines
            self.xep0225Port = xep0225Port
            self.extraVirtualHostLines = extraVirtualHostLines
            self.logLevel = logLevel
            self.startupTimeout = startupTimeout
        }
    }

    /// The programs the fixture runs.
    public static let prosodyExecutable = "/usr/bin/prosody"
    /// `prosodyctl`, for accounts.
    public static let prosodyctlExecutable = "/usr/bin/prosodyctl"

    /// The configuration it was started with.
    public let configuration: Configuration
    /// The virtual host.
    public var domain: String { self.configuration.domain }
    /// The c2s port (STARTTLS).
    public let c2sPort: Int
    /// The XEP-0114 component port (plain TCP). Prosody listens on it only when at least one
    /// component is configured.
    public let componentPort: Int
    /// The direct-TLS port, when ``Configuration/directTLSPort`` is set.
    public let directTLSPort: Int?
    /// The `mod_component_xep0225` port (STARTTLS), when ``Configuration/xep0225Port`` is set.
    public let xep0225Port: Int?
    /// The CA certificate that signed the server certificate: the clients' trust root.
    public let caCertificatePath: String
    /// The server certificate (SANs: the domain, `*.domain` and every component).
    public let certificate: TestCertificateAuthority.Leaf
    /// Prosody's log file.
    public let logPath: String
    /// The generated configuration file.
    public let configPath: String
    /// The temporary directory with config, data, pid file and logs.
    public let directory: TemporaryDirectory
    /// The time the last (re)start took until every port accepted connections.
    public var lastStartupDuration: Duration { self.lock.withLock { self.startupDuration } }

    private let authority: TestCertificateAuthority
    private let user: SystemUser?
    private let lock = NSLock()
    private var process: TestProcess?
    private var starts = 0
    private var startupDuration: Duration = .zero

    /// Writes the configuration, registers the accounts and starts Prosody; returns once
    /// every port accepts connections.
    /// - Parameter configuration: What to run.
    /// - Throws: ``TestSupportError`` (with what to install when Prosody is missing, or the
    ///   log tail when it does not come up).
    public static func start(_ configuration: Configuration = .init()) async throws -> ProsodyFixture {
        try ServerInstallation.require(
            "prosody", executables: [Self.prosodyExecutable, Self.prosodyctlExecutable], user: "prosody")
        // Ports are chosen free, but another test may take one before Prosody binds it (a
        // server restarted on its old port, say): Prosody then logs the failure and runs on
        // without that listener, and the port answers as someone else. Try again on new ports.
        var attempt = 0
        while true {
            attempt += 1
            let fixture = try await ProsodyFixture(configuration: configuration)
            do {
                for account in configuration.accounts {
                    try await fixture.register(username: account.username, password: account.password)
                }
                try await fixture.launch()
                return fixture
            } catch let error as PortTaken where attempt < 3 {
                fixture.kill()
                fixture.directory.remove()
                print("ProsodyFixture: \(error); trying again on new ports")
            } catch {
                fixture.kill()
                throw error
            }
        }
    }

    /// Prosody could not listen on a port chosen for it (taken meanwhile).
    struct PortTaken: Error, CustomStringConvertible {
        let description: String
    }

    private init(configuration: Configuration) async throws {
        self.configuration = configuration
        self.user = SystemUser.isRoot ? SystemUser.named("prosody") : nil
        self.directory = try TemporaryDirectory(prefix: "xmpp-test-prosody")
        self.authority = try await TestCertificateAuthority(commonName: "Prosody fixture CA")
        var names = [configuration.domain, "*." + configuration.domain]
        for hostname in configuration.components.map(\.hostname) where !names.contains(hostname) {
            names.append(hostname)
        }
        self.certificate = try await self.authority.issue(commonName: configuration.domain, dnsNames: names, owner: self.user)
        self.caCertificatePath = self.authority.certificatePath
        var ports = try FreePort.allocate(count: 2 + (configuration.directTLSPort ? 1 : 0) + (configuration.xep0225Port ? 1 : 0))
        self.c2sPort = ports.removeFirst()
        self.componentPort = ports.removeFirst()
        self.directTLSPort = configuration.directTLSPort ? ports.removeFirst() : nil
        self.xep0225Port = configuration.xep0225Port ? ports.removeFirst() : nil
        self.logPath = self.directory.path("prosody.log")
        self.configPath = self.directory.path("prosody.cfg.lua")
        try FileManager.default.createDirectory(atPath: self.directory.path("data"), withIntermediateDirectories: true)
        try self.renderConfiguration().write(toFile: self.configPath, atomically: true, encoding: .utf8)
        try self.user?.own(self.directory.path)
    }

    deinit {
        self.process?.kill()
    }

    /// The process ID of the running server, or `nil`.
    public var pid: pid_t? {
        self.lock.withLock { self.process?.isRunning == true ? self.process?.pid : nil }
    }

    /// Every process of the current run seen so far (the server), for checks after ``stop()``.
    public func processIdentities() -> [ProcessTree.Identity] {
        self.lock.withLock { self.process?.processIdentities() ?? [] }
    }

    /// The log file's content (empty if there is none yet).
    public var log: String {
        (try? String(contentsOfFile: self.logPath, encoding: .utf8)) ?? ""
    }

    /// Registers a c2s account with `prosodyctl --config CFG register` (works while running).
    /// - Parameters:
    ///   - username: The localpart.
    ///   - password: The password.
    /// - Throws: ``TestSupportError`` when `prosodyctl` fails.
    public func register(username: String, password: String) async throws {
        let arguments = [Self.prosodyctlExecutable, "--config", self.configPath, "register", username, self.domain, password]
        let command = (self.user?.commandPrefix ?? []) + arguments
        let result = try await runCommand(
            command[0], Array(command.dropFirst()), environment: self.environment, workingDirectory: self.directory.path)
        guard result.status == 0 else {
            throw TestSupportError("prosodyctl register \(username)@\(self.domain) exited \(result.status): \(result.output)")
        }
    }

    /// Stops the server gracefully (SIGTERM, SIGKILL after 5 s) and waits until it has exited.
    public func stop() {
        let process = self.lock.withLock { () -> TestProcess? in
            defer { self.process = nil }
            return self.process
        }
        process?.terminate(grace: .seconds(5))
    }

    /// Kills the server at once (SIGKILL) and reaps it.
    public func kill() {
        let process = self.lock.withLock { () -> TestProcess? in
            defer { self.process = nil }
            return self.process
        }
        process?.kill()
    }

    /// Stops the server and starts it again with the same configuration, ports and data.
    /// - Throws: ``TestSupportError`` when it does not come back.
    public func restart() async throws {
        self.stop()
        try await self.launch()
    }

    /// Starts the server (after ``stop()``), with the same ports and data.
    /// - Throws: ``TestSupportError`` when it does not come up.
    public func launch() async throws {
        let (process, run) = try self.lock.withLock { () throws -> (TestProcess, Int) in
            guard self.process == nil else { throw TestSupportError("Prosody is already running") }
            self.starts += 1
            let command =
                (self.user?.commandPrefix ?? []) + [Self.prosodyExecutable, "--config", self.configPath, "-F"]
            let process = TestProcess(
                executable: command[0], arguments: Array(command.dropFirst()), environment: self.environment,
                workingDirectory: self.directory.path, outputPath: self.directory.path("prosody.stdout.\(self.starts)"))
            self.process = process
            return (process, self.starts)
        }
        let began = ContinuousClock.now
        try process.start()
        // Prosody opens the component port only when at least one XEP-0114 Component is configured.
        var ports = [self.c2sPort]
        if self.configuration.components.contains(where: { $0.module == nil }) { ports.append(self.componentPort) }
        if let directTLSPort { ports.append(directTLSPort) }
        if let xep0225Port { ports.append(xep0225Port) }
        do {
            try await waitForPorts(ports, process: process, timeout: self.configuration.startupTimeout, server: "Prosody") {
                "command: \(process.commandLine) (start #\(run))\noutput:\n\(process.output.tail(20))\n"
                    + "log \(self.logPath):\n\(self.log.tail(40))"
            }
        } catch {
            self.kill()
            throw error
        }
        // Accepting is not enough: the port may be someone else's if Prosody failed to bind it.
        if let line = self.log.split(separator: "\n").first(where: { $0.contains("Failed to open server port") }) {
            self.kill()
            throw PortTaken(description: "Prosody could not listen on a port chosen for it: \(line)")
        }
        self.lock.withLock { self.startupDuration = ContinuousClock.now - began }
    }

    private var environment: [String: String] {
        [
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": self.directory.path,
            "LANG": "C.UTF-8",
        ]
    }

    private func renderConfiguration() -> String {
        let c = self.configuration
        var modules = ["saslauth", "tls", "disco", "ping", "roster"]
        if c.directTLSPort { modules.append("net_multiplex") }
        modules += c.extraModules
        let ssl = "{ certificate = \(lua(self.certificate.certificatePath)); key = \(lua(self.certificate.keyPath)) }"
        var lines = [
            "-- Generated by XMPPTestSupport.ProsodyFixture",
            "pidfile = \(lua(self.directory.path("prosody.pid")))",
            "data_path = \(lua(self.directory.path("data")))",
            "log = { { levels = { min = \(lua(c.logLevel)) }, to = \"file\", filename = \(lua(self.logPath)) } }",
            "interfaces = { \"127.0.0.1\" }",
            "local_interfaces = { \"127.0.0.1\" }",
            "c2s_ports = { \(self.c2sPort) }",
            "c2s_interfaces = { \"127.0.0.1\" }",
            "c2s_direct_tls_ports = { }",
            "s2s_ports = { }",
            "s2s_interfaces = { \"127.0.0.1\" }",
            "component_ports = { \(self.componentPort) }",
            "component_interfaces = { \"127.0.0.1\" }",
            "ssl_ports = { \(self.directTLSPort.map(String.init) ?? "") }",
            "ssl_interfaces = { \"127.0.0.1\" }",
            "http_ports = { }",
            "https_ports = { }",
            "modules_enabled = { \(modules.map(lua).joined(separator: "; ")) }",
            "modules_disabled = { \"s2s\"; \"offline\" }",
            "authentication = \"internal_hashed\"",
            "storage = \"internal\"",
            "c2s_require_encryption = true",
            "allow_registration = false",
            "certificates = \(lua(self.directory.path("certs")))",
            "ssl = \(ssl)",
        ]
        if !c.pluginPaths.isEmpty {
            lines.append("plugin_paths = { \(c.pluginPaths.map(lua).joined(separator: "; ")) }")
        }
        if let xep0225Port {
            lines += [
                "component_xep0225_ports = { \(xep0225Port) }",
                "component_xep0225_interfaces = { \"127.0.0.1\" }",
            ]
        }
        lines += c.extraGlobalLines
        lines += ["", "VirtualHost \(lua(c.domain))", "    ssl = \(ssl)"]
        lines += c.extraVirtualHostLines.map { "    " + $0 }
        for component in c.components {
            lines += ["", "Component \(lua(component.hostname))" + (component.module.map { " " + lua($0) } ?? "")]
            if let secret = component.secret { lines.append("    component_secret = \(lua(secret))") }
            lines += component.extraLines.map { "    " + $0 }
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

/// A Lua string literal.
private func lua(_ value: String) -> String {
    var result = "\""
    for scalar in value.unicodeScalars {
        switch scalar {
        case "\\": result += "\\\\"
        case "\"": result += "\\\""
        case "\n": result += "\\n"
        case "\r": result += "\\r"
        case "\0": result += "\\0"
        default: result.unicodeScalars.append(scalar)
        }
    }
    return result + "\""
}
