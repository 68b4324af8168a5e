public import ComponentHost
public import ComponentKit
import EchoComponent

/// `plugin = "echo"`: ``EchoComponent/EchoComponent`` echoes every message back to its sender.
///
/// ```toml
/// [[component]]
/// hostname = "echo.example.com"
/// plugin = "echo"
/// [component.options]
/// prefix = "echo: "
/// ```
public enum EchoPlugin: ComponentPlugin {
    /// `echo`.
    public static let name = "echo"
    /// What it does.
    public static let description = "Echoes every message back to its sender."
    /// `prefix` (string, empty by default).
    public static let options = [
        PluginOption("prefix", type: .string, default: .string(""), help: "Text put before each echoed body.")
    ]

    /// Makes an ``EchoComponent/EchoComponent`` with the prefix.
    public static func make(options: PluginOptions, context: PluginContext) throws -> any ComponentHandler {
        EchoComponent(prefix: options.string("prefix") ?? "")
    }
}
