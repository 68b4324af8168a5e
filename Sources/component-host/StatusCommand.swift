import ArgumentParser
import ComponentHost
import Foundation

/// `component-host status [--json]`
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the running host: server, protocol, TLS, SASL, each hostname with its plugin, state and counters."
    )

    @Flag(help: "Print the status as JSON.")
    var json = false

    @OptionGroup var socket: SocketOptions

    func run() async throws {
        let response = try await AdminClient(path: try self.socket.resolvedPath()).send(AdminRequest(command: .status))
        guard response.ok, let status = response.status else {
            try AdminOutput.print(response)
            return
        }
        print(try Self.render(status, json: self.json))
    }

    /// The status as text or JSON.
    static func render(_ status: HostStatus, json: Bool) throws -> String {
        guard json else { return status.rendered }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(status), as: UTF8.self)
    }
}

/// Prints an admin response; a failure becomes a non-zero exit.
enum AdminOutput {
    static func print(_ response: AdminResponse) throws {
        if response.ok {
            Swift.print(response.message ?? "ok")
        } else {
            throw CommandFailure(response.error ?? "the host refused the request")
        }
    }
}
