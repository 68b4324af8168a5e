import ArgumentParser

/// `component-host`: runs XMPP component plugins against a server, and manages a running host.
@main
struct ComponentHostCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "component-host",
        abstract: "Run Swift XMPP component plugins against any server; bind hostnames while running.",
        subcommands: [
            RunCommand.self, BindCommand.self, UnbindCommand.self, StatusCommand.self, CheckConfigCommand.self,
            PluginsCommand.self, DemoCommand.self,
        ]
    )
}

/// A failure reported as `Error: …` with exit status 1 (no usage text: the command line was fine).
struct CommandFailure: Error, CustomStringConvertible {
    let description: String

    init(_ description: String) {
        self.description = description
    }
}
