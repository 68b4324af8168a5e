import Foundation

/// Real ejabberd 23.01 nodes on 127.0.0.1 joined into one cluster over distributed Erlang:
/// the engine an operator scales a component out on.
///
/// ```swift
/// let cluster = try await EjabberdClusterFixture.start(.init(
///     services: [.init(hostname: "echo.localhost", password: "s3cret")],
///     balancing: ["echo.localhost": .init(type: .random, componentNumber: 2)],
///     accounts: [.init(username: "alice", password: "pw")]))
/// defer { cluster.stop() }
/// // cluster.nodes[0].c2sPort, cluster.nodes[1].componentTLSPort, …; one CA for all nodes
/// ```
///
/// ## How it is built
///
/// - One `epmd` of the cluster's own, on a free port of 127.0.0.1 (`ERL_EPMD_PORT` for every
///   node and every `ejabberdctl` command; the nodes never start one themselves), started and
///   stopped by process ID. (A fixed distribution port without `epmd`, as a standalone
///   ``EjabberdFixture`` uses, cannot form a cluster: every node would expect the others on
///   its own port.)
/// - Each node is an ``EjabberdFixture``: its own temporary directory (Mnesia spool, logs,
///   pid file), its own c2s, direct-TLS `ejabberd_service` and distribution ports, a distinct
///   node name (`xmpptest…-a@localhost`, `…-b@localhost`), and the one cookie of the
///   cluster. All nodes share one test CA and one server certificate.
/// - Every node but the first runs `ejabberdctl join_cluster FIRST`; the fixture then
///   checks with `list_cluster` on the first node that every node is a member, and registers
///   the accounts once (Mnesia is shared: they log in on any node).
/// - `domain_balancing` is written to every node's `ejabberd.yml` with both `type` and
///   `component_number`: ejabberd 23.01 needs both (without `component_number`, the second
///   connection of a domain crashes its session in `ejabberd_router:register_route`).
///
/// A port taken by someone else before a node bound it starts the whole cluster again on
/// new ports (see ``EjabberdFixture``'s notes); ``stop()`` stops every node, then `epmd`.
public final class EjabberdClusterFixture: @unchecked Sendable {
    // @unchecked: everything is immutable; the nodes guard their own state.

    /// How ejabberd spreads the stanzas of one component domain over its connections
    /// (`domain_balancing`).
    public struct Balancing: Sendable, Hashable {
        /// The balancing `type`: what the route is chosen by.
        public struct Kind: Sendable, Hashable, CustomStringConvertible {
            /// The YAML value.
            public var description: String
            /// A random connection for every stanza.
            public static let random = Kind(description: "random")
            /// By the sender's full JID: one sender stays on one connection.
            public static let source = Kind(description: "source")
            /// By the recipient's full JID.
            public static let destination = Kind(description: "destination")
            /// By the sender's bare JID.
            public static let bareSource = Kind(description: "bare_source")
            /// By the recipient's bare JID.
            public static let bareDestination = Kind(description: "bare_destination")
        }

        /// The balancing type.
        public var type: Kind
        /// `component_number`: how many connections the domain has slots for.
        public var componentNumber: Int

        /// Creates a balancing entry.
        public init(type: Kind, componentNumber: Int) {
            self.type = type
            self.componentNumber = componentNumber
        }
    }

    /// What to run.
    public struct Configuration: Sendable {
        /// The served domain (`hosts:`), the same on every node.
        public var domain: String
        /// Hostnames on every node's direct-TLS `ejabberd_service` listener.
        public var services: [EjabberdFixture.Service]
        /// Extra options of that listener, as raw YAML lines (`global_routes: false` by
        /// default: each connection routes only the hostname it authenticated for).
        public var serviceListenerOptions: [String]
        /// The module of that listener (see ``EjabberdFixture/Configuration/serviceListenerModule``).
        public var serviceListenerModule: String
        /// `domain_balancing`, by component hostname.
        public var balancing: [String: Balancing]
        /// Extra modules of every node: name → raw YAML options (see
        /// ``EjabberdFixture/Configuration/extraModules``).
        public var modules: [String: String]
        /// Erlang sources of extra modules, compiled for every node (see
        /// ``EjabberdFixture/Configuration/erlangModules``).
        public var erlangModules: [String]
        /// Accounts registered (once, on the first node) after the cluster is formed.
        public var accounts: [EjabberdFixture.Account]
        /// How many nodes (at least two).
        public var nodeCount: Int
        /// `loglevel` of every node.
        public var logLevel: String
        /// How long one node's start-up (or its join) may take.
        public var startupTimeout: Duration

        /// Creates a configuration.
        public init(
            domain: String = "localhost",
            services: [EjabberdFixture.Service] = [],
            serviceListenerOptions: [String] = ["global_routes: false"],
            serviceListenerModule: String = "ejabberd_service",
            balancing: [String: Balancing] = [:],
            modules: [String: String] = [:],
            erlangModules: [String] = [],
            accounts: [EjabberdFixture.Account] = [],
            nodeCount: Int = 2,
            logLevel: String = "info",
            startupTimeout: Duration = .seconds(120)
        ) {
            self.domain = domain
            self.services = services
            self.serviceListenerOptions = serviceListenerOptions
            self.serviceListenerModule = serviceListenerModule
            self.balancing = balancing
            self.modules = modules
            self.erlangModules = erlangModules
            self.accounts = accounts
            self.nodeCount = nodeCount
            self.logLevel = logLevel
            self.startupTimeout = startupTimeout
        }

        /// The `domain_balancing` section, as YAML lines.
        var balancingYAML: [String] {
            guard !self.balancing.isEmpty else { return [] }
            var lines = ["domain_balancing:"]
            for (hostname, balancing) in self.balancing.sorted(by: { $0.key < $1.key }) {
                lines += [
                    "  \"\(hostname)\":",
                    "    type: \(balancing.type)",
                    "    component_number: \(balancing.componentNumber)",
                ]
            }
            return lines
        }
    }

    /// The `epmd` executable.
    public static let epmdExecutable = "/usr/bin/epmd"

    /// The configuration it was started with.
    public let configuration: Configuration
    /// The nodes; the first is the one the others joined.
    public let nodes: [EjabberdFixture]
    /// The port of the cluster's `epmd` on 127.0.0.1.
    public let epmdPort: Int
    /// The CA certificate every node's certificate chains to: the clients' trust root.
    public var caCertificatePath: String { self.authority.certificatePath }
    /// The time from nothing to a formed cluster with its accounts.
    public let startupDuration: Duration

    private let authority: TestCertificateAuthority
    private let epmd: TestProcess
    private let directory: TemporaryDirectory

    /// Starts `epmd` and every node, joins them into one cluster, checks that they are
    /// joined, and registers the accounts.
    /// - Parameter configuration: What to run.
    /// - Throws: ``TestSupportError`` (with what to install when ejabberd is missing, or the
    ///   log tail of the node that did not come up or join).
    public static func start(_ configuration: Configuration) async throws -> EjabberdClusterFixture {
        try EjabberdFixture.requireInstallation()
        guard configuration.nodeCount >= 2 else { throw TestSupportError("a cluster needs at least two nodes") }
        let began = ContinuousClock.now
        var attempt = 0
        while true {
            attempt += 1
            let parts = try await Self.prepare(configuration)
            do {
                try await Self.form(configuration, parts: parts)
                return EjabberdClusterFixture(
                    configuration: configuration, parts: parts, startupDuration: ContinuousClock.now - began)
            } catch let error as EjabberdFixture.PortTaken where attempt < 3 {
                Self.tearDown(parts)
                print("EjabberdClusterFixture: \(error); starting the cluster again on new ports")
            } catch let error as EpmdPortTaken where attempt < 3 {
                Self.tearDown(parts)
                print("EjabberdClusterFixture: \(error); starting the cluster again on new ports")
            } catch {
                Self.tearDown(parts)
                throw error
            }
        }
    }

    private struct Parts {
        var authority: TestCertificateAuthority
        var directory: TemporaryDirectory
        var epmd: TestProcess
        var epmdPort: Int
        var nodes: [EjabberdFixture]
    }

    private struct EpmdPortTaken: Error, CustomStringConvertible {
        let description: String
    }

    private init(configuration: Configuration, parts: Parts, startupDuration: Duration) {
        self.configuration = configuration
        self.authority = parts.authority
        self.directory = parts.directory
        self.epmd = parts.epmd
        self.epmdPort = parts.epmdPort
        self.nodes = parts.nodes
        self.startupDuration = startupDuration
    }

    deinit {
        // The nodes kill themselves when released; epmd too, if a test forgot stop().
        self.epmd.kill()
    }

    /// Writes every node's files (nothing runs yet but `epmd`).
    private static func prepare(_ configuration: Configuration) async throws -> Parts {
        let user = SystemUser.isRoot ? SystemUser.named("ejabberd") : nil
        let directory = try TemporaryDirectory(prefix: "xmpp-test-ejabberd-cluster")
        let authority = try await TestCertificateAuthority(commonName: "ejabberd cluster CA")
        let nodeConfiguration = EjabberdFixture.Configuration(
            domain: configuration.domain, services: configuration.services,
            serviceListenerOptions: configuration.serviceListenerOptions,
            serviceListenerModule: configuration.serviceListenerModule,
            extraTopLevelYAML: configuration.balancingYAML, extraModules: configuration.modules,
            erlangModules: configuration.erlangModules, logLevel: configuration.logLevel,
            startupTimeout: configuration.startupTimeout)
        let leaf = try await authority.issue(
            commonName: configuration.domain, dnsNames: EjabberdFixture.certificateNames(nodeConfiguration), owner: user)
        let epmdPort = try FreePort.allocate()
        let command = (user?.commandPrefix ?? []) + [Self.epmdExecutable, "-port", String(epmdPort), "-address", "127.0.0.1"]
        let epmd = TestProcess(
            executable: command[0], arguments: Array(command.dropFirst()),
            environment: ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": directory.path, "LANG": "C.UTF-8"],
            workingDirectory: directory.path, outputPath: directory.path("epmd.out"))
        try epmd.start()
        var parts = Parts(authority: authority, directory: directory, epmd: epmd, epmdPort: epmdPort, nodes: [])
        do {
            do {
                try await waitForPorts([epmdPort], process: epmd, timeout: .seconds(10), server: "epmd") {
                    "command: \(epmd.commandLine)\noutput:\n\(epmd.output.tail(10))"
                }
            } catch {
                if epmd.output.contains("in use") || epmd.output.contains("EADDRINUSE") {
                    throw EpmdPortTaken(description: "epmd could not listen on \(epmdPort): \(epmd.output.tail(3))")
                }
                throw error
            }
            // Someone else's listener would also accept: epmd must still be running.
            if epmd.terminationStatus != nil {
                throw EpmdPortTaken(description: "epmd exited: \(epmd.output.tail(3))")
            }
            let unique = UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
            let cookie = "c" + unique
            for index in 0..<configuration.nodeCount {
                let letter = String(UnicodeScalar(UInt8(ascii: "a") + UInt8(index)))
                let membership = EjabberdFixture.ClusterMembership(
                    epmdPort: epmdPort, cookie: cookie, nodeName: "xmpptest\(unique.prefix(10))-\(letter)@localhost")
                parts.nodes.append(
                    try await EjabberdFixture(
                        configuration: nodeConfiguration, certificate: (authority, leaf), cluster: membership))
            }
        } catch {
            Self.tearDown(parts)
            throw error
        }
        return parts
    }

    /// Launches every node (at once), joins the others to the first, checks the membership
    /// and registers the accounts.
    private static func form(_ configuration: Configuration, parts: Parts) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for node in parts.nodes {
                group.addTask { try await node.launch() }
            }
            try await group.waitForAll()
        }
        let first = parts.nodes[0]
        for node in parts.nodes.dropFirst() {
            // join_cluster restarts ejabberd on the joining node with the first node's
            // Mnesia schema; it returns once that is done.
            let result = try await node.ctl(["join_cluster", first.nodeName], timeout: configuration.startupTimeout)
            guard result.status == 0 else {
                throw TestSupportError(
                    "ejabberdctl join_cluster \(first.nodeName) on \(node.nodeName) exited \(result.status): \(result.output)\n"
                        + "log \(node.logPath):\n\(node.log.tail(30))")
            }
        }
        let members = try await Self.members(of: first, timeout: configuration.startupTimeout)
        let missing = parts.nodes.map(\.nodeName).filter { !members.contains($0) }
        guard missing.isEmpty else {
            throw TestSupportError("list_cluster on \(first.nodeName) shows \(members), not \(missing)")
        }
        for account in configuration.accounts {
            try await first.register(username: account.username, password: account.password)
        }
    }

    /// The members `list_cluster` shows on `node`.
    private static func members(of node: EjabberdFixture, timeout: Duration) async throws -> [String] {
        let result = try await node.ctl(["list_cluster"], timeout: timeout)
        guard result.status == 0 else {
            throw TestSupportError("ejabberdctl list_cluster on \(node.nodeName) exited \(result.status): \(result.output)")
        }
        // Erlang quotes atoms with a '-': 'xmpptest…-a@localhost'.
        return result.output.split(whereSeparator: \.isWhitespace).map {
            $0.trimmingCharacters(in: CharacterSet(charactersIn: "'"))
        }
    }

    /// The running members of the cluster as `list_cluster` on `node` shows them.
    /// - Parameter node: Which node to ask (an index into ``nodes``).
    /// - Throws: ``TestSupportError`` when the command fails.
    public func members(seenBy node: Int = 0) async throws -> [String] {
        try await Self.members(of: self.nodes[node], timeout: .seconds(60))
    }

    /// Starts a node again after ``EjabberdFixture/kill()`` or ``EjabberdFixture/stop(grace:)``:
    /// with its spool it rejoins the cluster by itself; returns once the first running other
    /// node lists it again.
    /// - Parameter index: Which node.
    /// - Throws: ``TestSupportError`` when it does not come back or does not rejoin.
    public func relaunch(node index: Int) async throws {
        let node = self.nodes[index]
        try await node.launch()
        guard let witness = self.nodes.indices.first(where: { $0 != index && self.nodes[$0].pid != nil }) else { return }
        let deadline = ContinuousClock.now + self.configuration.startupTimeout
        while true {
            let members = try await self.members(seenBy: witness)
            if members.contains(node.nodeName) { return }
            guard ContinuousClock.now < deadline else {
                throw TestSupportError("\(node.nodeName) did not rejoin the cluster; list_cluster shows \(members)")
            }
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    /// Every process of every node (current runs), and `epmd`, for checks after ``stop()``.
    public func processIdentities() -> [ProcessTree.Identity] {
        self.nodes.flatMap { $0.processIdentities() } + self.epmd.processIdentities()
    }

    /// Stops every node (a clean Erlang shutdown each, SIGKILL after the grace period), then
    /// `epmd`, by process ID; returns once all have exited.
    public func stop() {
        Self.tearDown(
            Parts(
                authority: self.authority, directory: self.directory, epmd: self.epmd, epmdPort: self.epmdPort, nodes: self.nodes)
        )
    }

    private static func tearDown(_ parts: Parts) {
        for node in parts.nodes { node.stop() }
        parts.epmd.terminate(grace: .seconds(2))
    }
}
