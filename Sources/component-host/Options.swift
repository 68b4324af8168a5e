public import ArgumentParser
public import ComponentHost
import Foundation
public import Logging

/// `--config PATH`, required.
struct ConfigOptions: ParsableArguments {
    @Option(name: .shortAndLong, help: "The configuration file (TOML).")
    var config: String
}

/// Where the admin subcommands find the running host.
struct SocketOptions: ParsableArguments {
    @Option(help: "The admin socket of the running host.")
    var socket: String?

    @Option(name: .shortAndLong, help: "Read the admin socket path from this configuration file.")
    var config: String?

    func validate() throws {
        if self.socket != nil && self.config != nil {
            throw ValidationError("Give --socket or --config, not both.")
        }
    }

    /// `--socket`, else the config file's `[admin] socket`, else the default path.
    func resolvedPath(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> String {
        if let socket = self.socket {
            return socket
        }
        if let config = self.config {
            return try HostConfiguration.adminSocketPath(configurationPath: config, environment: environment)
        }
        return HostConfiguration.defaultAdminSocketPath(environment: environment, isRoot: getuid() == 0)
    }
}

/// `--log-format`, `--log-level`: override `[logging]`.
struct LoggingOptions: ParsableArguments {
    @Option(help: "Log format: human or json (default: the config's [logging] format, else human).")
    var logFormat: HostConfiguration.Logging.Format?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level?
}

extension HostConfiguration.Logging.Format: ExpressibleByArgument {}
extension Logger.Level: @retroactive ExpressibleByArgument {}
