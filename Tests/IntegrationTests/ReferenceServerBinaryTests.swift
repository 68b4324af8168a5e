import ComponentKit
import Foundation
import Testing
import XMPPCore
import XMPPTLS
import XMPPTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// The `reference-server` binary's balancing options and its administrator commands on
/// standard input, with a real component bound to it.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct ReferenceServerBinaryTests {
    static var binaryPath: String? {
        let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let candidates = [
            bundle.appendingPathComponent("reference-server").path,
            bundle.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("reference-server").path,
            FileManager.default.currentDirectoryPath + "/.build/debug/reference-server",
        ]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Waits (bounded) until the process has printed `text`; returns its output.
    static func waitForOutput(_ process: TestProcess, _ text: String) async throws -> String {
        let deadline = ContinuousClock.now + .seconds(20)
        while !process.output.contains(text) {
            guard ContinuousClock.now < deadline else {
                throw IntegrationTestError("no '\(text)' in the output: \(process.output)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        return process.output
    }

    @Test func routingOptionAndCommands() async throws {
        let binary = try #require(Self.binaryPath, "reference-server not found next to the test bundle")
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let fifo = directory.path + "/commands"
        #expect(mkfifo(fifo, 0o600) == 0)
        let process = TestProcess(
            executable: "/bin/sh",
            arguments: [
                "-c",
                "exec \"$0\" --state-dir \"$1\" --port 0 --legacy-port off --domain example.test "
                    + "--routing search.component.example.test=weighted < \"$2\"",
                binary, directory.path + "/state", fifo,
            ],
            outputPath: directory.path + "/out")
        try process.start()
        defer { process.terminate(grace: .seconds(5)) }
        // Opening the pipe waits for the server's shell to open its end.
        let commands = try #require(FileHandle(forWritingAtPath: fifo))
        defer { try? commands.close() }

        func value(_ output: String, after label: String) -> String? {
            output.split(separator: "\n").first { $0.contains(label) }.map {
                $0.components(separatedBy: label)[1].trimmingCharacters(in: .whitespaces).components(separatedBy: " ")[0]
            }
        }

        let banner = try await Self.waitForOutput(process, "XEP-0114:")
        // --legacy-port off: no XEP-0114 secret is shown for a port that does not exist.
        #expect(!banner.contains("with secret"), "\(banner)")
        let port = try #require(value(banner, after: "XEP-0225 port:").flatMap(Int.init))
        let password = try #require(value(banner, after: "SASL password:"))
        let caFile = try #require(value(banner, after: "CA certificate:"))

        var configuration = ComponentConfiguration(
            host: "127.0.0.1", port: port, serverDomain: "example.test", identity: "component.example.test",
            password: Secret(password))
        configuration.protocolMode = .xep0225
        configuration.trustRoots = .caFile(caFile)
        let connection = ComponentConnection(configuration: configuration, logger: testLogger("binary"))
        try connection.register("search.component.example.test/eu-1", weight: 2, handler: InstanceTally().handler())
        let events = EventRecorder(connection)
        try await withRunningConnection(connection) { _ in
            try await events.waitBound(["search.component.example.test/eu-1"])
            commands.write(Data("routing search.component.example.test\n".utf8))
            _ = try await Self.waitForOutput(process, "weighted")
            commands.write(Data("instances\n".utf8))
            _ = try await Self.waitForOutput(process, "weight=2")
            commands.write(Data("bogus\n".utf8))
            _ = try await Self.waitForOutput(process, "error: commands are")
            let output = process.output
            #expect(output.contains("\nweighted\n"), "the --routing option: \(output)")
            #expect(output.contains("search.component.example.test/eu-1 weight=2"))
            commands.write(Data("routing search.component.example.test all\nrouting search.component.example.test\n".utf8))
            _ = try await Self.waitForOutput(process, "\nall\n")
            commands.write(Data("transfer search.component.example.test/eu-1 127.0.0.1:1 user@bad\n".utf8))
            _ = try await Self.waitForOutput(process, "refused: ")
            commands.write(Data("acks\n".utf8))
            _ = try await Self.waitForOutput(process, "rerouted=0 dropped-answers=0")
            commands.write(Data("disconnect search.component.example.test/eu-1\n".utf8))
            try await events.wait("the dropped stream", until: { $0.kind == .disconnected })
        }
    }

    @Test func usersConnectOnTheClientPort() async throws {
        let binary = try #require(Self.binaryPath, "reference-server not found next to the test bundle")
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let secret = "alice-Pässword-\(UInt32.random(in: 1...UInt32.max))"
        let process = TestProcess(
            executable: "/bin/sh",
            arguments: [
                "-c",
                "exec \"$0\" --state-dir \"$1\" --port 0 --legacy-port off --domain example.test "
                    + "--user \"alice@example.test=$2\" --user bob@example.test=other --c2s-port 0 < /dev/null",
                binary, directory.path + "/state", secret,
            ],
            outputPath: directory.path + "/out")
        try process.start()
        defer { process.terminate(grace: .seconds(5)) }
        let banner = try await Self.waitForOutput(process, "users:")
        func value(after label: String) -> String? {
            banner.split(separator: "\n").first { $0.contains(label) }.map {
                $0.components(separatedBy: label)[1].trimmingCharacters(in: .whitespaces).components(separatedBy: " ")[0]
            }
        }
        let port = try #require(value(after: "c2s port:").flatMap(Int.init), "\(banner)")
        let caFile = try #require(value(after: "CA certificate:"))
        let alice = try await C2SClient.connect(
            .init(
                port: port, domain: "example.test", username: "alice", password: secret, resource: "desk",
                caFile: caFile))
        #expect(alice.jid.description == "alice@example.test/desk")
        try await alice.send(Message(type: .chat, to: try JID("alice@example.test"), id: "self", body: "note").element)
        let note = try await alice.next(timeout: .seconds(10)) { $0["id"] == "self" }
        #expect(note["from"] == "alice@example.test/desk")
        await alice.close()
        await #expect(throws: C2SClientError.self) {
            try await C2SClient.connect(
                .init(port: port, domain: "example.test", username: "bob", password: secret, caFile: caFile))
        }
        #expect(!process.output.contains(secret), "a password reached the output")
    }
}
