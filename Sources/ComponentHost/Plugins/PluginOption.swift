import Foundation

/// One option a ``ComponentPlugin`` accepts in `[component.options]`, with its type,
/// default and help text.
///
/// ```swift
/// static let options = [
///     PluginOption("prefix", type: .string, default: .string(""), help: "Text put before each echo."),
/// ]
/// ```
public struct PluginOption: Hashable, Sendable {
    /// The types an option value can have (TOML strings, integers, floats and booleans).
    public enum ValueType: String, Hashable, Sendable, CaseIterable {
        /// A string.
        case string
        /// A whole number.
        case integer
        /// A number; integers are accepted too.
        case double
        /// `true` or `false`.
        case boolean
        /// An array of strings (`["a", "b"]`; on the command line, a JSON array or words
        /// separated by spaces).
        case stringArray

        /// How an error message names the type ("a string", "an integer"…).
        public var phrase: String {
            switch self {
            case .string: "a string"
            case .integer: "an integer"
            case .double: "a number"
            case .boolean: "true or false"
            case .stringArray: "an array of strings"
            }
        }
    }

    /// The option's key in `[component.options]` (and in `--set key=value`).
    public var name: String
    /// The value's type.
    public var type: ValueType
    /// The value used when the option is not given; `nil` makes the option required.
    public var defaultValue: PluginOptionValue?
    /// One sentence for `component-host plugins`.
    public var help: String

    /// Creates an option description.
    /// - Parameters:
    ///   - name: The key.
    ///   - type: The value's type.
    ///   - defaultValue: The default; `nil` makes the option required.
    ///   - help: One sentence for people.
    public init(_ name: String, type: ValueType, default defaultValue: PluginOptionValue? = nil, help: String) {
        self.name = name
        self.type = type
        self.defaultValue = defaultValue
        self.help = help
    }
}

/// A plugin option's value, as written in TOML, JSON, or on the command line.
public enum PluginOptionValue: Hashable, Sendable, CustomStringConvertible, Codable {
    /// A string.
    case string(String)
    /// A whole number.
    case integer(Int)
    /// A floating-point number.
    case double(Double)
    /// A boolean.
    case boolean(Bool)
    /// An array of strings.
    case stringArray([String])

    /// The value's type.
    public var type: PluginOption.ValueType {
        switch self {
        case .string: .string
        case .integer: .integer
        case .double: .double
        case .boolean: .boolean
        case .stringArray: .stringArray
        }
    }

    /// The value as TOML would spell it (strings quoted).
    public var description: String {
        switch self {
        case .string(let value): Self.quoted(value)
        case .integer(let value): String(value)
        case .double(let value): String(value)
        case .boolean(let value): String(value)
        case .stringArray(let values): "[" + values.map { Self.quoted($0) }.joined(separator: ", ") + "]"
        }
    }

    /// Converts the value to an option's declared type, where TOML and JSON allow
    /// (an integer where a number is expected).
    /// - Parameter type: The declared type.
    /// - Returns: The converted value, or `nil` when the value has another type.
    public func converted(to type: PluginOption.ValueType) -> PluginOptionValue? {
        switch (self, type) {
        case (.string, .string), (.integer, .integer), (.double, .double), (.boolean, .boolean),
            (.stringArray, .stringArray):
            return self
        case (.integer(let value), .double):
            return .double(Double(value))
        default:
            return nil
        }
    }

    /// Parses a command-line value (`--set key=value`) as the declared type.
    /// - Parameters:
    ///   - text: The text after `=`.
    ///   - type: The declared type.
    /// - Returns: The value, or `nil` when the text is not of that type.
    public static func parse(_ text: String, as type: PluginOption.ValueType) -> PluginOptionValue? {
        switch type {
        case .string: .string(text)
        case .integer: Int(text).map { .integer($0) }
        case .double: Double(text).map { .double($0) }
        case .boolean: Bool(text.lowercased()).map { .boolean($0) }
        case .stringArray: Self.parseStringArray(text).map { .stringArray($0) }
        }
    }

    /// A JSON array of strings (`["/usr/bin/python3", "main.py"]`), or words separated by spaces.
    static func parseStringArray(_ text: String) -> [String]? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if trimmed.hasPrefix("[") {
            return (try? JSONDecoder().decode([String].self, from: Data(trimmed.utf8)))
        }
        return trimmed.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
    }

    /// Decodes a JSON value: string, number or boolean.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let value = try? container.decode(Bool.self) {
            self = .boolean(value)
        } else if let value = try? container.decode(Int.self) {
            self = .integer(value)
        } else if let value = try? container.decode(Double.self) {
            self = .double(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([String].self) {
            self = .stringArray(value)
        } else {
            throw DecodingError.typeMismatch(
                PluginOptionValue.self,
                .init(codingPath: decoder.codingPath, debugDescription: "expected a string, number, boolean or array of strings"))
        }
    }

    /// Encodes the value as a plain JSON value.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .string(let value): try container.encode(value)
        case .integer(let value): try container.encode(value)
        case .double(let value): try container.encode(value)
        case .boolean(let value): try container.encode(value)
        case .stringArray(let values): try container.encode(values)
        }
    }

    static func quoted(_ value: String) -> String {
        var result = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\t": result += "\\t"
            case "\r": result += "\\r"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F {
                    let hex = String(scalar.value, radix: 16, uppercase: true)
                    result += "\\u" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
                } else {
                    result.unicodeScalars.append(scalar)
                }
            }
        }
        return result + "\""
    }
}
