import Foundation
import Testing
import XMPPTestSupport

@testable import XMPPTestSupport

/// The ejabberd fixtures themselves: a port taken by someone else before ejabberd bound it is
/// detected (so that ``EjabberdFixture/start(_:)`` starts again on new ports), and a cluster
/// forms, survives a node's death and leaves no process behind.
@Suite(.serialized, .timeLimit(.minutes(4)))
struct EjabberdFixtureChecks {
    /// A listener on 127.0.0.1:`port` that is not ejabberd.
    private final class Squatter {
        let descriptor: Int32

        init(port: Int) throws {
            let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = UInt16(port).bigEndian
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard descriptor >= 0, bound == 0, listen(descriptor, 8) == 0 else {
                close(descriptor)
                throw IntegrationTestError("cannot listen on \(port): \(String(cString: strerror(errno)))")
            }
            self.descriptor = descriptor
        }

        deinit { close(self.descriptor) }
    }

    private static let configuration = EjabberdFixture.Configuration(
        services: [.init(hostname: "echo.localhost", password: "echo-secret")])

    /// Someone else listens on the c2s port: ejabberd logs that it cannot open it and stops,
    /// while the port still accepts connections. The fixture must not take that for a start.
    @Test func aTakenListenerPortIsDetected() async throws {
        let fixture = try await EjabberdFixture(configuration: Self.configuration)
        defer { fixture.kill() }
        let squatter = try Squatter(port: fixture.c2sPort)
        let error = await #expect(throws: EjabberdFixture.PortTaken.self) { try await fixture.launch() }
        #expect(
            error?.description.contains("Failed to open socket at 127.0.0.1:\(fixture.c2sPort)") == true,
            "\(String(describing: error))")
        #expect(fixture.pid == nil)
        withExtendedLifetime(squatter) {}
    }

    /// Someone else listens on the node's distribution port: `beam.smp` cannot start
    /// distribution and exits.
    @Test func aTakenDistributionPortIsDetected() async throws {
        let fixture = try await EjabberdFixture(configuration: Self.configuration)
        defer { fixture.kill() }
        let squatter = try Squatter(port: fixture.distributionPort)
        let error = await #expect(throws: EjabberdFixture.PortTaken.self) { try await fixture.launch() }
        #expect(error?.description.contains("distribution port") == true, "\(String(describing: error))")
        withExtendedLifetime(squatter) {}
    }

    /// Two nodes form a cluster; a node killed with SIGKILL comes back and rejoins by itself;
    /// ``EjabberdClusterFixture/stop()`` leaves no `beam.smp`, `ejabberdctl` or `epmd` behind.
    @Test func clusterFormsRejoinsAndStopsEverything() async throws {
        let cluster = try await EjabberdClusterFixture.start(
            .init(
                services: [.init(hostname: "echo.localhost", password: "s")],
                balancing: ["echo.localhost": .init(type: .bareSource, componentNumber: 2)],
                accounts: [.init(username: "alice", password: "alice-pass")]))
        var identities: [ProcessTree.Identity] = []
        try await withCleanup {
            report("ejabberd cluster fixture: formed in \(cluster.startupDuration.seconds)")
            #expect(Set(try await cluster.members(seenBy: 1)) == Set(cluster.nodes.map(\.nodeName)))
            let config = try String(contentsOfFile: cluster.nodes[1].configPath, encoding: .utf8)
            #expect(config.contains("    type: bare_source\n    component_number: 2"), "\(config)")
            identities = cluster.processIdentities()
            #expect(identities.filter { $0.command == "beam.smp" }.count == 2, "\(identities)")
            // epmd runs under setpriv (as the ejabberd user), which execs it.
            #expect(identities.contains { ProcessTree.identity(of: $0.pid)?.command == "epmd" }, "\(identities)")

            let began = ContinuousClock.now
            cluster.nodes[1].kill()
            #expect(!(try await cluster.members(seenBy: 0)).contains(cluster.nodes[1].nodeName))
            try await cluster.relaunch(node: 1)
            report(
                "ejabberd cluster fixture: node 1 killed and back in the cluster after \((ContinuousClock.now - began).seconds)")
            // The account lives in the shared Mnesia: it logs in on the relaunched node.
            let alice = try await C2SClient.connect(
                .init(
                    port: cluster.nodes[1].c2sPort, domain: "localhost", username: "alice", password: "alice-pass",
                    caFile: cluster.caCertificatePath, allowsChannelBinding: false))
            await alice.close()
            identities += cluster.processIdentities()
        } cleanup: {
            cluster.stop()
        }
        let alive = identities.filter(ProcessTree.isAlive)
        #expect(alive.isEmpty, "still running after stop(): \(alive)")
    }
}
