import ArgumentParser
import ComponentHost

/// `component-host unbind HOSTNAME [--persist]`
struct UnbindCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unbind",
        abstract: "Unbind a hostname on the running host (--persist removes it from the config file)."
    )

    @Argument(help: "The hostname to unbind.")
    var hostname: String

    @Flag(help: "Also remove its [[component]] entry from the host's configuration file.")
    var persist = false

    @OptionGroup var socket: SocketOptions

    /// The request sent to the host.
    var request: AdminRequest {
        AdminRequest(command: .unbind, hostname: self.hostname, persist: self.persist)
    }

    func run() async throws {
        let response = try await AdminClient(path: try self.socket.resolvedPath()).send(self.request)
        try AdminOutput.print(response)
    }
}
