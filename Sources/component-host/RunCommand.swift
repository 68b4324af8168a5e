import ArgumentParser
import ComponentHost
import Logging
import StockPlugins

/// `component-host run --config host.toml`
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Connect, bind every configured hostname to its plugin, serve until SIGTERM/SIGINT; reload on SIGHUP."
    )

    @OptionGroup var config: ConfigOptions
    @OptionGroup var logging: LoggingOptions

    @Option(help: "Seconds a plugin may spend on one stanza before it is reported hung.")
    var watchdogSeconds: Int = 10

    func run() async throws {
        let application = try self.buildApplication(registry: .stock)
        Bootstrap.logging(format: self.logFormat(application.configuration), level: self.logLevel(application.configuration))
        var bootstrapped = application
        bootstrapped.logger = Logger(label: "component-host")
        if application.configuration.metricsListen != nil {
            bootstrapped.metricsRegistry = Bootstrap.metrics()
        }
        try await bootstrapped.run()
    }

    /// Loads the configuration and builds the application (no global state touched).
    func buildApplication(registry: PluginRegistry) throws -> ComponentHostApplication {
        let configuration: HostConfiguration
        do {
            configuration = try HostConfiguration.load(path: self.config.config, registry: registry)
        } catch let error as ConfigurationError {
            throw CommandFailure("\(error)")
        }
        var application = ComponentHostApplication(configuration: configuration, registry: registry)
        application.watchdogThreshold = .seconds(self.watchdogSeconds)
        return application
    }

    func logFormat(_ configuration: HostConfiguration) -> HostConfiguration.Logging.Format {
        self.logging.logFormat ?? configuration.logging.format
    }

    func logLevel(_ configuration: HostConfiguration) -> Logger.Level {
        self.logging.logLevel ?? configuration.logging.level
    }

    func validate() throws {
        guard self.watchdogSeconds > 0 else {
            throw ValidationError("--watchdog-seconds must be at least 1.")
        }
    }
}
