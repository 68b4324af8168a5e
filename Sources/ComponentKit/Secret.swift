/// A password or shared secret that never shows up in logs.
///
/// Its `description` and `debugDescription` are `<redacted>`, so a `Secret` can sit in a
/// configuration that gets logged or dumped without leaking.
public struct Secret: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible {
    /// The secret itself. Read it only where it is used (SASL, the XEP-0114 digest).
    public let value: String

    /// Wraps a secret.
    /// - Parameter value: The secret.
    public init(_ value: String) {
        self.value = value
    }

    /// Always `<redacted>`.
    public var description: String { "<redacted>" }
    /// Always `<redacted>`.
    public var debugDescription: String { "<redacted>" }
}
