public import ComponentKit
public import Logging

/// A factory that the host uses to make a ``/ComponentKit/ComponentHandler`` for a
/// `[[component]]` entry (or a runtime `bind`): its name, what it does, the options it
/// takes, and how to make a handler from validated options.
///
/// ```swift
/// struct WeatherPlugin: ComponentPlugin {
///     static let name = "weather"
///     static let description = "Answers 'weather CITY' messages."
///     static let options = [PluginOption("units", type: .string, default: .string("metric"), help: "metric or imperial")]
///     static func make(options: PluginOptions, context: PluginContext) throws -> any ComponentHandler {
///         WeatherComponent(units: options.string("units")!)
///     }
/// }
/// ```
///
/// ## Changed options (SIGHUP reload)
///
/// When the options of a hostname change, the host calls
/// ``PluginOptionsUpdatable/optionsChanged(to:)`` if the running handler conforms to
/// ``PluginOptionsUpdatable`` (and the plugin is the same); otherwise it calls
/// ``make(options:context:)`` again and the new handler takes the next stanza (the
/// stanza in progress finishes on the old one). The hostname stays bound either way.
public protocol ComponentPlugin: SendableMetatype {
    /// The name used in `plugin = "…"` and `--plugin` (lowercase letters, digits, `-`, `_`).
    static var name: String { get }
    /// One sentence for `component-host plugins`.
    static var description: String { get }
    /// The options accepted in `[component.options]`.
    static var options: [PluginOption] { get }
    /// Makes a handler for a hostname.
    /// - Parameters:
    ///   - options: Validated options: every declared option has a value of its type.
    ///   - context: The hostname and a logger.
    /// - Returns: The handler.
    /// - Throws: A ``PluginError`` (``PluginError/invalidValue(_:_:)``) when a value is
    ///   of the right type but unacceptable.
    static func make(options: PluginOptions, context: PluginContext) throws -> any ComponentHandler

    /// Checks values that are of the right type but may be unacceptable (an address that
    /// must be loopback…), when the configuration is loaded or a runtime bind is asked
    /// for, before any handler is made.
    /// - Parameter options: Validated options.
    /// - Throws: A ``PluginError`` naming the option and why.
    static func check(options: PluginOptions) throws
}

extension ComponentPlugin {
    /// No options.
    public static var options: [PluginOption] { [] }

    /// Accepts every value of the declared types.
    public static func check(options: PluginOptions) throws {}
}

/// What a plugin knows when the host makes a handler.
public struct PluginContext: Sendable {
    /// The hostname the handler is made for.
    public var hostname: String
    /// A logger with `component.hostname` and `component.plugin` metadata.
    public var logger: Logger

    /// Creates a context.
    /// - Parameters:
    ///   - hostname: The hostname.
    ///   - logger: The logger.
    public init(hostname: String, logger: Logger) {
        self.hostname = hostname
        self.logger = logger
    }
}

/// A handler that takes new options in place, keeping its state (e.g. a store), instead
/// of being made again. See ``ComponentPlugin``.
public protocol PluginOptionsUpdatable: ComponentHandler {
    /// Applies new, validated options.
    /// - Parameter options: The new options.
    /// - Throws: A ``PluginError`` to refuse them (the old ones stay in force).
    func optionsChanged(to options: PluginOptions) async throws
}
