import Foundation
import Testing
import XMPPCore
import XMPPTestSupport

/// Several `component-host` instances of one component domain on a real distributed engine:
/// two ejabberd 23.01 nodes joined into one cluster on loopback, one real `component-host`
/// binary connected to each node (XEP-0114 over direct TLS, certificates verified), and real
/// c2s users on both nodes. Figures are printed on `RESILIENCE` lines.
///
/// What ejabberd 23.01 does with several connections of one domain (read in
/// `ejabberd_router.erl` / `ejabberd_router_mnesia.erl` of 23.01, and measured here):
/// - with `domain_balancing` (`type` + `component_number: N`) the domain has N route slots
///   across the cluster; every stanza is hashed (by `type`) onto one slot, whether or not a
///   connection holds it. A slot whose connection is gone keeps its share, and
///   `ejabberd_router:do_route/2` drops what lands on it without an error. The share comes
///   back when an instance connects again and takes the free slot.
/// - without `domain_balancing`, every connection is a route; a node sends to its own
///   connections first and to the other nodes' only when it has none, and a route disappears
///   with its connection: the others take its traffic.
@Suite(.serialized, .sharedEjabberdCluster, .timeLimit(.minutes(5)))
struct EjabberdClusterTests {
    typealias Shared = SharedEjabberdCluster
    static let allDomains = [Shared.randomDomain, Shared.sourceDomain, Shared.failoverDomain]

    /// One instance per node, started and bound; stopped (by PID) after `body`, on every path.
    private func withInstances<Result>(
        _ cluster: EjabberdClusterFixture, _ body: ([ComponentHostInstance]) async throws -> Result
    ) async throws -> Result {
        let instances = try ["A", "B"].enumerated().map { index, name in
            try ComponentHostInstance(
                name: name, node: cluster.nodes[index], caFile: cluster.caCertificatePath, hostnames: Self.allDomains)
        }
        return try await withCleanup {
            for instance in instances { try instance.start() }
            for instance in instances { try await instance.waitBound(Self.allDomains) }
            return try await body(instances)
        } cleanup: {
            for instance in instances {
                _ = try? await instance.terminate()
                instance.cleanup()
            }
        }
    }

    /// Sessions on both nodes; their full JIDs are chosen so that ejabberd's `source` hash
    /// (`erlang:phash2({User, Server, Resource}, 2)`) puts one session of each node on each
    /// of the two slots: carol/a1 → 1, alice/a1 → 0 on node 0; dave/b2 → 1, bob/b1 → 0 on node 1.
    private func withSessions<Result>(
        _ cluster: EjabberdClusterFixture, _ body: ([ClusterSession]) async throws -> Result
    ) async throws -> Result {
        var sessions: [ClusterSession] = []
        return try await withCleanup {
            for (node, user, resource) in [(0, "carol", "a1"), (0, "alice", "a1"), (1, "dave", "b2"), (1, "bob", "b1")] {
                sessions.append(try await ClusterSession.connect(cluster, node: node, user: user, resource: resource))
            }
            return try await body(sessions)
        } cleanup: {
            for session in sessions { await session.close() }
        }
    }

    @Test func clusterIsFormedAndUsersLogInOnEitherNode() async throws {
        let cluster = try Shared.cluster()
        for node in cluster.nodes.indices {
            let members = try await cluster.members(seenBy: node)
            #expect(Set(members) == Set(cluster.nodes.map(\.nodeName)), "list_cluster on node \(node): \(members)")
        }
        // Accounts were registered once, on the first node: Mnesia is shared.
        let users = try await cluster.nodes[1].ctl(["registered_users", "localhost"])
        #expect(Set(users.output.split(separator: "\n").map(String.init)) == Set(Shared.users), "\(users.output)")
    }

    /// Users on either node reach both instances, under `random` (every sender, spread
    /// over both) and under `source` (each full JID held on one instance; the two sessions
    /// of each node on different ones).
    @Test func usersOnEitherNodeReachBothInstancesUnderRandomAndSource() async throws {
        let cluster = try Shared.cluster()
        try await self.withInstances(cluster) { _ in
            try await self.withSessions(cluster) { sessions in
                let perSession = 30
                for number in 0..<perSession {
                    for session in sessions {
                        try await session.send(number, to: Shared.randomDomain)
                        try await session.send(number, to: Shared.sourceDomain)
                    }
                }
                let deadline = ContinuousClock.now + .seconds(30)
                while !sessions.allSatisfy(\.allAnswered), ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(50))
                }
                for domain in [Shared.randomDomain, Shared.sourceDomain] {
                    let figures = ClusterFigures(sessions, domain: domain)
                    report("ejabberd cluster reach \(domain): \(figures)")
                    #expect(figures.sent == perSession * sessions.count)
                    #expect(figures.delivered == figures.sent, "\(domain): \(figures); silent: \(figures.silentIDs.prefix(10))")
                    #expect(figures.duplicated == 0)
                }
                for node in cluster.nodes.indices {
                    let local = sessions.filter { $0.node == node }
                    for domain in [Shared.randomDomain, Shared.sourceDomain] {
                        let instances = Set(ClusterFigures(local, domain: domain).byInstance.keys)
                        #expect(instances == ["A", "B"], "users on node \(node) reach \(instances) through \(domain)")
                    }
                    // random: every single session is spread over both instances.
                    for session in local {
                        let instances = Set(ClusterFigures([session], domain: Shared.randomDomain).byInstance.keys)
                        #expect(instances == ["A", "B"], "\(session.label) under random reached \(instances)")
                    }
                }
                // source: one full JID, one instance.
                for session in sessions {
                    let instances = ClusterFigures([session], domain: Shared.sourceDomain).byInstance
                    #expect(instances.count == 1, "\(session.label) under source reached \(instances)")
                }
            }
        }
    }

    /// One instance killed (SIGKILL), started again, then one whole node killed (SIGKILL of
    /// its Erlang VM), under continuous traffic from users on both nodes to a balanced
    /// (`random`) and an unbalanced domain.
    @Test func instanceThenNodeKilledUnderTraffic() async throws {
        let cluster = try Shared.cluster()
        let domains = [Shared.randomDomain, Shared.failoverDomain]
        try await withCleanup {
            try await self.withInstances(cluster) { instances in
                try await self.withSessions(cluster) { sessions in
                    let traffic = ClusterTraffic(sessions: sessions, domains: domains, interval: .milliseconds(20))
                    try await Task.sleep(for: .milliseconds(800))

                    // 1. Instance A dies.
                    let instanceKilled = ContinuousClock.now
                    instances[0].kill()
                    try await Task.sleep(for: .seconds(2))
                    // 2. A supervisor starts it again; it takes its slot back.
                    let restarted = ContinuousClock.now
                    try instances[0].start()
                    try await instances[0].waitBound(Self.allDomains)
                    let rebound = ContinuousClock.now
                    try await Task.sleep(for: .seconds(1))
                    // 3. Node 1 (with instance B and half of the users) dies.
                    let nodeKilled = ContinuousClock.now
                    cluster.nodes[1].kill()
                    try await Task.sleep(for: .seconds(2))
                    await traffic.stop()
                    let stopped = ContinuousClock.now

                    let survivors = sessions.filter { $0.node == 0 }
                    let doomed = sessions.filter { $0.node == 1 }
                    func phase(_ from: ContinuousClock.Instant, _ to: ContinuousClock.Instant, _ group: [ClusterSession], _ domain: String)
                        -> ClusterFigures
                    {
                        ClusterFigures(group, domain: domain) { _, at in at >= from && at < to }
                    }

                    // The unbalanced domain: the survivors take the traffic.
                    let failover = Shared.failoverDomain
                    let beforeKill = phase(.now - .seconds(3600), instanceKilled, sessions, failover)
                    let whileADown = phase(instanceKilled, restarted, sessions, failover)
                    let afterRebind = phase(rebound, nodeKilled, sessions, failover)
                    let nodeDownSurvivors = phase(nodeKilled, stopped, survivors, failover)
                    let nodeDownDoomed = phase(nodeKilled, stopped, doomed, failover)
                    // Node 0's users lose their local instance: after the kill they are served by B.
                    let takeover = whileADown.lastSilentAt.map { $0 - instanceKilled } ?? .zero
                    report("ejabberd cluster kill, \(failover) (no balancing): before \(beforeKill)")
                    report("ejabberd cluster kill, \(failover): instance A killed, 2 s: \(whileADown); last silent sent \(takeover.seconds) after the kill")
                    report("ejabberd cluster kill, \(failover): A started again (bound after \((rebound - restarted).seconds)): \(afterRebind)")
                    report("ejabberd cluster kill, \(failover): node 1 killed, its users' \(nodeDownDoomed); node 0's users \(nodeDownSurvivors)")
                    #expect(beforeKill.silent == 0 && beforeKill.bounced == 0, "\(beforeKill)")
                    #expect(whileADown.byInstance["B"] ?? 0 > 0, "B took A's users")
                    // Silent only what was in A at the kill: nothing sent a moment later.
                    let lateSilent = phase(instanceKilled + .milliseconds(500), restarted, sessions, failover).silent
                    #expect(lateSilent == 0, "silent after the kill: \(whileADown.silentIDs)")
                    #expect(afterRebind.silent == 0 && afterRebind.delivered == afterRebind.sent, "\(afterRebind)")
                    #expect(nodeDownSurvivors.silent == 0, "\(nodeDownSurvivors.silentIDs)")
                    #expect(nodeDownSurvivors.delivered > 0 && nodeDownSurvivors.byInstance["B"] == nil, "\(nodeDownSurvivors)")
                    #expect(whileADown.duplicated + afterRebind.duplicated + nodeDownSurvivors.duplicated == 0)

                    // The balanced domain: the empty slot keeps its share.
                    let random = Shared.randomDomain
                    let randomBefore = phase(.now - .seconds(3600), instanceKilled, sessions, random)
                    let randomADown = phase(instanceKilled, restarted, sessions, random)
                    let randomAfterRebind = phase(rebound, nodeKilled, sessions, random)
                    let randomNodeDown = phase(nodeKilled, stopped, survivors, random)
                    report("ejabberd cluster kill, \(random) (random, component_number 2): before \(randomBefore)")
                    report("ejabberd cluster kill, \(random): instance A killed: \(randomADown)")
                    report("ejabberd cluster kill, \(random): A started again: \(randomAfterRebind)")
                    report("ejabberd cluster kill, \(random): node 1 killed, node 0's users: \(randomNodeDown)")
                    #expect(randomBefore.silent == 0, "\(randomBefore)")
                    #expect(randomADown.byInstance["B"] ?? 0 > 0)
                    #expect(randomAfterRebind.silent == 0, "\(randomAfterRebind)")
                }
            }
        } cleanup: {
            if cluster.nodes[1].pid == nil {
                do {
                    try await cluster.relaunch(node: 1)
                } catch {
                    Issue.record("node 1 did not come back: \(error)")
                }
            }
        }
    }

    /// A rolling restart of the instances (SIGTERM, wait for the exit, start again, wait until
    /// bound; A, then B) under continuous traffic from users on both nodes.
    @Test func rollingRestartOfTheInstances() async throws {
        let cluster = try Shared.cluster()
        let domains = [Shared.failoverDomain, Shared.randomDomain]
        try await self.withInstances(cluster) { instances in
            try await self.withSessions(cluster) { sessions in
                let traffic = ClusterTraffic(sessions: sessions, domains: domains, interval: .milliseconds(20))
                try await Task.sleep(for: .milliseconds(500))
                var windows: [(ContinuousClock.Instant, ContinuousClock.Instant)] = []
                for instance in instances {
                    let stopping = ContinuousClock.now
                    let status = try await instance.terminate()
                    #expect(status == 0, "component-host \(instance.name) exited \(status) after SIGTERM")
                    let exited = ContinuousClock.now
                    try instance.start()
                    try await instance.waitBound(Self.allDomains)
                    let bound = ContinuousClock.now
                    windows.append((stopping, bound))
                    report(
                        "ejabberd cluster rolling restart: \(instance.name) stopped in \((exited - stopping).seconds), "
                            + "bound again \((bound - exited).seconds) later")
                    try await Task.sleep(for: .milliseconds(700))
                }
                await traffic.stop()
                let failover = ClusterFigures(sessions, domain: Shared.failoverDomain)
                let random = ClusterFigures(sessions, domain: Shared.randomDomain)
                let randomOutside = ClusterFigures(sessions, domain: Shared.randomDomain) { _, at in
                    !windows.contains { at >= $0.0 && at < $0.1 }
                }
                report("ejabberd cluster rolling restart, \(Shared.failoverDomain) (no balancing): \(failover)")
                report("ejabberd cluster rolling restart, \(Shared.randomDomain) (random): \(random); outside the restarts: \(randomOutside)")
                #expect(failover.silent == 0, "lost: \(failover.silentIDs.prefix(20))")
                #expect(failover.duplicated == 0)
                #expect(failover.bounced == 0)
                #expect(Set(failover.byInstance.keys) == ["A", "B"])
                #expect(random.duplicated == 0)
                #expect(randomOutside.silent == 0, "\(randomOutside.silentIDs.prefix(20))")
            }
        }
    }
}
