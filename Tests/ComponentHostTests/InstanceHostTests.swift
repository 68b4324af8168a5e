import ComponentKit
import Foundation
import Logging
import ReferenceServer
import StockPlugins
import Testing
import XMPPCore
import XMPPTestSupport

@testable import ComponentHost

/// Instances of one domain (`domain/resource`) in `host.toml` and at run time, with the
/// weight each sends at bind time.
@Suite("Instances in the host", .serialized, .timeLimit(.minutes(2)))
struct InstanceHostTests {
    @Test func weightIsReadAndChecked() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let text = Fixtures.configuration(
            extra: "\n[[component]]\nhostname = \"search.example.com/eu-1\"\nplugin = \"echo\"\nweight = 3\n")
        let configuration = try HostConfiguration.load(
            path: try Fixtures.write(in: directory, text), environment: [:], registry: .stock)
        #expect(configuration.components.map(\.hostname).last == "search.example.com/eu-1")
        #expect(configuration.components.map(\.weight) == [nil, nil, 3])
        for (bad, message) in [("0", "expected at least 1, found 0"), ("1001", "expected an integer from 1 to 1000, found 1001")]
        {
            let broken = text.replacingOccurrences(of: "weight = 3", with: "weight = \(bad)")
            let error = #expect(throws: ConfigurationError.self) {
                try HostConfiguration.load(path: try Fixtures.write(in: directory, broken), environment: [:], registry: .stock)
            }
            #expect(error.map { "\($0)" }?.hasSuffix("component[2].weight: \(message)") == true, "\(error.map { "\($0)" } ?? "")")
        }
    }

    @Test func aChangedWeightNeedsARestart() throws {
        var old = HostConfiguration.Component(hostname: "search.example.com/eu-1", plugin: "echo")
        old.weight = 3
        var new = old
        new.weight = 5
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        var configuration = try HostConfiguration.load(
            path: try Fixtures.write(in: directory, Fixtures.configuration()), environment: [:], registry: .stock)
        configuration.components = [old]
        var changed = configuration
        changed.components = [new]
        #expect(ComponentHost.restartRequired(old: configuration, new: changed) == ["component search.example.com/eu-1 weight"])
        #expect(ComponentHost.restartRequired(old: configuration, new: configuration).isEmpty)
    }

    @Test func instancesFromTheFileAndAtRunTimeBindWithTheirWeights() async throws {
        try await LiveHostTests.Setup.with { setup in
            var text = setup.configuration(components: [
                ("search.example.test/eu-1", "echo"), ("search.example.test/eu-2", "echo"),
            ])
            text = text.replacingOccurrences(
                of: "hostname = \"search.example.test/eu-1\"\nplugin = \"echo\"\n",
                with: "hostname = \"search.example.test/eu-1\"\nplugin = \"echo\"\nweight = 3\n")
            let path = try Fixtures.write(in: setup.directory, text)
            let configuration = try HostConfiguration.load(path: path, environment: [:], registry: .stock)
            let host = try ComponentHost(configuration: configuration, registry: .stock, logger: Logger(label: "instances"))
            try await LiveHostTests.whileRunning(host) {
                try await setup.server.waitUntilBound("search.example.test/eu-1")
                try await setup.server.waitUntilBound("search.example.test/eu-2")
                #expect(
                    setup.server.instances == [
                        BoundInstance(hostname: "search.example.test/eu-1", weight: 3),
                        BoundInstance(hostname: "search.example.test/eu-2", weight: 1),
                    ])
                // What `component-host bind search.example.test/eu-3 --plugin echo` does.
                try await host.bind("search.example.test/eu-3", plugin: "echo")
                try await setup.server.waitUntilBound("search.example.test/eu-3")
                #expect(setup.server.instances.count == 3)
                // `… bind search.example.test/eu-4 --plugin echo --weight 5`, through the admin
                // socket's request: the weight goes with the bind request.
                let bound = await AdminServer.respond(
                    to: AdminRequest(command: .bind, hostname: "search.example.test/eu-4", plugin: "echo", weight: 5), host: host)
                #expect(bound.ok, "\(bound.error ?? "")")
                try await setup.server.waitUntilBound("search.example.test/eu-4")
                #expect(setup.server.instances.contains(BoundInstance(hostname: "search.example.test/eu-4", weight: 5)))
                let refused = await AdminServer.respond(
                    to: AdminRequest(command: .bind, hostname: "search.example.test/eu-5", plugin: "echo", weight: 0), host: host)
                #expect(!refused.ok)
                #expect(refused.error?.contains("from 1 to 1000") == true, "\(refused.error ?? "")")
                try await host.unbind("search.example.test/eu-4")
                // The domain is served (by one instance, the server's choice).
                let answer = try await setup.ask("search.example.test", "hello", id: "s1")
                #expect(Message(answer)?.body == "hello")
                #expect(Message(answer)?.type == .chat)
            }
        }
    }
}
