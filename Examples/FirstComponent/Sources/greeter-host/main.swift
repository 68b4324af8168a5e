import ComponentHost
import Foundation
import Greeter
import Logging

// greeter-host host.toml: the host with the "greeter" plugin, with the same configuration
// file, admin socket, signals and reloads as `component-host run`. (The stock plugins, echo
// and kv, are in the StockPlugins product: `PluginRegistry.stock.adding(…)` adds yours to them.)
let arguments = CommandLine.arguments
guard arguments.count == 2 else {
    print("usage: greeter-host host.toml")
    exit(2)
}
let registry = PluginRegistry.standard.adding([GreeterPlugin.self])
let configuration = try HostConfiguration.load(path: arguments[1], registry: registry)
LoggingSystem.bootstrap { label in
    HostLogging.makeHandler(label: label, format: configuration.logging.format, level: configuration.logging.level)
}
let application = ComponentHostApplication(
    configuration: configuration, registry: registry, logger: Logger(label: "greeter-host"))
try await application.run()
