import ArgumentParser
import ComponentHost
import Foundation
import StockPlugins

/// `component-host check-config --config host.toml`
struct CheckConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Validate a configuration file and explain what the host would do with it."
    )

    @OptionGroup var config: ConfigOptions

    func run() throws {
        let (text, valid) = Self.report(path: self.config.config, registry: .stock)
        if valid {
            print(text)
        } else {
            FileHandle.standardError.write(Data((text + "\n").utf8))
            throw ExitCode(1)
        }
    }

    /// The explanation (valid) or the error (invalid).
    static func report(
        path: String, registry: PluginRegistry, environment: [String: String]? = nil
    ) -> (text: String, valid: Bool) {
        do {
            let configuration = try HostConfiguration.load(path: path, environment: environment, registry: registry)
            return ("\(path): OK\n\n\(configuration.explanation)", true)
        } catch {
            return ("\(error)", false)
        }
    }
}
