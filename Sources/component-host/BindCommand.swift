import ArgumentParser
import ComponentHost

/// `component-host bind HOSTNAME --plugin NAME [--set key=value ...] [--weight N] [--persist]`
struct BindCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bind",
        abstract: "Bind a hostname to a plugin on the running host (survives reconnects; --persist writes it to the config file)."
    )

    @Argument(help: "The hostname to bind, e.g. weather.example.com.")
    var hostname: String

    @Option(help: "The plugin serving it (see `component-host plugins`).")
    var plugin: String

    @Option(name: .customLong("set"), help: ArgumentHelp("A plugin option, key=value (repeatable).", valueName: "key=value"))
    var assignments: [String] = []

    @Option(help: "This instance's weight for the server's `weighted` balancing (1–1000; the server's default is 1).")
    var weight: Int?

    @Flag(help: "Also add a [[component]] entry to the host's configuration file.")
    var persist = false

    @OptionGroup var socket: SocketOptions

    func validate() throws {
        for assignment in self.assignments where !assignment.contains("=") {
            throw ValidationError("--set expects key=value, not '\(assignment)'.")
        }
        if let weight = self.weight, !(1...1000).contains(weight) {
            throw ValidationError("--weight expects an integer from 1 to 1000, not \(weight).")
        }
    }

    /// The request sent to the host.
    var request: AdminRequest {
        AdminRequest(
            command: .bind, hostname: self.hostname, plugin: self.plugin, set: self.assignments, persist: self.persist,
            weight: self.weight)
    }

    func run() async throws {
        let response = try await AdminClient(path: try self.socket.resolvedPath()).send(self.request)
        try AdminOutput.print(response)
    }
}
