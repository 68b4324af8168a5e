/// An operation on a running host that failed: a runtime bind or unbind, a reload, a
/// write to the configuration file.
public struct HostError: Error, Hashable, Sendable, CustomStringConvertible {
    /// A sentence for people.
    public let message: String

    /// Creates an error.
    /// - Parameter message: A sentence for people.
    public init(_ message: String) {
        self.message = message
    }

    /// The message.
    public var description: String { self.message }
}
