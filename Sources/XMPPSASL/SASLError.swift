public import XMPPCore

/// An error of a SASL exchange: a failure reported by the peer (RFC 6120 §6.5) or a
/// problem found locally.
///
/// Match on ``kind``; ``detail`` is human-readable context (the peer's `<text/>`, the list of
/// refused mechanisms, or Cyrus SASL's `sasl_errdetail`). No error ever contains a password.
///
/// ```swift
/// do {
///     step = try client.receive(element)
/// } catch {
///     if error.kind == .notAuthorized { … }
/// }
/// ```
public struct SASLError: Error, CustomStringConvertible, Hashable, Sendable {
    /// What went wrong. New kinds may be added in later versions, so `switch` needs a `default`.
    public struct Kind: Hashable, Sendable, CustomStringConvertible {
        private enum Base: Hashable, Sendable {
            case condition(String)
            case noAcceptableMechanism
            case serverSignatureMismatch
            case malformedBase64
            case unexpectedElement
            case cyrus
            case weakServerParameters
        }

        private let base: Base

        private init(_ base: Base) {
            self.base = base
        }

        /// RFC 6120 §6.5.1 `<aborted/>`: the exchange was aborted.
        public static let aborted = Kind(.condition("aborted"))
        /// RFC 6120 §6.5.2 `<account-disabled/>`.
        public static let accountDisabled = Kind(.condition("account-disabled"))
        /// RFC 6120 §6.5.3 `<credentials-expired/>`.
        public static let credentialsExpired = Kind(.condition("credentials-expired"))
        /// RFC 6120 §6.5.4 `<encryption-required/>`: the mechanism needs TLS first.
        public static let encryptionRequired = Kind(.condition("encryption-required"))
        /// RFC 6120 §6.5.5 `<incorrect-encoding/>`: the base64 sent to the server was wrong.
        public static let incorrectEncoding = Kind(.condition("incorrect-encoding"))
        /// RFC 6120 §6.5.6 `<invalid-authzid/>`.
        public static let invalidAuthzid = Kind(.condition("invalid-authzid"))
        /// RFC 6120 §6.5.7 `<invalid-mechanism/>`.
        public static let invalidMechanism = Kind(.condition("invalid-mechanism"))
        /// RFC 6120 §6.5.8 `<malformed-request/>`.
        public static let malformedRequest = Kind(.condition("malformed-request"))
        /// RFC 6120 §6.5.9 `<mechanism-too-weak/>`.
        public static let mechanismTooWeak = Kind(.condition("mechanism-too-weak"))
        /// RFC 6120 §6.5.10 `<not-authorized/>`; also used for unknown conditions (RFC 6120 §6.5).
        public static let notAuthorized = Kind(.condition("not-authorized"))
        /// RFC 6120 §6.5.11 `<temporary-auth-failure/>`.
        public static let temporaryAuthFailure = Kind(.condition("temporary-auth-failure"))

        /// Local: none of the offered mechanisms is acceptable; ``SASLError/detail`` says why
        /// each one was refused.
        public static let noAcceptableMechanism = Kind(.noAcceptableMechanism)
        /// Local: the server's additional data in `<success/>` (e.g. the SCRAM server
        /// signature `v=`) is missing or wrong, so the server did not prove it knows the
        /// credentials.
        public static let serverSignatureMismatch = Kind(.serverSignatureMismatch)
        /// Local: the peer's character data is not valid base64.
        public static let malformedBase64 = Kind(.malformedBase64)
        /// Local: an element arrived that is not allowed in the current state.
        public static let unexpectedElement = Kind(.unexpectedElement)
        /// Local: Cyrus SASL reported an error (details in ``SASLError/detail``).
        public static let cyrus = Kind(.cyrus)
        /// Local: the server asked for parameters the client does not accept, such as a SCRAM
        /// iteration count below ``SASLClient/Configuration/minimumIterationCount`` (a fake
        /// server lowers it to brute-force the client's proof cheaply) or above
        /// ``SASLClient/Configuration/maximumIterationCount``.
        public static let weakServerParameters = Kind(.weakServerParameters)

        /// Every RFC 6120 §6.5 condition, in the RFC's order.
        public static let allConditions: [Kind] = [
            .aborted, .accountDisabled, .credentialsExpired, .encryptionRequired, .incorrectEncoding,
            .invalidAuthzid, .invalidMechanism, .malformedRequest, .mechanismTooWeak, .notAuthorized,
            .temporaryAuthFailure,
        ]

        /// The RFC 6120 §6.5 condition element name (e.g. `"not-authorized"`), or `nil` for
        /// a local kind.
        public var condition: String? {
            if case .condition(let name) = self.base { return name }
            return nil
        }

        /// The kind for a condition element name; unknown names map to ``notAuthorized``
        /// as RFC 6120 §6.5 requires.
        /// - Parameter condition: The local name of the condition element.
        public init(condition: String) {
            if let known = Kind.allConditions.first(where: { $0.condition == condition }) {
                self = known
            } else {
                self = .notAuthorized
            }
        }

        /// A short name: the condition name, or the local kind's name.
        public var description: String {
            switch self.base {
            case .condition(let name): name
            case .noAcceptableMechanism: "no-acceptable-mechanism"
            case .serverSignatureMismatch: "server-signature-mismatch"
            case .malformedBase64: "malformed-base64"
            case .unexpectedElement: "unexpected-element"
            case .cyrus: "cyrus-sasl"
            case .weakServerParameters: "weak-server-parameters"
            }
        }
    }

    /// What went wrong.
    public let kind: Kind
    /// Human-readable context: the `<text/>` of a `<failure/>`, the reasons each mechanism
    /// was refused, or Cyrus SASL's error detail. Never contains a password.
    public let detail: String?

    /// Creates an error.
    /// - Parameters:
    ///   - kind: What went wrong.
    ///   - detail: Optional human-readable context. Must not contain secrets.
    public init(_ kind: Kind, detail: String? = nil) {
        self.kind = kind
        self.detail = detail
    }

    /// Parses a `<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>` element: the first
    /// child in the SASL namespace other than `<text/>` is the condition, and `<text/>`
    /// becomes ``detail``. A missing or unknown condition is ``Kind/notAuthorized``.
    /// - Parameter failure: The `<failure/>` element.
    public init(failure: Element) {
        var condition: String?
        for child in failure.elements where child.name.namespace == Namespace.sasl && child.name.localName != "text" {
            condition = child.name.localName
            break
        }
        self.kind = Kind(condition: condition ?? "not-authorized")
        let text = failure.firstChild("text", namespace: Namespace.sasl)?.text
        self.detail = (text?.isEmpty ?? true) ? nil : text
    }

    /// The `<failure/>` element for this error's condition (`<not-authorized/>` for a local
    /// kind), optionally with a `<text/>`.
    /// - Parameter text: Text for the peer, or `nil` (the default; the local ``detail`` is
    ///   never sent, as it may help an attacker).
    public func failureElement(text: String? = nil) -> Element {
        var children = [Element(self.kind.condition ?? "not-authorized", namespace: Namespace.sasl)]
        if let text {
            children.append(Element("text", namespace: Namespace.sasl, text: text))
        }
        return Element("failure", namespace: Namespace.sasl, children: children)
    }

    /// The kind, followed by the detail when there is one.
    public var description: String {
        if let detail { return "SASL \(self.kind): \(detail)" }
        return "SASL \(self.kind)"
    }
}
