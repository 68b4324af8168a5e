public import ComponentKit

/// The plugins a host can run, by name, with option validation.
///
/// ```swift
/// let registry = PluginRegistry.standard.adding([WeatherPlugin.self])
/// ```
///
/// The `StockPlugins` product adds `PluginRegistry.stock`, a registry with the
/// `echo` and `kv` example plugins that `component-host` ships:
///
/// ```swift
/// import StockPlugins
/// let registry = PluginRegistry.stock.adding([WeatherPlugin.self])
/// ```
public struct PluginRegistry: Sendable {
    /// A registered plugin's description, for listings.
    public struct Entry: Sendable {
        /// The plugin's name.
        public let name: String
        /// What it does.
        public let description: String
        /// Its options.
        public let options: [PluginOption]
        let make: @Sendable (PluginOptions, PluginContext) throws -> any ComponentHandler
        var check: @Sendable (PluginOptions) throws -> Void = { _ in }
    }

    private let entries: [String: Entry]

    /// The plugins built into the `ComponentHost` library: the ``ExternalPlugin``
    /// (out-of-process components). The example plugins are in the `StockPlugins` product,
    /// whose `PluginRegistry.stock` adds them.
    public static let standard: PluginRegistry = {
        do {
            return try PluginRegistry([ExternalPlugin.self])
        } catch {
            fatalError("the standard plugins have distinct names: \(error)")
        }
    }()

    /// Creates a registry.
    /// - Parameter plugins: The plugin types.
    /// - Throws: ``PluginError/Kind/duplicatePlugin`` when two share a name.
    public init(_ plugins: [any ComponentPlugin.Type]) throws {
        var entries: [String: Entry] = [:]
        for plugin in plugins {
            guard entries[plugin.name] == nil else {
                throw PluginError(.duplicatePlugin, "two plugins are named '\(plugin.name)'")
            }
            entries[plugin.name] = Entry(
                name: plugin.name, description: plugin.description, options: plugin.options,
                make: { options, context in try plugin.make(options: options, context: context) },
                check: { try plugin.check(options: $0) })
        }
        self.entries = entries
    }

    /// A registry with these plugins added (replacing any of the same name).
    /// - Parameter plugins: The plugin types to add.
    public func adding(_ plugins: [any ComponentPlugin.Type]) -> PluginRegistry {
        var entries = self.entries
        for plugin in plugins {
            entries[plugin.name] = Entry(
                name: plugin.name, description: plugin.description, options: plugin.options,
                make: { options, context in try plugin.make(options: options, context: context) },
                check: { try plugin.check(options: $0) })
        }
        return PluginRegistry(entries: entries)
    }

    private init(entries: [String: Entry]) {
        self.entries = entries
    }

    /// The plugins, sorted by name.
    public var plugins: [Entry] {
        self.entries.values.sorted { $0.name < $1.name }
    }

    /// The plugin of that name.
    public subscript(name: String) -> Entry? {
        self.entries[name]
    }

    /// Checks options against a plugin's declarations and fills in defaults.
    /// - Parameters:
    ///   - plugin: The plugin's name.
    ///   - options: The options as written.
    /// - Returns: Validated options.
    /// - Throws: ``PluginError``: unknown plugin, unknown option (with the known ones),
    ///   wrong type (with the expected one), missing required option.
    public func validate(plugin: String, options: [String: PluginOptionValue]) throws -> PluginOptions {
        let entry = try self.entry(plugin)
        var result: [String: PluginOptionValue] = [:]
        for name in options.keys.sorted() {
            guard let declaration = entry.options.first(where: { $0.name == name }) else {
                let known = entry.options.map(\.name).sorted()
                let hint =
                    known.isEmpty
                    ? "plugin '\(plugin)' takes no options"
                    : "plugin '\(plugin)' takes: \(known.joined(separator: ", "))"
                throw PluginError(.unknownOption, option: name, "unknown option '\(name)': \(hint)")
            }
            let value = options[name]!
            guard let converted = value.converted(to: declaration.type) else {
                throw PluginError(
                    .wrongType, option: name,
                    "option '\(name)' of plugin '\(plugin)' must be \(declaration.type.phrase), not \(value.type.phrase) (\(value))"
                )
            }
            result[name] = converted
        }
        for declaration in entry.options where result[declaration.name] == nil {
            guard let defaultValue = declaration.defaultValue else {
                throw PluginError(
                    .missingOption, option: declaration.name,
                    "plugin '\(plugin)' needs option '\(declaration.name)' (\(declaration.type.phrase)): \(declaration.help)")
            }
            result[declaration.name] = defaultValue
        }
        let validated = PluginOptions(result)
        do {
            try entry.check(validated)
        } catch let error as PluginError {
            throw error
        } catch {
            throw PluginError(.invalidValue, "plugin '\(plugin)' refused its options: \(error)")
        }
        return validated
    }

    /// Parses `key=value` strings from the command line into typed values, using the
    /// plugin's declarations.
    /// - Parameters:
    ///   - plugin: The plugin's name.
    ///   - assignments: `key=value` strings.
    /// - Returns: The values, not yet checked for missing options.
    public func parseAssignments(plugin: String, _ assignments: [String]) throws -> [String: PluginOptionValue] {
        let entry = try self.entry(plugin)
        var values: [String: PluginOptionValue] = [:]
        for assignment in assignments {
            guard let equals = assignment.firstIndex(of: "=") else {
                throw PluginError(.invalidValue, "'\(assignment)' is not key=value")
            }
            let key = String(assignment[..<equals])
            let text = String(assignment[assignment.index(after: equals)...])
            guard let declaration = entry.options.first(where: { $0.name == key }) else {
                let known = entry.options.map(\.name).sorted().joined(separator: ", ")
                throw PluginError(
                    .unknownOption, option: key,
                    "unknown option '\(key)': plugin '\(plugin)' takes: \(known.isEmpty ? "no options" : known)")
            }
            guard let value = PluginOptionValue.parse(text, as: declaration.type) else {
                throw PluginError(
                    .wrongType, option: key,
                    "option '\(key)' of plugin '\(plugin)' must be \(declaration.type.phrase), not '\(text)'")
            }
            values[key] = value
        }
        return values
    }

    /// Makes a handler.
    /// - Parameters:
    ///   - plugin: The plugin's name.
    ///   - options: Validated options.
    ///   - context: The hostname and logger.
    public func makeHandler(plugin: String, options: PluginOptions, context: PluginContext) throws -> any ComponentHandler {
        let entry = try self.entry(plugin)
        do {
            return try entry.make(options, context)
        } catch let error as PluginError {
            throw error
        } catch {
            throw PluginError(.invalidValue, "plugin '\(plugin)' could not be made: \(error)")
        }
    }

    private func entry(_ plugin: String) throws -> Entry {
        guard let entry = self.entries[plugin] else {
            let known = self.entries.keys.sorted().joined(separator: ", ")
            throw PluginError(.unknownPlugin, "unknown plugin '\(plugin)'; this host has: \(known)")
        }
        return entry
    }
}
