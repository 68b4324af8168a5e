import Foundation
import Synchronization
import Testing
import XMPPCore
import XMPPTestSupport

/// The cluster the ``EjabberdClusterTests`` share: two ejabberd 23.01 nodes joined over
/// distributed Erlang, started once for the suite (a cluster takes 15–40 s to form on a busy
/// two-core machine) and stopped after it, also when a test fails. Every test starts its own
/// `component-host` instances and c2s sessions, and leaves the cluster whole (a test that
/// kills a node starts it again).
enum SharedEjabberdCluster {
    static let secret = "cluster-component-secret"
    /// Balanced by ejabberd with `type: random` (and `component_number: 2`).
    static let randomDomain = "random.localhost"
    /// Balanced with `type: source`: one sender's full JID stays on one connection.
    static let sourceDomain = "source.localhost"
    /// No `domain_balancing`: each node routes to its own connections first, to the other
    /// node's when it has none (ejabberd's default for several connections of one domain).
    static let failoverDomain = "failover.localhost"
    /// Balanced by `mod_component_balancing` (ServerModules/ejabberd) with `type: random`,
    /// no `domain_balancing`: only live connections are chosen, none left bounces.
    static let liveDomain = "live.localhost"
    /// Balanced by `mod_component_balancing` with `type: source`.
    static let liveSourceDomain = "livesource.localhost"
    /// The modules' sources (the balancing module and the XEP-0114 listener with
    /// acknowledgements), compiled by the fixture for every node.
    static let moduleSources = ["mod_component_balancing.erl", "ejabberd_service_acks.erl"].map {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("ServerModules/ejabberd/" + $0).path
    }
    static let users = ["alice", "bob", "carol", "dave"]
    static func password(_ user: String) -> String { "\(user)-pass" }

    @TaskLocal static var current: EjabberdClusterFixture?

    static var configuration: EjabberdClusterFixture.Configuration {
        .init(
            domain: "localhost",
            services: [randomDomain, sourceDomain, failoverDomain, liveDomain, liveSourceDomain].map {
                .init(hostname: $0, password: secret)
            },
            serviceListenerOptions: ["global_routes: false"],
            serviceListenerModule: "ejabberd_service_acks",
            balancing: [
                randomDomain: .init(type: .random, componentNumber: 2),
                sourceDomain: .init(type: .source, componentNumber: 2),
            ],
            modules: [
                "mod_component_balancing":
                    "{type: random, domains: {\"\(liveDomain)\": random, \"\(liveSourceDomain)\": source}}"
            ],
            erlangModules: moduleSources,
            accounts: users.map { .init(username: $0, password: password($0)) })
    }

    /// The cluster of the running suite.
    static func cluster() throws -> EjabberdClusterFixture {
        try #require(Self.current, "the suite's cluster is not running (missing the SharedEjabberdCluster trait?)")
    }
}

/// Starts the shared cluster around the suite and stops it on every path.
struct SharedEjabberdClusterTrait: SuiteTrait, TestScoping {
    var isRecursive: Bool { false }

    func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        let cluster = try await EjabberdClusterFixture.start(SharedEjabberdCluster.configuration)
        report("ejabberd cluster: \(cluster.nodes.count) nodes formed in \(cluster.startupDuration.seconds)")
        try await withCleanup {
            try await SharedEjabberdCluster.$current.withValue(cluster) { try await function() }
        } cleanup: {
            cluster.stop()
        }
    }
}

extension Trait where Self == SharedEjabberdClusterTrait {
    /// Runs the suite against one shared ejabberd cluster.
    static var sharedEjabberdCluster: SharedEjabberdClusterTrait { SharedEjabberdClusterTrait() }
}

/// One real `component-host` process (the built product), connected to one ejabberd node
/// over XEP-0114 with direct TLS verified against the cluster's CA, serving every component
/// domain of the cluster with the `echo` plugin, acknowledging what it handled
/// (`legacy_acknowledgements`: the nodes' component listener is `ejabberd_service_acks`).
/// Its echoes start with `NAME|`, so a user can tell which instance answered.
final class ComponentHostInstance: Sendable {
    let name: String
    let node: EjabberdFixture
    let directory: TemporaryDirectory
    let configurationPath: String
    let socketPath: String
    private let process = Mutex<TestProcess?>(nil)
    private let starts = Mutex(0)

    init(name: String, node: EjabberdFixture, caFile: String, hostnames: [String]) throws {
        self.name = name
        self.node = node
        self.directory = try TemporaryDirectory(prefix: "xmpp-test-host-\(name)")
        self.socketPath = self.directory.path("admin/admin.sock")
        let secretPath = self.directory.path("secret")
        try SharedEjabberdCluster.secret.write(toFile: secretPath, atomically: true, encoding: .utf8)
        _ = chmod(secretPath, 0o600)
        var text = """
            [server]
            host = "127.0.0.1"
            port = \(node.componentTLSPort)
            domain = "\(node.domain)"
            protocol = "xep0114"
            tls = "direct"
            ca_file = "\(caFile)"
            server_name = "\(node.domain)"
            legacy_acknowledgements = true

            [auth]
            identity = "\(hostnames[0])"
            password_file = "\(secretPath)"

            [admin]
            socket = "\(self.socketPath)"

            [logging]
            level = "notice"

            """
        for hostname in hostnames {
            text += "\n[[component]]\nhostname = \"\(hostname)\"\nplugin = \"echo\"\n[component.options]\nprefix = \"\(name)|\"\n"
        }
        self.configurationPath = self.directory.path("host.toml")
        try text.write(toFile: self.configurationPath, atomically: true, encoding: .utf8)
    }

    static var binaryPath: String? {
        let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let candidates = [
            bundle.appendingPathComponent("component-host").path,
            bundle.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("component-host").path,
            FileManager.default.currentDirectoryPath + "/.build/debug/component-host",
        ]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    var pid: pid_t? { self.process.withLock { $0?.isRunning == true ? $0?.pid : nil } }

    /// Starts the binary (a ``TestProcess``: stopped by PID, reaped if the runner dies).
    func start() throws {
        let binary = try #require(Self.binaryPath, "component-host not found next to the test bundle (swift build --build-tests)")
        let run = self.starts.withLock { starts in
            starts += 1
            return starts
        }
        let process = TestProcess(
            executable: binary, arguments: ["run", "--config", self.configurationPath],
            outputPath: self.directory.path("host.\(run).out"))
        try process.start()
        self.process.withLock { $0 = process }
    }

    /// SIGTERM (a graceful shutdown), then waits until it has exited; returns the status.
    @discardableResult
    func terminate(timeout: Duration = .seconds(20)) async throws -> Int32 {
        guard let process = self.process.withLock({ $0 }) else { return 0 }
        Glibc.kill(process.pid, SIGTERM)
        do {
            let status = try await process.waitForExit(timeout: timeout)
            self.process.withLock { $0 = nil }
            return status
        } catch {
            process.kill()
            self.process.withLock { $0 = nil }
            throw error
        }
    }

    /// SIGKILL, at once.
    func kill() {
        let process = self.process.withLock { value -> TestProcess? in
            defer { value = nil }
            return value
        }
        process?.kill()
    }

    var output: String { self.process.withLock { $0?.output ?? "" } }

    /// The host's `status --json`, or `nil` when it does not answer.
    func status() async -> [String: Any]? {
        guard let binary = Self.binaryPath,
            let result = try? await runCommand(binary, ["status", "--json", "--socket", self.socketPath], timeout: .seconds(10)),
            result.status == 0,
            let start = result.output.firstIndex(of: "{"),
            let object = try? JSONSerialization.jsonObject(with: Data(result.output[start...].utf8)) as? [String: Any]
        else { return nil }
        return object
    }

    /// Waits (bounded) until every hostname is `bound` (ejabberd registered its route).
    func waitBound(_ hostnames: [String], timeout: Duration = .seconds(60)) async throws {
        let deadline = ContinuousClock.now + timeout
        var last: [String: Any]?
        while ContinuousClock.now < deadline {
            if let status = await self.status() {
                last = status
                let components = status["components"] as? [[String: Any]] ?? []
                let bound = Set(components.filter { $0["state"] as? String == "bound" }.compactMap { $0["hostname"] as? String })
                if hostnames.allSatisfy(bound.contains) { return }
            }
            if self.pid == nil {
                throw IntegrationTestError("component-host \(self.name) is not running:\n\(self.output.tail())")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw IntegrationTestError(
            "component-host \(self.name) did not bind \(hostnames) within \(timeout); status: \(String(describing: last))\n"
                + self.output.tail())
    }

    /// Stops it (SIGKILL if it is still running) and removes its files.
    func cleanup() {
        self.kill()
        self.directory.remove()
    }
}

extension String {
    fileprivate func tail(_ lines: Int = 30) -> String {
        self.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
    }
}

/// What came back for one message: an echo from an instance, or a bounce.
struct ClusterAnswer: Sendable {
    /// The instance that echoed (`A`, `B`), or `nil` for a bounce.
    var instance: String?
    /// The error condition of a bounce.
    var condition: String?
    var at: ContinuousClock.Instant
}

/// One c2s session (a full JID) on one node, sending numbered messages to component
/// addresses and collecting the answers by id.
final class ClusterSession: Sendable {
    let label: String
    let node: Int
    let client: C2SClient
    private let answers = Mutex<[String: [ClusterAnswer]]>([:])
    private let sent = Mutex<[(id: String, domain: String, at: ContinuousClock.Instant)]>([])
    private let reader = Mutex<Task<Void, Never>?>(nil)
    private let closed = Atomic<Bool>(false)
    /// When the session's own server went away (its stream ended), if it did.
    let lostAt = Mutex<ContinuousClock.Instant?>(nil)

    init(label: String, node: Int, client: C2SClient) {
        self.label = label
        self.node = node
        self.client = client
        let task = Task { [weak self] in
            while !Task.isCancelled {
                guard let self else { return }
                let element: Element
                do {
                    element = try await client.next(timeout: .seconds(3600))
                } catch {
                    self.lostAt.withLock { $0 = $0 ?? .now }
                    return
                }
                guard element.name.localName == "message", let id = element["id"] else { continue }
                let answer: ClusterAnswer
                if element["type"] == "error" {
                    let condition = element.firstChild("error", namespace: Namespace.client)?.elements.first?.name.localName
                    answer = ClusterAnswer(instance: nil, condition: condition ?? "?", at: .now)
                } else {
                    let body = Message(element)?.body ?? ""
                    answer = ClusterAnswer(instance: body.split(separator: "|").first.map(String.init) ?? "?", at: .now)
                }
                self.answers.withLock { $0[id, default: []].append(answer) }
            }
        }
        self.reader.withLock { $0 = task }
    }

    static func connect(_ cluster: EjabberdClusterFixture, node: Int, user: String, resource: String) async throws
        -> ClusterSession
    {
        let fixture = cluster.nodes[node]
        // ejabberd 23.01 offers SCRAM -PLUS without XEP-0440 and refuses tls-exporter.
        let client = try await C2SClient.connect(
            .init(
                port: fixture.c2sPort, domain: fixture.domain, username: user, password: SharedEjabberdCluster.password(user),
                resource: resource, caFile: cluster.caCertificatePath, allowsChannelBinding: false))
        return ClusterSession(label: "\(user)/\(resource)@node\(node)", node: node, client: client)
    }

    /// Sends one numbered message to `domain` (id `label~domain~number`).
    func send(_ number: Int, to domain: String) async throws {
        let id = "\(self.label)~\(domain)~\(number)"
        let at = ContinuousClock.now
        // Counted once the client has written it (a session whose server died cannot send).
        try await self.client.send(Message(type: .chat, to: try JID(domain), id: id, body: "\(number)").element)
        self.sent.withLock { $0.append((id, domain, at)) }
    }

    var sentMessages: [(id: String, domain: String, at: ContinuousClock.Instant)] { self.sent.withLock { $0 } }
    func answers(_ id: String) -> [ClusterAnswer] { self.answers.withLock { $0[id] ?? [] } }

    /// Whether every message sent has an answer.
    var allAnswered: Bool {
        let answered = self.answers.withLock { Set($0.keys) }
        return self.sentMessages.allSatisfy { answered.contains($0.id) }
    }

    func close() async {
        guard !self.closed.exchange(true, ordering: .relaxed) else { return }
        self.reader.withLock { $0?.cancel() }
        await self.client.close()
    }
}

/// Continuous traffic: every session sends to every domain, one message each `interval`,
/// until stopped.
final class ClusterTraffic: Sendable {
    let sessions: [ClusterSession]
    let domains: [String]
    private let running = Atomic<Bool>(true)
    private let tasks = Mutex<[Task<Void, Never>]>([])

    init(sessions: [ClusterSession], domains: [String], interval: Duration) {
        self.sessions = sessions
        self.domains = domains
        var tasks: [Task<Void, Never>] = []
        for session in sessions {
            tasks.append(
                Task {
                    var number = 0
                    while self.running.load(ordering: .relaxed), session.lostAt.withLock({ $0 }) == nil {
                        for domain in domains {
                            // A session whose server died cannot send: that is counted apart.
                            try? await session.send(number, to: domain)
                        }
                        number += 1
                        try? await Task.sleep(for: interval)
                    }
                })
        }
        self.tasks.withLock { $0 = tasks }
    }

    /// Stops sending, then waits (bounded) until every message of a live session is answered.
    func stop(settle: Duration = .seconds(10)) async {
        self.running.store(false, ordering: .relaxed)
        for task in self.tasks.withLock({ $0 }) { await task.value }
        let deadline = ContinuousClock.now + settle
        while ContinuousClock.now < deadline {
            if self.sessions.allSatisfy({ $0.lostAt.withLock { $0 } != nil || $0.allAnswered }) { return }
            try? await Task.sleep(for: .milliseconds(50))
        }
    }
}

/// Counts of one slice of the traffic, by content (ids and answers), never by time spent.
struct ClusterFigures: CustomStringConvertible {
    var sent = 0
    var delivered = 0
    var bounced = 0
    var silent = 0
    var duplicated = 0
    var byInstance: [String: Int] = [:]
    var silentIDs: [String] = []
    var lastSilentAt: ContinuousClock.Instant?

    init(
        _ sessions: [ClusterSession], domain: String,
        where include: (ClusterSession, ContinuousClock.Instant) -> Bool = { _, _ in true }
    ) {
        for session in sessions {
            for message in session.sentMessages where message.domain == domain && include(session, message.at) {
                self.sent += 1
                let answers = session.answers(message.id)
                if answers.isEmpty {
                    self.silent += 1
                    self.silentIDs.append(message.id)
                    if self.lastSilentAt.map({ message.at > $0 }) ?? true { self.lastSilentAt = message.at }
                    continue
                }
                self.duplicated += answers.count - 1
                if let instance = answers[0].instance {
                    self.delivered += 1
                    self.byInstance[instance, default: 0] += 1
                } else {
                    self.bounced += 1
                }
            }
        }
    }

    var description: String {
        let instances = self.byInstance.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        return "sent \(self.sent), delivered \(self.delivered) (\(instances)), bounced \(self.bounced), "
            + "silent \(self.silent), duplicated \(self.duplicated)"
    }
}

/// Where a session's unanswered messages to one domain sit in its send order.
///
/// Reading the session's messages in the order it sent them, each was echoed by an instance
/// (`A`, `B`), bounced, or got nothing. A message can vanish without an error at a hand-over:
/// ejabberd had already routed it to an instance that was stopping or being killed, and
/// XEP-0114 has no acknowledgement to give it back. Such a run of silent messages lies
/// between an answer from the instance that went away and one from the instance that took
/// over. Anywhere else (in steady state, after a re-bind, at the end) a silent message is a
/// loss nobody can explain by the hand-over.
struct HandOverGaps {
    /// Silent messages at a hand-over (between answers from two different instances).
    var atHandOver: [String] = []
    /// Silent messages at the end of a session whose own server died (they died with it).
    var withTheirServer: [String] = []
    /// Silent messages anywhere else.
    var elsewhere: [String] = []

    init(_ sessions: [ClusterSession], domain: String, until end: ContinuousClock.Instant? = nil) {
        for session in sessions {
            let messages = session.sentMessages.filter { message in
                message.domain == domain && end.map { message.at < $0 } ?? true
            }
            var previous: String?
            var run: [String] = []
            for message in messages {
                let answers = session.answers(message.id)
                guard let first = answers.first else {
                    run.append(message.id)
                    continue
                }
                let current = first.instance ?? "bounce"
                if !run.isEmpty {
                    if let previous, previous != current {
                        self.atHandOver += run
                    } else {
                        self.elsewhere += run
                    }
                    run.removeAll()
                }
                previous = current
            }
            // A run at the end: lost with the session's own server if that died, else unexplained.
            if session.lostAt.withLock({ $0 }) != nil {
                self.withTheirServer += run
            } else {
                self.elsewhere += run
            }
        }
    }
}
