import ComponentHost
import ComponentKit
import XMPPCore

/// A component of your own: answers every message with the time, in a configurable form.
struct TimeComponent: ComponentHandler {
    let greeting: String

    var discoInfo: DiscoInfo {
        DiscoInfo(identities: [.init(category: "component", type: "generic", name: "Clock")])
    }

    func handle(_ stanza: Stanza, in context: ComponentContext) async throws {
        guard case .message(let message) = stanza, message.type != .error, message.body != nil else { return }
        let now = ContinuousClock.now
        try await context.send(message.reply(body: "\(self.greeting) (uptime clock: \(now))"))
    }
}

/// Its factory: the name used in `plugin = "time"`, its options, and how to make it.
enum TimePlugin: ComponentPlugin {
    static let name = "time"
    static let description = "Answers every message with the time."
    static let options = [
        PluginOption("greeting", type: .string, default: .string("It is now"), help: "Text before the time.")
    ]

    static func make(options: PluginOptions, context: PluginContext) throws -> any ComponentHandler {
        let greeting = options.string("greeting") ?? "It is now"
        guard !greeting.isEmpty else {
            throw PluginError.invalidValue("greeting", "must not be empty")
        }
        return TimeComponent(greeting: greeting)
    }
}
