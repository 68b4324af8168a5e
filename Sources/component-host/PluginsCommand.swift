import ArgumentParser
import ComponentHost
import StockPlugins

/// `component-host plugins`
struct PluginsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plugins",
        abstract: "List the plugins this binary has, with their options."
    )

    func run() {
        print(Self.listing(.stock))
    }

    /// Each plugin: name, description, options with type, default and help.
    static func listing(_ registry: PluginRegistry) -> String {
        var lines: [String] = []
        for plugin in registry.plugins {
            lines.append("\(plugin.name): \(plugin.description)")
            if plugin.options.isEmpty {
                lines.append("    (no options)")
            }
            for option in plugin.options {
                let defaultText = option.defaultValue.map { "default \($0)" } ?? "required"
                lines.append("    \(option.name) (\(option.type.rawValue), \(defaultText)): \(option.help)")
            }
        }
        return lines.joined(separator: "\n")
    }
}
