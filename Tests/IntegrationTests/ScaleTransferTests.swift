import ComponentKit
import Foundation
import Logging
import ReferenceServer
import Testing
import XMPPCore

/// Moving an instance between servers: XEP-0051 transfers ordered by the reference
/// server's admin API (sticky, `<domain/>` honoured), and `see-other-host` while negotiating.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct ScaleTransferTests {
    static let instance = "\(ScaleFixture.service)/eu-1"

    func connection(to server: ReferenceServer, _ label: String, logger: Logger? = nil) throws -> ComponentConnection {
        let connection = ComponentConnection(
            configuration: ScaleFixture.shared.clientConfiguration(port: server.port), logger: logger ?? testLogger(label))
        try connection.register(Self.instance, handler: InstanceTally().handler())
        return connection
    }

    @Test func aTransferIsFollowedAndStaysUntilForgotten() async throws {
        try await withServers { servers in
            let first = try await servers.start(ScaleFixture.shared.serverConfiguration())
            let second = try await servers.start(ScaleFixture.shared.serverConfiguration())
            let connection = try self.connection(to: first, "transfer")
            try await withRunningConnection(connection) { connection in
                try await first.waitUntilBound(Self.instance)
                let answer = try await first.transfer(hostname: Self.instance, to: "127.0.0.1:\(second.port)")
                #expect(answer.type == .result)
                try await second.waitUntilBound(Self.instance)
                try await first.waitUntilUnbound(Self.instance)
                // Sticky: a reconnect goes back to the server it was transferred to.
                for _ in 0..<3 {
                    await second.disconnectComponentsAndWait()
                    try await second.waitUntilBound(Self.instance)
                    #expect(first.boundHostnames.isEmpty, "a reconnect went back to the configured server")
                }
                // Until the configuration is reloaded (the host calls this on reload).
                connection.forgetTransferTarget()
                await second.disconnectComponentsAndWait()
                try await first.waitUntilBound(Self.instance)
                #expect(second.boundHostnames.isEmpty)
            }
        }
    }

    @Test func aTransferToAnotherDomainUsesItForTheStreamAndTheCertificate() async throws {
        try await withServers { servers in
            let first = try await servers.start(ScaleFixture.shared.serverConfiguration())
            // other.test: its certificate names only other.test, and it accepts only streams to it.
            var otherConfiguration = ScaleFixture.shared.serverConfiguration(domain: ScaleFixture.otherDomain)
            otherConfiguration.allowedHostnames = [ScaleFixture.identity: [ScaleFixture.service]]
            let other = try await servers.start(otherConfiguration)
            let connection = try self.connection(to: first, "transfer-domain")
            try await withRunningConnection(connection) { connection in
                try await first.waitUntilBound(Self.instance)
                let answer = try await first.transfer(
                    hostname: Self.instance, to: "127.0.0.1:\(other.port)", domain: ScaleFixture.otherDomain, variant: true)
                #expect(answer.type == .result)
                try await other.waitUntilBound(Self.instance)
                #expect(connection.status.connection?.tlsVersion == "TLSv1.3")
            }
        }
    }

    @Test func aTransferWithABadDomainIsRefused() async throws {
        try await withServers { servers in
            let first = try await servers.start(ScaleFixture.shared.serverConfiguration())
            let connection = try self.connection(to: first, "transfer-bad")
            try await withRunningConnection(connection) { _ in
                try await first.waitUntilBound(Self.instance)
                let answer = try await first.transfer(hostname: Self.instance, to: "127.0.0.1:1", domain: "user@bad")
                #expect(answer.error?.condition == .badRequest)
                #expect(first.boundHostnames == [Self.instance])
            }
        }
    }

    @Test func seeOtherHostDuringNegotiationIsFollowedInsideTLSOnly() async throws {
        try await withServers { servers in
            let target = try await servers.start(ScaleFixture.shared.serverConfiguration())
            var drained = ScaleFixture.shared.serverConfiguration()
            drained.seeOtherHost = "127.0.0.1:\(target.port)"
            let drainedServer = try await servers.start(drained)
            let connection = try self.connection(to: drainedServer, "see-other-host")
            try await withRunningConnection(connection) { _ in
                try await target.waitUntilBound(Self.instance)
                #expect(drainedServer.boundHostnames.isEmpty)
            }

            // The same redirect before TLS is not trusted: the connection stays away from it.
            var early = drained
            early.seeOtherHostBeforeTLS = true
            let earlyServer = try await servers.start(early)
            let logs = CapturedLogs()
            let refused = try self.connection(
                to: earlyServer, "see-other-host-early", logger: logs.logger("early", level: .warning))
            try await withRunningConnection(refused) { _ in
                try await logs.wait("the refusal") {
                    $0.message.contains("not following see-other-host from a stream without TLS")
                }
                #expect(target.boundHostnames.isEmpty)
            }
        }
    }
}

extension ReferenceServer {
    /// Drops the component streams and waits until their hostnames are released.
    func disconnectComponentsAndWait() async {
        let bound = self.boundHostnames
        self.disconnectComponents()
        for hostname in bound {
            try? await self.waitUntilUnbound(hostname)
        }
    }
}
