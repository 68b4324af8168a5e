/// A TLS protocol version that ``OpenSSLContext`` can negotiate.
///
/// Versions older than TLS 1.2 are deliberately not offered.
public enum TLSVersion: Sendable, Hashable, Comparable, CaseIterable, CustomStringConvertible {
    /// TLS 1.2 (RFC 5246).
    // swift-format-ignore: AlwaysUseLowerCamelCase
    case v1_2
    /// TLS 1.3 (RFC 8446).
    // swift-format-ignore: AlwaysUseLowerCamelCase
    case v1_3

    /// The conventional name of the version, for example `"TLSv1.2"`.
    public var description: String {
        switch self {
        case .v1_2: "TLSv1.2"
        case .v1_3: "TLSv1.3"
        }
    }

    /// The OpenSSL protocol version constant (`TLS1_2_VERSION`, `TLS1_3_VERSION`).
    var openSSLValue: Int32 {
        switch self {
        case .v1_2: 0x0303
        case .v1_3: 0x0304
        }
    }

    /// Maps an OpenSSL protocol version constant back, or `nil` for anything else.
    init?(openSSLValue: Int32) {
        switch openSSLValue {
        case 0x0303: self = .v1_2
        case 0x0304: self = .v1_3
        default: return nil
        }
    }
}
