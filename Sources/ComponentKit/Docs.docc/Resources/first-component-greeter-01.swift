import ComponentKit
import XMPPCore

/// A component that greets whoever writes to it and counts the greetings.
public enum Greeter {
    /// Makes the greeter's handler: a router with one message route and one IQ route.
    /// - Parameter greeting: The word the greeter puts before the sender's text.
    public static func makeHandler(greeting: String) -> StanzaRouter {
        var router = StanzaRouter(identity: .init(category: "component", type: "generic", name: "Greeter"))

        // Every message with a body, of any type but error, gets a greeting back.
        router.message { message, context in
            guard let body = message.body else { return }
            try await context.send(message.reply(body: "\(greeting), \(body)!"))
        }
        return router
    }
}
