/// Why the peer's certificate was rejected, mapped from OpenSSL's `X509_V_ERR_*` verify result.
///
/// A struct with static members rather than an enum so that more causes can be told apart later without
/// breaking clients; compare with `==` against the static members.
public struct TLSVerificationFailure: Sendable, Hashable, CustomStringConvertible {
    private enum Base: Hashable {
        case untrustedIssuer
        case hostnameMismatch
        case expired
        case notYetValid
        case selfSigned
        case selfSignedInChain
        case revoked
        case invalidPurpose
        case other
    }

    private let base: Base

    private init(_ base: Base) {
        self.base = base
    }

    /// The chain does not lead to a trusted root (`X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT[_LOCALLY]`).
    public static let untrustedIssuer = Self(.untrustedIssuer)
    /// The certificate is not valid for the expected host name (`X509_V_ERR_HOSTNAME_MISMATCH`).
    public static let hostnameMismatch = Self(.hostnameMismatch)
    /// A certificate in the chain has expired (`X509_V_ERR_CERT_HAS_EXPIRED`).
    public static let expired = Self(.expired)
    /// A certificate in the chain is not valid yet (`X509_V_ERR_CERT_NOT_YET_VALID`).
    public static let notYetValid = Self(.notYetValid)
    /// The peer presented a single self-signed certificate that is not trusted (`X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT`).
    public static let selfSigned = Self(.selfSigned)
    /// The chain ends in an untrusted self-signed root (`X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN`).
    public static let selfSignedInChain = Self(.selfSignedInChain)
    /// A certificate was revoked (`X509_V_ERR_CERT_REVOKED`).
    public static let revoked = Self(.revoked)
    /// A certificate may not be used for this purpose (`X509_V_ERR_INVALID_PURPOSE`).
    public static let invalidPurpose = Self(.invalidPurpose)
    /// Any other verification failure; the error message carries OpenSSL's text.
    public static let other = Self(.other)

    /// A short English description, for example `"untrusted issuer"`.
    public var description: String {
        switch self.base {
        case .untrustedIssuer: "untrusted issuer"
        case .hostnameMismatch: "hostname mismatch"
        case .expired: "certificate expired"
        case .notYetValid: "certificate not yet valid"
        case .selfSigned: "self-signed certificate"
        case .selfSignedInChain: "self-signed certificate in chain"
        case .revoked: "certificate revoked"
        case .invalidPurpose: "invalid certificate purpose"
        case .other: "verification failed"
        }
    }

    /// Maps an `SSL_get_verify_result` code.
    init(verifyResult code: Int) {
        switch code {
        case 2, 20: self = .untrustedIssuer  // UNABLE_TO_GET_ISSUER_CERT(_LOCALLY)
        case 21: self = .untrustedIssuer  // UNABLE_TO_VERIFY_LEAF_SIGNATURE
        case 62: self = .hostnameMismatch  // X509_V_ERR_HOSTNAME_MISMATCH
        case 10: self = .expired  // X509_V_ERR_CERT_HAS_EXPIRED
        case 9: self = .notYetValid  // X509_V_ERR_CERT_NOT_YET_VALID
        case 18: self = .selfSigned  // X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT
        case 19: self = .selfSignedInChain  // X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN
        case 23: self = .revoked  // X509_V_ERR_CERT_REVOKED
        case 26: self = .invalidPurpose  // X509_V_ERR_INVALID_PURPOSE
        default: self = .other
        }
    }
}
