/// User inbound events fired by ``OpenSSLHandler`` (`userInboundEventTriggered`).
public enum TLSEvent: Sendable, Hashable {
    /// The handshake completed; application data now flows encrypted.
    case handshakeCompleted(TLSSessionInfo)
}
