/// A password or shared secret that never shows up in logs.
///
/// Its `description`, `debugDescription` and mirror are `<redacted>`, so a `Secret` can sit
/// in a configuration that gets logged, `dump()`ed or shown by a debugger without leaking.
public struct Secret: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
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
    /// A mirror with no children, shown as `<redacted>` (so `dump()` does not reveal ``value``).
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }
}
