import ArgumentParser
import ComponentHost
import Logging

/// `component-host demo`: the host with two plugins against an embedded reference server,
/// over STARTTLS + SASL, with a third hostname bound at runtime and real stanzas flowing.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run the host against an embedded reference server and show real stanzas flowing.",
        discussion: """
            Starts the project's reference XMPP server on 127.0.0.1 (a generated CA and certificate, \
            a Cyrus sasldb, in a temporary directory), writes a host.toml for it, runs the host with \
            the echo and kv plugins over XEP-0225 (STARTTLS, SCRAM via Cyrus SASL), binds a third \
            hostname at runtime through the admin socket, sends stanzas as a user of the server \
            would, and prints the transcript. Exits 0 when every step worked.
            """
    )

    @Flag(name: .shortAndLong, help: "Also print the host's and the server's logs (info level).")
    var verbose = false

    @Flag(help: "Keep the temporary directory (certificates, sasldb, host.toml) for inspection.")
    var keep = false

    func run() async throws {
        let level: Logger.Level = self.verbose ? .info : .error
        LoggingSystem.bootstrap { label in
            HostLogging.makeHandler(label: label, format: .human, level: level)
        }
        let demo = Demo(keepDirectory: self.keep, write: { print($0) })
        let report = try await demo.run()
        if !report.allPassed {
            throw CommandFailure("\(report.failed) of \(report.total) demo steps failed")
        }
    }
}
