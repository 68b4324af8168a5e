/// A plugin's validated options: every declared option has a value of its declared type
/// (given, or its default); nothing undeclared is present.
///
/// Built by ``PluginRegistry/validate(plugin:options:)``; plugins read values with the
/// typed accessors:
///
/// ```swift
/// let prefix = options.string("prefix") ?? ""
/// ```
public struct PluginOptions: Hashable, Sendable, CustomStringConvertible {
    /// The values by option name.
    public let values: [String: PluginOptionValue]

    /// Wraps already-validated values (tests, plugins composing others).
    /// - Parameter values: The values by option name.
    public init(_ values: [String: PluginOptionValue] = [:]) {
        self.values = values
    }

    /// The raw value of an option.
    public subscript(name: String) -> PluginOptionValue? {
        self.values[name]
    }

    /// A string option's value.
    public func string(_ name: String) -> String? {
        if case .string(let value) = self.values[name] { return value }
        return nil
    }

    /// An integer option's value.
    public func integer(_ name: String) -> Int? {
        if case .integer(let value) = self.values[name] { return value }
        return nil
    }

    /// A number option's value (integers are converted).
    public func double(_ name: String) -> Double? {
        switch self.values[name] {
        case .double(let value): value
        case .integer(let value): Double(value)
        default: nil
        }
    }

    /// A string-array option's value.
    public func strings(_ name: String) -> [String]? {
        if case .stringArray(let value) = self.values[name] { return value }
        return nil
    }

    /// A boolean option's value.
    public func boolean(_ name: String) -> Bool? {
        if case .boolean(let value) = self.values[name] { return value }
        return nil
    }

    /// `key = value` pairs sorted by key, as TOML would write them.
    public var description: String {
        self.values.sorted { $0.key < $1.key }.map { "\($0.key) = \($0.value)" }.joined(separator: ", ")
    }
}
