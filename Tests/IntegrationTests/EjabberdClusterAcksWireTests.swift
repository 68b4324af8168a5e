import Foundation
import Testing
import XMPPTestSupport

/// The acknowledgements of `ejabberd_service_acks` (ServerModules/ejabberd) on the wire,
/// without the SDK: `scripts/ejabberd-acks-check.py` opens raw XEP-0114 streams over direct
/// TLS to the shared cluster. Two connections of `live.localhost` send
/// `<enable xmlns='urn:xmpp:sm:3'/>`: a victim on node 1 and a survivor on node 0; a third
/// connection (`failover.localhost`, on node 0) sends numbered messages to `live.localhost`
/// through `mod_component_balancing`. The victim is killed under traffic (its socket closed
/// without `</stream:stream>`, then its whole node with SIGKILL): every message it had not
/// acknowledged, read or still in flight, must reach the survivor; nothing is lost. The
/// script also checks the protocol's edges (a second `<enable/>` fails, `<r/>` is
/// answered, an `h` beyond what was sent is a stream error with
/// `<handled-count-too-high/>`). Without `<enable/>` the same kill loses what is in flight
/// (printed for comparison, 0–7 of 2 000 measured).
extension EjabberdClusterTests {
    static let acksCheckScript = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("scripts/ejabberd-acks-check.py").path

    /// Runs the check (victim on node 1, survivor and sender on node 0) and returns its
    /// status and output.
    func runAcksCheck(_ cluster: EjabberdClusterFixture, _ extra: [String]) async throws -> (status: Int32, output: String) {
        let python = "/usr/bin/python3"
        try #require(FileManager.default.isExecutableFile(atPath: python), "python3 is not installed (scripts/setup.sh)")
        let arguments =
            [
                Self.acksCheckScript, "--port", String(cluster.nodes[1].componentTLSPort), "--survivor-port",
                String(cluster.nodes[0].componentTLSPort), "--balanced", Shared.liveDomain, "--sender", Shared.failoverDomain,
                "--secret", Shared.secret, "--cafile", cluster.caCertificatePath, "--count", "2000",
            ] + extra
        let result = try await runCommand(python, arguments, timeout: .seconds(240))
        for line in result.output.split(separator: "\n") where line.hasPrefix("at the kill") || line.hasPrefix("after the kill") {
            report("ejabberd cluster, acknowledgements on the wire \(extra.joined(separator: " ")): \(line)")
        }
        return result
    }

    @Test func acknowledgedStreamsLoseNothingWhenTheirInstanceOrNodeIsKilled() async throws {
        let cluster = try Shared.cluster()
        try await withCleanup {
            // The victim acknowledges every 16 stanzas, as the SDK does.
            let instance = try await self.runAcksCheck(cluster, ["--acked", "1000000", "--kill-after", "1000"])
            #expect(instance.status == 0, "instance killed:\n\(instance.output)")
            // A victim that acknowledges only its first 40: the rest it read comes again.
            let partial = try await self.runAcksCheck(cluster, ["--acked", "40", "--kill-after", "1000"])
            #expect(partial.status == 0, "instance killed, 40 acknowledged:\n\(partial.output)")
            // The baseline, for the figures only: without <enable/> what is in flight is lost.
            _ = try await self.runAcksCheck(cluster, ["--plain-victim", "--kill-after", "1000"])
            let beam = try #require(cluster.nodes[1].beamPID, "node 1 has no beam.smp")
            let node = try await self.runAcksCheck(
                cluster, ["--acked", "1000000", "--kill-after", "1000", "--kill-pid", String(beam)])
            #expect(node.status == 0, "node 1 killed:\n\(node.output)")
        } cleanup: {
            if cluster.nodes[1].beamPID == nil {
                cluster.nodes[1].kill()
                do {
                    try await cluster.relaunch(node: 1)
                } catch {
                    Issue.record("node 1 did not come back: \(error)")
                }
            }
        }
    }
}
