/// An error from ``ReferenceServer``: bad configuration, a refused injection, a timeout.
public struct ReferenceServerError: Error, Hashable, Sendable, CustomStringConvertible {
    fileprivate enum Base: Hashable, Sendable {
        case configuration
        case invalidInjection
        case timeout
        case stopped
    }

    /// The category of a ``ReferenceServerError``.
    public struct Kind: Hashable, Sendable {
        fileprivate let base: Base
        /// The configuration cannot be used (e.g. TLS required but no certificate).
        public static let configuration = Kind(base: .configuration)
        /// ``ReferenceServer/inject(_:)`` refused the element.
        public static let invalidInjection = Kind(base: .invalidInjection)
        /// A wait helper timed out.
        public static let timeout = Kind(base: .timeout)
        /// The server is stopped.
        public static let stopped = Kind(base: .stopped)
    }

    /// The category.
    public let kind: Kind
    /// What happened.
    public let message: String

    /// Creates an error.
    /// - Parameters:
    ///   - kind: The category.
    ///   - message: What happened.
    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    /// The message.
    public var description: String { self.message }
}
