public import XMPPCore

/// What the caller of ``SASLClient/receive(_:)`` must do next.
public enum SASLClientStep: Hashable, Sendable {
    /// Send this element (a `<response/>` to the server's `<challenge/>`).
    case send(Element)
    /// The server accepted the authentication and, where the mechanism allows it, proved
    /// its own knowledge of the credentials (SCRAM's server signature was verified).
    case succeeded(SASLOutcome)
}

/// The result of a successful SASL exchange.
public struct SASLOutcome: Hashable, Sendable, CustomStringConvertible {
    /// The mechanism as sent in `<auth/>`, e.g. `SCRAM-SHA-256-PLUS`.
    public var mechanism: String
    /// The channel-binding type that was bound into the authentication (`-PLUS`
    /// mechanisms only), or `nil`.
    public var channelBinding: SASLChannelBindingType?

    /// Creates an outcome.
    /// - Parameters:
    ///   - mechanism: The mechanism name as sent.
    ///   - channelBinding: The binding type used, if any.
    public init(mechanism: String, channelBinding: SASLChannelBindingType?) {
        self.mechanism = mechanism
        self.channelBinding = channelBinding
    }

    /// The mechanism and, when used, the binding type.
    public var description: String {
        if let channelBinding { return "\(self.mechanism) (\(channelBinding))" }
        return self.mechanism
    }
}
