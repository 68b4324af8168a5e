import ComponentHost
import ComponentKit

/// The greeter as a plugin: the name a host configuration uses (`plugin = "greeter"`), its
/// options, and how to make its handler.
public enum GreeterPlugin: ComponentPlugin {
    /// The name in `plugin = "greeter"`.
    public static let name = "greeter"
    /// What `component-host plugins` prints.
    public static let description = "Greets whoever writes to it."
    /// `greeting`: the word before the sender's text.
    public static let options = [
        PluginOption("greeting", type: .string, default: .string("Hello"), help: "The word before the sender's text.")
    ]

    /// Makes the greeter for one hostname, from validated options.
    public static func make(options: PluginOptions, context: PluginContext) throws -> any ComponentHandler {
        let greeting = options.string("greeting") ?? "Hello"
        guard !greeting.isEmpty else {
            throw PluginError.invalidValue("greeting", "must not be empty")
        }
        return Greeter.makeHandler(greeting: greeting)
    }
}
