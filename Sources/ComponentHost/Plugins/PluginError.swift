/// Why a plugin or its options were refused: an unknown plugin, an unknown option, a
/// value of the wrong type, a missing required option, or a plugin's own refusal.
///
/// ``description`` is a sentence for people that names the option and what was expected.
public struct PluginError: Error, Hashable, Sendable, CustomStringConvertible {
    fileprivate enum Base: Hashable, Sendable {
        case unknownPlugin
        case unknownOption
        case wrongType
        case missingOption
        case invalidValue
        case duplicatePlugin
    }

    /// A kind of plugin error, for code.
    public struct Kind: Hashable, Sendable {
        fileprivate let base: Base

        /// No plugin of that name is registered.
        public static let unknownPlugin = Kind(base: .unknownPlugin)
        /// The plugin declares no option of that name.
        public static let unknownOption = Kind(base: .unknownOption)
        /// The value does not have the option's type.
        public static let wrongType = Kind(base: .wrongType)
        /// A required option (one without a default) is missing.
        public static let missingOption = Kind(base: .missingOption)
        /// The plugin refused the value (``ComponentPlugin/make(options:context:)`` threw).
        public static let invalidValue = Kind(base: .invalidValue)
        /// Two plugin types share a name.
        public static let duplicatePlugin = Kind(base: .duplicatePlugin)
    }

    /// What went wrong.
    public let kind: Kind
    /// The option concerned, if any.
    public let option: String?
    /// A sentence for people.
    public let message: String

    /// Creates an error.
    /// - Parameters:
    ///   - kind: What went wrong.
    ///   - option: The option concerned.
    ///   - message: A sentence for people.
    public init(_ kind: Kind, option: String? = nil, _ message: String) {
        self.kind = kind
        self.option = option
        self.message = message
    }

    /// A plugin's refusal of an option value, for use in ``ComponentPlugin/make(options:context:)``.
    /// - Parameters:
    ///   - option: The option's name.
    ///   - message: What is wrong with it.
    public static func invalidValue(_ option: String, _ message: String) -> PluginError {
        PluginError(.invalidValue, option: option, "option '\(option)': \(message)")
    }

    /// The message.
    public var description: String { self.message }
}
