import ArgumentParser
import ComponentHost
import Foundation
import StockPlugins
import Testing
import XMPPTestSupport

@testable import component_host

@Suite("Command line", .timeLimit(.minutes(2)))
struct CommandLineTests {
    @Test func parsesEverySubcommand() throws {
        let run = try #require(
            try ComponentHostCommand.parseAsRoot(["run", "--config", "h.toml", "--log-format", "json"]) as? RunCommand)
        #expect(run.config.config == "h.toml")
        #expect(run.logging.logFormat == .json)

        let bind = try #require(
            try ComponentHostCommand.parseAsRoot([
                "bind", "weather.example.com", "--plugin", "kv", "--set", "max_keys=3", "--set", "read_only=true",
                "--persist", "--socket", "/run/x.sock",
            ]) as? BindCommand)
        #expect(
            bind.request
                == AdminRequest(
                    command: .bind, hostname: "weather.example.com", plugin: "kv", set: ["max_keys=3", "read_only=true"],
                    persist: true))
        #expect(try bind.socket.resolvedPath() == "/run/x.sock")
        let weighted = try #require(
            try ComponentHostCommand.parseAsRoot(["bind", "search.example.com/eu-2", "--plugin", "echo", "--weight", "3"])
                as? BindCommand)
        #expect(weighted.request.weight == 3)

        let unbind = try #require(try ComponentHostCommand.parseAsRoot(["unbind", "w.example.com"]) as? UnbindCommand)
        #expect(unbind.request == AdminRequest(command: .unbind, hostname: "w.example.com", persist: false))
        #expect(try unbind.socket.resolvedPath(environment: ["XDG_RUNTIME_DIR": "/run/user/1000"]).hasSuffix("/admin.sock"))

        let status = try #require(try ComponentHostCommand.parseAsRoot(["status", "--json"]) as? StatusCommand)
        #expect(status.json)
        #expect(try ComponentHostCommand.parseAsRoot(["check-config", "--config", "h.toml"]) is CheckConfigCommand)
        #expect(try ComponentHostCommand.parseAsRoot(["plugins"]) is PluginsCommand)
    }

    @Test func rejectsBadInvocations() throws {
        #expect(throws: (any Error).self) { try ComponentHostCommand.parseAsRoot(["bind", "x.example.com"]) }  // no --plugin
        for weight in ["0", "1001", "heavy"] {
            #expect(throws: (any Error).self) {
                try ComponentHostCommand.parseAsRoot(["bind", "x.example.com/a", "--plugin", "echo", "--weight", weight])
            }
        }
        #expect(throws: (any Error).self) {
            try ComponentHostCommand.parseAsRoot(["bind", "x.example.com", "--plugin", "kv", "--set", "novalue"])
        }
        #expect(throws: (any Error).self) {
            try ComponentHostCommand.parseAsRoot(["status", "--socket", "/a", "--config", "b"])
        }
        #expect(throws: (any Error).self) { try ComponentHostCommand.parseAsRoot(["run"]) }  // no --config
        #expect(throws: (any Error).self) {
            try ComponentHostCommand.parseAsRoot(["run", "--config", "h", "--log-format", "xml"])
        }
        #expect(throws: (any Error).self) { try ComponentHostCommand.parseAsRoot(["demo", "--no-such-flag"]) }
        #expect(try ComponentHostCommand.parseAsRoot(["demo", "--keep"]) is DemoCommand)
    }

    @Test func socketFromConfigurationFile() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let path = try directory.write("h.toml", "[admin]\nsocket = \"/run/custom/admin.sock\"\n")
        let status = try #require(try ComponentHostCommand.parseAsRoot(["status", "--config", path]) as? StatusCommand)
        #expect(try status.socket.resolvedPath() == "/run/custom/admin.sock")
    }

    @Test func checkConfigReportAndPluginListing() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let path = try Fixtures.write(in: directory, Fixtures.configuration())
        let ok = CheckConfigCommand.report(path: path, registry: .stock, environment: [:])
        #expect(ok.valid)
        #expect(ok.text.contains("echo.example.com → echo"))
        let broken = try directory.write("broken.toml", "[server]\nhost = 3\n")
        let bad = CheckConfigCommand.report(path: broken, registry: .stock, environment: [:])
        #expect(!bad.valid)
        #expect(bad.text == "\(broken):2: server.host: expected a string, found an integer")
        #expect(PluginsCommand.listing(.stock).contains("    max_keys (integer, default 1000): The most keys the store holds."))
    }

    /// Runs the built `component-host` as a subprocess.
    @Test func builtBinaryChecksConfigAndListsPlugins() async throws {
        let binary = try #require(Self.binaryPath, "component-host not found next to the test bundle")
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let path = try Fixtures.write(in: directory, Fixtures.configuration())

        let check = try await Self.run(binary, ["check-config", "--config", path])
        #expect(check.status == 0)
        #expect(check.output.contains("\(path): OK"))
        #expect(
            check.output.contains(
                "kv.example.com → kv (max_key_bytes = 256, max_keys = 1000, max_value_bytes = 4096, read_only = false, writers = \"\")"
            ))
        #expect(!check.output.contains(Fixtures.password))

        let broken = try directory.write("broken.toml", Fixtures.configuration().replacingOccurrences(of: "tls =", with: "tsl ="))
        let failed = try await Self.run(binary, ["check-config", "--config", broken])
        #expect(failed.status == 1)
        #expect(failed.error.contains("\(broken):6: server.tsl: unknown key; did you mean \"tls\"?"))

        let plugins = try await Self.run(binary, ["plugins"])
        #expect(plugins.status == 0)
        #expect(plugins.output.hasPrefix("echo: Echoes every message back to its sender.\n    prefix (string, default \"\")"))
        #expect(plugins.output.contains("kv: A tiny key-value store"))
    }

    /// The README's main command, end to end: the real binary, the embedded reference server,
    /// real TLS, real Cyrus SASL, real stanzas.
    @Test(.timeLimit(.minutes(1)))
    func builtBinaryRunsTheDemo() async throws {
        let binary = try #require(Self.binaryPath, "component-host not found next to the test bundle")
        let result = try await Self.run(binary, ["demo"], timeout: .seconds(45))
        #expect(result.status == 0, "demo failed: \(result.output)\n\(result.error)")
        #expect(result.output.contains("connected over XEP-0225, TLSv1.3, SASL SCRAM-SHA-256-PLUS"))
        #expect(result.output.contains("<body>echo: Hello, component!</body>"))
        #expect(result.output.contains("<body>SHOUT: is anyone there?</body>"))
        #expect(result.output.contains("all 9 steps passed"))
    }

    static var binaryPath: String? {
        let candidates = [
            URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("component-host")
                .path,
            URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent().appendingPathComponent("component-host").path,
            FileManager.default.currentDirectoryPath + "/.build/debug/component-host",
        ]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Runs the binary to completion (a ``TestProcess``: killed by PID at the deadline, and
    /// by the reaper if the runner dies) and returns its status, standard output and error.
    static func run(
        _ binary: String, _ arguments: [String], timeout: Duration = .seconds(30)
    ) async throws -> (status: Int32, output: String, error: String) {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let process = TestProcess(
            executable: binary, arguments: arguments, outputPath: directory.path + "/out", errorPath: directory.path + "/err")
        try process.start()
        let status: Int32
        do {
            status = try await process.waitForExit(timeout: timeout)
        } catch {
            process.kill()
            throw error
        }
        return (status, process.output, (try? directory.read("err")) ?? "")
    }
}
