import ComponentKit
import Foundation
import Logging
import ServiceLifecycle
import XMPPCore

/// A component of your own, in its own process: answers every message with its body reversed.
struct ReverseComponent: ComponentHandler {
    var discoInfo: DiscoInfo {
        DiscoInfo(identities: [.init(category: "component", type: "generic", name: "Reverser (out of process)")])
    }

    func handle(_ stanza: Stanza, in context: ComponentContext) async throws {
        guard case .message(let message) = stanza, message.type != .error, let body = message.body else { return }
        try await context.send(message.reply(body: String(body.reversed())))
    }
}

/// What `component-host` passes to a command it supervises (the `external` plugin).
struct HostEnvironment {
    /// `COMPONENT_HOSTNAME`: the hostname to serve.
    var hostname: String
    /// `COMPONENT_LISTEN`: the host's local XEP-0114 listener, `host:port`.
    var host: String
    var port: Int
    /// `COMPONENT_SECRET`: the XEP-0114 secret.
    var secret: String

    init(_ environment: [String: String]) throws {
        guard let hostname = environment["COMPONENT_HOSTNAME"], let listen = environment["COMPONENT_LISTEN"],
            let secret = environment["COMPONENT_SECRET"]
        else {
            throw Failure(
                "run me from component-host (plugin \"external\" with a command): COMPONENT_HOSTNAME, COMPONENT_LISTEN and COMPONENT_SECRET are not all set"
            )
        }
        guard !listen.hasPrefix("unix:"), let colon = listen.lastIndex(of: ":"),
            let port = Int(listen[listen.index(after: colon)...])
        else {
            throw Failure(
                "COMPONENT_LISTEN '\(listen)': this example connects over TCP; give the host a loopback listen = \"127.0.0.1:PORT\""
            )
        }
        self.hostname = hostname
        self.host = String(listen[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        self.port = port
        self.secret = secret
    }
}

struct Failure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

@main struct OutOfProcessComponent {
    static func main() async throws {
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        let logger = Logger(label: "OutOfProcessComponent")
        let environment = try HostEnvironment(ProcessInfo.processInfo.environment)
        var configuration = ComponentConfiguration(
            host: environment.host, port: environment.port, serverDomain: environment.hostname,
            identity: environment.hostname, password: Secret(environment.secret))
        configuration.protocolMode = .xep0114  // the host's listener speaks jabber:component:accept
        configuration.tlsMode = .none  // loopback only: the host refuses any other listen address
        let connection = ComponentConnection(configuration: configuration, logger: logger)
        try connection.register(environment.hostname, handler: ReverseComponent())
        // The host stops its commands with SIGTERM (then SIGKILL after stop_grace_seconds).
        try await ServiceGroup(services: [connection], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger).run()
    }
}
