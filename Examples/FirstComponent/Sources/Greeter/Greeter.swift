import ComponentKit
import XMPPCore

/// A component that greets whoever writes to it and counts the greetings.
public enum Greeter {
    /// The namespace of the greeter's own IQ query.
    public static let namespace = "urn:example:greeter"

    /// Makes the greeter's handler: a router with one message route and one IQ route.
    /// - Parameter greeting: The word the greeter puts before the sender's text.
    public static func makeHandler(greeting: String) -> StanzaRouter {
        let counter = GreetingCounter()
        var router = StanzaRouter(identity: .init(category: "component", type: "generic", name: "Greeter"))

        // Every message with a body, of any type but error, gets a greeting back.
        router.message { message, context in
            guard let body = message.body else { return }
            let count = await counter.increment()
            try await context.send(message.reply(body: "\(greeting), \(body)! (greeting #\(count))"))
        }

        // <iq type='get'><count xmlns='urn:example:greeter'/></iq> returns how many so far.
        router.iq(.get, Greeter.namespace, "count") { iq, context in
            Element("count", namespace: Greeter.namespace, text: String(await counter.value))
        }
        return router
    }
}

/// The number of greetings sent, shared by the routes of one handler.
actor GreetingCounter {
    private(set) var value = 0

    func increment() -> Int {
        self.value += 1
        return self.value
    }
}
