public import Foundation

/// A real ejabberd 23.01 on 127.0.0.1, configured at run time in a temporary directory and
/// run in the foreground (`ejabberdctl … foreground`) as the `ejabberd` user (when the tests
/// run as root).
///
/// ```swift
/// let ejabberd = try await EjabberdFixture.start(.init(
///     services: [.init(hostname: "echo.localhost", password: "s3cret")],
///     accounts: [.init(username: "alice", password: "pw")]))
/// defer { ejabberd.stop() }
/// // c2s on ejabberd.c2sPort (STARTTLS), XEP-0114 over direct TLS on ejabberd.componentTLSPort
/// ```
///
/// ## Processes
///
/// The Erlang node is started with a fixed distribution port (`ERL_DIST_PORT`, bound to
/// 127.0.0.1), so neither the node nor `ejabberdctl` commands ever start `epmd`; the node
/// name and cookie are unique per fixture. (A node of an ``EjabberdClusterFixture`` instead
/// registers with the cluster's own `epmd`, on a port of its own.) The process tree is
/// `ejabberdctl` (bash) → `beam.smp` → `erl_child_setup`; ``stop()`` sends SIGTERM to
/// `beam.smp` (a clean Erlang shutdown), then reaps the rest, with SIGKILL for anything
/// left after the grace period.
///
/// ## Ports taken by someone else
///
/// Ports are chosen free just before start-up, but another test may bind one before
/// ejabberd does (a server restarted on its old port, say). ejabberd then logs
/// `Failed to open socket at 127.0.0.1:PORT for MODULE: address already in use` and the
/// node stops, while the port answers as someone else; a distribution port taken makes
/// `beam.smp` exit with `eaddrinuse`. A start counts only when ejabberd's own log says
/// `Start accepting TCP connections at 127.0.0.1:PORT` (`TLS connections` for `tls: true`)
/// for every listener, in the log written by this start, not an earlier one; on either
/// failure ``start(_:)`` starts again on new ports (three attempts).
public final class EjabberdFixture: @unchecked Sendable {
    // @unchecked: `process` and `startupDuration` are guarded by `lock`; the rest is immutable.

    /// A hostname served by an `ejabberd_service` listener (`hosts:` map entry).
    public struct Service: Sendable, Hashable {
        /// The component hostname.
        public var hostname: String
        /// Its password (the XEP-0114 shared secret).
        public var password: String

        /// Creates a service entry.
        public init(hostname: String, password: String) {
            self.hostname = hostname
            self.password = password
        }
    }

    /// A c2s account.
    public typealias Account = ProsodyFixture.Account

    /// What to run.
    public struct Configuration: Sendable {
        /// The served domain (`hosts:`); also the certificate's domain (with `*.domain`).
        public var domain: String
        /// Hostnames on the direct-TLS `ejabberd_service` listener (`tls: true`).
        public var services: [Service]
        /// Hostnames on a second, plain-TCP `ejabberd_service` listener; none opens no such listener.
        public var plainServices: [Service]
        /// Extra options of the direct-TLS `ejabberd_service` listener, as raw `key: value` YAML
        /// (e.g. `global_routes: false`: each connection routes only the hostname it
        /// authenticated for, instead of every hostname of the listener).
        public var serviceListenerOptions: [String]
        /// The module of the direct-TLS service listener (`module:`): `ejabberd_service`, or a
        /// compatible one given in ``erlangModules``, e.g. `ejabberd_service_acks`
        /// (ServerModules/ejabberd: XEP-0114 with acknowledgements).
        public var serviceListenerModule: String
        /// Accounts registered with `ejabberdctl register` after start.
        public var accounts: [Account]
        /// Raw YAML lines appended at the top level (e.g. more `modules:` are not possible
        /// this way; use ``extraModules``).
        public var extraTopLevelYAML: [String]
        /// Extra modules: name → raw YAML options (`{}` for none).
        public var extraModules: [String: String]
        /// Erlang source files of extra ejabberd modules (e.g.
        /// `ServerModules/ejabberd/mod_component_balancing.erl`): compiled with `erlc` into
        /// the fixture's directory (`ebin/`), which is added to the node's code path
        /// (`-pa` in `ERL_OPTIONS`); enable them through ``extraModules``.
        public var erlangModules: [String]
        /// `loglevel`.
        public var logLevel: String
        /// How long start-up may take before the fixture fails (with the log tail).
        public var startupTimeout: Duration

        /// Creates a configuration.
        public init(
            domain: String = "localhost",
            services: [Service] = [],
            plainServices: [Service] = [],
            serviceListenerOptions: [String] = [],
            serviceListenerModule: String = "ejabberd_service",
            accounts: [Account] = [],
            extraTopLevelYAML: [String] = [],
            extraModules: [String: String] = [:],
            erlangModules: [String] = [],
            logLevel: String = "info",
            startupTimeout: Duration = .seconds(60)
        ) {
            self.domain = domain
            self.services = services
            self.plainServices = plainServices
            self.serviceListenerOptions = serviceListenerOptions
            self.serviceListenerModule = serviceListenerModule
            self.accounts = accounts
            self.extraTopLevelYAML = extraTopLevelYAML
            self.extraModules = extraModules
            self.erlangModules = erlangModules
            self.logLevel = logLevel
            self.startupTimeout = startupTimeout
        }
    }

    /// `ejabberdctl`.
    public static let ejabberdctlExecutable = "/usr/sbin/ejabberdctl"
    /// The Erlang emulator `ejabberdctl` runs.
    public static let erlExecutable = "/usr/bin/erl"

    /// The configuration it was started with.
    public let configuration: Configuration
    /// The served domain.
    public var domain: String { self.configuration.domain }
    /// The c2s port (STARTTLS required).
    public let c2sPort: Int
    /// The `ejabberd_service` port with direct TLS (`tls: true`).
    public let componentTLSPort: Int
    /// The plain `ejabberd_service` port, when ``Configuration/plainServices`` is not empty.
    public let componentPlainPort: Int?
    /// The Erlang distribution port (127.0.0.1) the node listens on: `ejabberdctl` commands
    /// use it directly, or, for a node of an ``EjabberdClusterFixture``, find it through the
    /// cluster's `epmd`.
    public let distributionPort: Int
    /// The Erlang node name (`name@localhost`), unique per fixture (or per cluster node).
    public let nodeName: String
    /// The CA certificate that signed the server certificate: the clients' trust root.
    public let caCertificatePath: String
    /// The server certificate (SANs: the domain, `*.domain` and every service hostname).
    public let certificate: TestCertificateAuthority.Leaf
    /// ejabberd's main log file.
    public let logPath: String
    /// The generated `ejabberd.yml`.
    public let configPath: String
    /// The generated `ejabberdctl.cfg`.
    public let ctlConfigPath: String
    /// The temporary directory with configs, spool (Mnesia), logs and pid file.
    public let directory: TemporaryDirectory

    private let authority: TestCertificateAuthority
    private let user: SystemUser?
    private let cookie: String
    private let cluster: ClusterMembership?
    private let lock = NSLock()
    private var process: TestProcess?
    private var starts = 0
    private var startupDuration: Duration = .zero

    /// Writes the configuration, starts ejabberd, waits until every listener accepts
    /// connections, and registers the accounts. A port taken by someone else before ejabberd
    /// bound it makes it start again on new ports (see the type's notes).
    /// - Parameter configuration: What to run.
    /// - Throws: ``TestSupportError`` (with what to install when ejabberd is missing, or the
    ///   log tail when it does not come up).
    public static func start(_ configuration: Configuration = .init()) async throws -> EjabberdFixture {
        try Self.requireInstallation()
        var attempt = 0
        while true {
            attempt += 1
            let fixture = try await EjabberdFixture(configuration: configuration)
            do {
                try await fixture.launch()
                for account in configuration.accounts {
                    try await fixture.register(username: account.username, password: account.password)
                }
                return fixture
            } catch let error as PortTaken where attempt < 3 {
                fixture.kill()
                fixture.directory.remove()
                print("EjabberdFixture: \(error); trying again on new ports")
            } catch {
                fixture.kill()
                throw error
            }
        }
    }

    /// ejabberd (or its Erlang node) could not listen on a port chosen for it (taken meanwhile).
    struct PortTaken: Error, CustomStringConvertible {
        let description: String
    }

    /// What makes a node a member of a cluster: the cluster's `epmd` (instead of a fixed
    /// distribution port, which would make every node expect the others on that same port)
    /// and the cookie all nodes share.
    struct ClusterMembership: Sendable {
        /// The port of the cluster's own `epmd` on 127.0.0.1 (`ERL_EPMD_PORT`).
        var epmdPort: Int
        /// The cookie shared by every node of the cluster.
        var cookie: String
        /// The node's name, e.g. `xmpptest…-a@localhost`.
        var nodeName: String
    }

    /// Fails with what to install when ejabberd is missing, or when the tests cannot run it.
    static func requireInstallation() throws {
        try ServerInstallation.require(
            "ejabberd", executables: [Self.ejabberdctlExecutable, Self.erlExecutable], user: "ejabberd")
        if !SystemUser.isRoot, SystemUser.named("ejabberd")?.uid != geteuid() {
            throw TestSupportError("ejabberdctl runs only as root or as the 'ejabberd' user; run the tests as root")
        }
    }

    /// Prepares a node (nothing runs until ``launch()``).
    /// - Parameters:
    ///   - configuration: What to run.
    ///   - certificate: A CA and a leaf certificate to use instead of new ones (a cluster's
    ///     nodes share one, so that clients trust one CA).
    ///   - cluster: The cluster the node belongs to, or `nil` for a standalone node.
    init(
        configuration: Configuration, certificate: (TestCertificateAuthority, TestCertificateAuthority.Leaf)? = nil,
        cluster: ClusterMembership? = nil
    ) async throws {
        self.configuration = configuration
        self.user = SystemUser.isRoot ? SystemUser.named("ejabberd") : nil
        self.directory = try TemporaryDirectory(prefix: "xmpp-test-ejabberd")
        if let (authority, leaf) = certificate {
            self.authority = authority
            self.certificate = leaf
        } else {
            self.authority = try await TestCertificateAuthority(commonName: "ejabberd fixture CA")
            self.certificate = try await self.authority.issue(
                commonName: configuration.domain, dnsNames: Self.certificateNames(configuration), owner: self.user)
        }
        self.caCertificatePath = self.authority.certificatePath
        let ports = try FreePort.allocate(count: configuration.plainServices.isEmpty ? 3 : 4)
        self.c2sPort = ports[0]
        self.componentTLSPort = ports[1]
        self.distributionPort = ports[2]
        self.componentPlainPort = configuration.plainServices.isEmpty ? nil : ports[3]
        self.cluster = cluster
        let unique = UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        self.nodeName = cluster?.nodeName ?? "xmpptest\(unique.prefix(12))@localhost"
        self.cookie = cluster?.cookie ?? "c" + unique
        self.logPath = self.directory.path("logs/ejabberd.log")
        self.configPath = self.directory.path("ejabberd.yml")
        self.ctlConfigPath = self.directory.path("ejabberdctl.cfg")
        for sub in ["spool", "logs", "ebin"] {
            try FileManager.default.createDirectory(atPath: self.directory.path(sub), withIntermediateDirectories: true)
        }
        for source in configuration.erlangModules {
            try await Self.compileModule(source, into: self.directory.path("ebin"))
        }
        try self.renderConfiguration().write(toFile: self.configPath, atomically: true, encoding: .utf8)
        try self.renderControlConfiguration().write(toFile: self.ctlConfigPath, atomically: true, encoding: .utf8)
        _ = chmod(self.ctlConfigPath, 0o600)  // holds the cookie
        try self.user?.own(self.directory.path)
    }

    /// Compiles an ejabberd module with `erlc` against the installed ejabberd's and its XMPP
    /// library's headers.
    /// - Parameters:
    ///   - source: The `.erl` file.
    ///   - directory: Where the `.beam` goes.
    /// - Throws: ``TestSupportError`` with `erlc`'s output when it fails, or when the headers
    ///   are not installed.
    public static func compileModule(_ source: String, into directory: String) async throws {
        let command = try Self.erlcCommand(source, into: directory)
        let result = try await runCommand(command[0], Array(command.dropFirst()), timeout: .seconds(120))
        guard result.status == 0 else {
            throw TestSupportError("\(command.joined(separator: " ")) exited \(result.status):\n\(result.output)")
        }
    }

    /// The `erlc` command line that compiles `source` into `directory`: include paths of
    /// ejabberd (`/usr/lib/<arch>/ejabberd-<version>/include`) and of its XMPP library
    /// (`/usr/lib/erlang/lib/p1_xmpp-<version>/include`), ejabberd's `ebin` for the
    /// `gen_mod` behaviour.
    static func erlcCommand(_ source: String, into directory: String) throws -> [String] {
        let files = FileManager.default
        func newest(in parent: String, prefix: String) -> String? {
            ((try? files.contentsOfDirectory(atPath: parent)) ?? []).filter { $0.hasPrefix(prefix) }.sorted().last
                .map { parent + "/" + $0 }
        }
        let architectures = ((try? files.contentsOfDirectory(atPath: "/usr/lib")) ?? []).filter { $0.hasSuffix("-linux-gnu") }
        guard let ejabberd = architectures.lazy.compactMap({ newest(in: "/usr/lib/" + $0, prefix: "ejabberd-") }).first,
            files.fileExists(atPath: ejabberd + "/include/ejabberd_router.hrl"),
            let xmpp = newest(in: "/usr/lib/erlang/lib", prefix: "p1_xmpp-")
        else {
            throw TestSupportError(
                "ejabberd's or its XMPP library's Erlang headers are missing (/usr/lib/<arch>/ejabberd-*/include, "
                    + "/usr/lib/erlang/lib/p1_xmpp-*/include): install ejabberd and erlang-dev (scripts/setup.sh)")
        }
        return [
            "/usr/bin/erlc", "-o", directory, "-I", ejabberd + "/include", "-I", xmpp + "/include",
            "-pa", ejabberd + "/ebin", source,
        ]
    }

    /// The names the server certificate carries: the domain, `*.domain` and every service hostname.
    static func certificateNames(_ configuration: Configuration) -> [String] {
        var names = [configuration.domain, "*." + configuration.domain]
        for hostname in (configuration.services + configuration.plainServices).map(\.hostname)
        where !names.contains(hostname) {
            names.append(hostname)
        }
        return names
    }

    deinit {
        self.process?.kill()
    }

    /// The `ejabberdctl` process ID (the fixture's root process), or `nil` when not running.
    public var pid: pid_t? {
        self.lock.withLock { self.process?.isRunning == true ? self.process?.pid : nil }
    }

    /// The `beam.smp` process ID (from `EJABBERD_PID_PATH`), or `nil`.
    public var beamPID: pid_t? {
        guard let text = try? String(contentsOfFile: self.directory.path("ejabberd.pid"), encoding: .utf8),
            let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), ProcessTree.isAlive(pid)
        else { return nil }
        return pid
    }

    /// Every process of the current run seen so far (`ejabberdctl`, `beam.smp`,
    /// `erl_child_setup`), for checks after ``stop()``.
    public func processIdentities() -> [ProcessTree.Identity] {
        self.lock.withLock { self.process?.processIdentities() ?? [] }
    }

    /// The time the last (re)start took until every listener accepted connections.
    public var lastStartupDuration: Duration { self.lock.withLock { self.startupDuration } }

    /// The main log file's content.
    public var log: String {
        (try? String(contentsOfFile: self.logPath, encoding: .utf8)) ?? ""
    }

    private var logData: Data {
        FileManager.default.contents(atPath: self.logPath) ?? Data()
    }

    /// Runs an `ejabberdctl` command against the running node (through the distribution
    /// port; no `epmd`).
    /// - Parameters:
    ///   - arguments: The command and its arguments, e.g. `["registered_users", "localhost"]`.
    ///   - timeout: The deadline.
    /// - Returns: The exit status and output.
    public func ctl(_ arguments: [String], timeout: Duration = .seconds(30)) async throws -> (status: Int32, output: String) {
        let command = (self.user?.commandPrefix ?? []) + [Self.ejabberdctlExecutable] + self.pathArguments + arguments
        return try await runCommand(
            command[0], Array(command.dropFirst()), environment: self.environment,
            workingDirectory: self.directory.path, timeout: timeout)
    }

    /// Registers a c2s account with `ejabberdctl register` (the server must be running).
    ///
    /// Right after start-up the listeners may accept connections before every module is up,
    /// and the command then fails with an "Unhandled exception"; it is retried for up to
    /// `timeout`. "already registered" is a definite answer and is not retried.
    /// - Throws: ``TestSupportError`` when the command fails.
    public func register(username: String, password: String, timeout: Duration = .seconds(15)) async throws {
        let deadline = ContinuousClock.now + timeout
        while true {
            let result = try await self.ctl(["register", username, self.domain, password])
            if result.status == 0 { return }
            if result.output.contains("already registered") || ContinuousClock.now >= deadline {
                throw TestSupportError(
                    "ejabberdctl register \(username)@\(self.domain) exited \(result.status): \(result.output)")
            }
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    /// Stops the server: SIGTERM to `beam.smp` (a clean shutdown), then waits for every
    /// process of the tree, with SIGKILL after `grace`. Returns once all have exited.
    /// - Parameter grace: How long the clean shutdown may take.
    public func stop(grace: Duration = .seconds(15)) {
        let process = self.lock.withLock { () -> TestProcess? in
            defer { self.process = nil }
            return self.process
        }
        guard let process else { return }
        let identities = process.processIdentities()
        if let beam = identities.first(where: { $0.command == "beam.smp" }) {
            ProcessTree.signal(beam, SIGTERM)
            let deadline = ContinuousClock.now + grace
            while ContinuousClock.now < deadline, ProcessTree.isAlive(beam) {
                usleep(20_000)
            }
        }
        process.terminate(grace: .seconds(2))
    }

    /// Kills every process of the server at once (SIGKILL) and reaps the root.
    public func kill() {
        let process = self.lock.withLock { () -> TestProcess? in
            defer { self.process = nil }
            return self.process
        }
        process?.kill()
    }

    /// Stops the server and starts it again with the same configuration, node name, ports and
    /// data (accounts survive in the Mnesia spool).
    /// - Throws: ``TestSupportError`` when it does not come back.
    public func restart() async throws {
        self.stop()
        try await self.launch()
    }

    /// Starts the server (after ``stop()``), with the same ports and data.
    /// - Throws: ``TestSupportError`` when it does not come up.
    public func launch() async throws {
        let (process, run) = try self.lock.withLock { () throws -> (TestProcess, Int) in
            guard self.process == nil else { throw TestSupportError("ejabberd is already running") }
            self.starts += 1
            let command =
                (self.user?.commandPrefix ?? []) + [Self.ejabberdctlExecutable] + self.pathArguments + ["foreground"]
            let process = TestProcess(
                executable: command[0], arguments: Array(command.dropFirst()), environment: self.launchEnvironment,
                workingDirectory: self.directory.path,
                outputPath: self.directory.path("ejabberd.stdout.\(self.starts)"))
            self.process = process
            return (process, self.starts)
        }
        let began = ContinuousClock.now
        // Only what this start writes counts (the log file survives restarts).
        let logOffset = self.logData.count
        try process.start()
        var ports = [self.c2sPort, self.componentTLSPort]
        if let componentPlainPort { ports.append(componentPlainPort) }
        do {
            do {
                try await waitForPorts(ports, process: process, timeout: self.configuration.startupTimeout, server: "ejabberd") {
                    "command: \(process.commandLine) (start #\(run))\noutput:\n\(process.output.tail(20))\n"
                        + "log \(self.logPath):\n\(self.log.tail(40))"
                }
            } catch {
                try self.checkPorts(ports, logOffset: logOffset, process: process)
                throw error
            }
            // The listeners accept before the virtual host is served ("Unknown virtual host"
            // from ejabberdctl right after a restart): ready means the host answers, and every
            // listener's port is ejabberd's own (its log says so).
            let ready = ContinuousClock.now + self.configuration.startupTimeout
            while true {
                let ownPorts = try self.checkPorts(ports, logOffset: logOffset, process: process)
                if ownPorts {
                    let users = try await self.ctl(["registered_users", self.domain])
                    if users.status == 0 { break }
                    guard ContinuousClock.now < ready else {
                        throw TestSupportError(
                            "ejabberd listens but does not serve \(self.domain) within \(self.configuration.startupTimeout): "
                                + "\(users.output)\nlog \(self.logPath):\n\(self.log.tail(40))")
                    }
                } else if let status = process.terminationStatus {
                    throw TestSupportError(
                        "ejabberd exited with status \(status) during start-up\noutput:\n\(process.output.tail(20))\n"
                            + "log \(self.logPath):\n\(self.log.tail(40))")
                } else if ContinuousClock.now >= ready {
                    throw TestSupportError(
                        "ejabberd did not log that it accepts connections on \(ports) within \(self.configuration.startupTimeout)\n"
                            + "log \(self.logPath):\n\(self.log.tail(40))")
                }
                try await Task.sleep(for: .milliseconds(100))
            }
        } catch {
            self.kill()
            throw error
        }
        self.lock.withLock { self.startupDuration = ContinuousClock.now - began }
    }

    /// Whether ejabberd's log (from `logOffset`) says it accepts connections on every port.
    /// - Throws: ``PortTaken`` when it says it could not open one, or when the Erlang node
    ///   could not listen on its distribution port.
    @discardableResult
    private func checkPorts(_ ports: [Int], logOffset: Int, process: TestProcess) throws -> Bool {
        let data = self.logData
        let text = data.count > logOffset ? String(decoding: data[logOffset...], as: UTF8.self) : ""
        if let line = text.split(separator: "\n").first(where: { $0.contains("Failed to open socket at") }) {
            throw PortTaken(description: "ejabberd could not listen on a port chosen for it: \(line)")
        }
        if process.terminationStatus != nil, process.output.contains("eaddrinuse") {
            throw PortTaken(
                description: "the Erlang node could not listen on its distribution port: \(process.output.tail(5))")
        }
        // At log levels above info the confirmation is not written: then only the failure counts.
        guard ["info", "debug"].contains(self.configuration.logLevel) else { return true }
        // "Start accepting TCP connections at 127.0.0.1:PORT for ejabberd_c2s" (TLS for `tls: true`).
        let accepting = text.split(separator: "\n").filter { $0.contains("Start accepting ") }
        return ports.allSatisfy { port in accepting.contains { $0.contains(" connections at 127.0.0.1:\(port) for ") } }
    }

    private var pathArguments: [String] {
        [
            "--config", self.configPath, "--ctl-config", self.ctlConfigPath,
            "--spool", self.directory.path("spool"), "--logs", self.directory.path("logs"),
        ]
    }

    private var environment: [String: String] {
        var environment = [
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": self.directory.path,
            "LANG": "C.UTF-8",
            // Belt and braces: ERL_DIST_PORT already keeps epmd from starting at all, and a
            // cluster node never starts one (-start_epmd false).
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        ]
        // A cluster's nodes and the ejabberdctl commands find each other through the
        // cluster's own epmd.
        if let cluster { environment["ERL_EPMD_PORT"] = String(cluster.epmdPort) }
        return environment
    }

    /// The node's own environment: a cluster node listens for distribution on its allocated
    /// port (`ERL_ZFLAGS` reaches `erl` from the environment, so commands do not get it).
    private var launchEnvironment: [String: String] {
        var environment = self.environment
        if self.cluster != nil {
            environment["ERL_ZFLAGS"] =
                "-kernel inet_dist_listen_min \(self.distributionPort) inet_dist_listen_max \(self.distributionPort)"
        }
        return environment
    }

    /// ` -pa DIR` for the compiled ``Configuration/erlangModules`` (none: empty).
    private var codePathOption: String {
        self.configuration.erlangModules.isEmpty ? "" : " -pa \(self.directory.path("ebin"))"
    }

    private func renderControlConfiguration() -> String {
        guard self.cluster != nil else {
            return """
                # Generated by XMPPTestSupport.EjabberdFixture
                ERLANG_NODE=\(self.nodeName)
                ERL_DIST_PORT=\(self.distributionPort)
                ERL_OPTIONS="-env ERL_CRASH_DUMP_BYTES 0 -setcookie \(self.cookie) -kernel inet_dist_use_interface {127,0,0,1}\(self.codePathOption)"
                EJABBERD_PID_PATH=\(self.directory.path("ejabberd.pid"))
                EJABBERD_BYPASS_WARNINGS=true

                """
        }
        // A cluster node registers with the cluster's epmd, which nodes and commands never
        // start themselves; its distribution port is fixed at launch (``launchEnvironment``),
        // not here: ejabberdctl commands read this file too, and their own hidden node must
        // not try to listen on the node's port.
        return """
            # Generated by XMPPTestSupport.EjabberdFixture (a node of an EjabberdClusterFixture)
            ERLANG_NODE=\(self.nodeName)
            ERL_OPTIONS="-env ERL_CRASH_DUMP_BYTES 0 -setcookie \(self.cookie) -kernel inet_dist_use_interface {127,0,0,1} -start_epmd false\(self.codePathOption)"
            EJABBERD_PID_PATH=\(self.directory.path("ejabberd.pid"))
            EJABBERD_BYPASS_WARNINGS=true

            """
    }

    private func renderConfiguration() -> String {
        let c = self.configuration
        func hostsMap(_ services: [Service]) -> [String] {
            ["    hosts:"]
                + services.flatMap { ["      \(yaml($0.hostname)):", "        password: \(yaml($0.password))"] }
        }
        var lines = [
            "# Generated by XMPPTestSupport.EjabberdFixture",
            "hosts:",
            "  - \(yaml(c.domain))",
            "loglevel: \(c.logLevel)",
            "log_rotate_count: 0",
            "certfiles:",
            "  - \(yaml(self.certificate.combinedPath))",
            "ca_file: \(yaml(self.caCertificatePath))",
            "auth_method: internal",
            "default_db: mnesia",
            "listen:",
            "  -",
            "    port: \(self.c2sPort)",
            "    ip: \"127.0.0.1\"",
            "    module: ejabberd_c2s",
            "    starttls: true",
            "    starttls_required: true",
            "  -",
            "    port: \(self.componentTLSPort)",
            "    ip: \"127.0.0.1\"",
            "    module: \(c.serviceListenerModule)",
            "    tls: true",
            "    certfile: \(yaml(self.certificate.combinedPath))",
        ]
        lines += c.serviceListenerOptions.map { "    " + $0 }
        lines += c.services.isEmpty ? ["    hosts: {}"] : hostsMap(c.services)
        if let componentPlainPort {
            lines += [
                "  -",
                "    port: \(componentPlainPort)",
                "    ip: \"127.0.0.1\"",
                "    module: ejabberd_service",
            ]
            lines += hostsMap(c.plainServices)
        }
        lines += [
            "acl:",
            "  local:",
            "    user_regexp: \"\"",
            "access_rules:",
            "  local:",
            "    allow: local",
            "  c2s:",
            "    allow: all",
            "api_permissions:",
            "  \"console commands\":",
            "    from:",
            "      - ejabberd_ctl",
            "    who: all",
            "    what: \"*\"",
            "modules:",
            "  mod_disco: {}",
            "  mod_ping: {}",
            "  mod_roster: {}",
        ]
        for (name, options) in c.extraModules.sorted(by: { $0.key < $1.key }) {
            lines.append("  \(name): \(options)")
        }
        lines += c.extraTopLevelYAML
        return lines.joined(separator: "\n") + "\n"
    }
}

/// A YAML double-quoted scalar (JSON string syntax, which YAML accepts).
private func yaml(_ value: String) -> String {
    var result = "\""
    for scalar in value.unicodeScalars {
        switch scalar {
        case "\\": result += "\\\\"
        case "\"": result += "\\\""
        case "\n": result += "\\n"
        case "\t": result += "\\t"
        default:
            if scalar.value < 0x20 {
                result += String(format: "\\u%04x", scalar.value)
            } else {
                result.unicodeScalars.append(scalar)
            }
        }
    }
    return result + "\""
}
