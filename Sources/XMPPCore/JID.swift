/// An XMPP address (RFC 7622): `[localpart@]domainpart[/resourcepart]`.
///
/// NOTE: provisional implementation; the full RFC 7622 validation and
/// normalisation lands with the JID work (issue 2).
public struct JID: Hashable, Sendable, CustomStringConvertible {
    /// The localpart (before `@`), or `nil`.
    public let localpart: String?
    /// The domainpart, normalised (lowercase, no trailing dot).
    public let domainpart: String
    /// The resourcepart (after `/`), or `nil`.
    public let resourcepart: String?

    /// Parses and normalises a JID.
    /// - Parameter string: The address, e.g. `juliet@example.com/balcony`.
    /// - Throws: ``JIDError`` saying what is wrong.
    public init(_ string: String) throws(JIDError) {
        var rest = Substring(string)
        var resource: String?
        if let slash = rest.firstIndex(of: "/") {
            resource = String(rest[rest.index(after: slash)...])
            rest = rest[..<slash]
        }
        var local: String?
        if let at = rest.firstIndex(of: "@") {
            local = String(rest[..<at])
            rest = rest[rest.index(after: at)...]
        }
        try self.init(localpart: local, domainpart: String(rest), resourcepart: resource)
    }

    /// Creates a JID from its parts, validating and normalising each.
    /// - Parameters:
    ///   - localpart: The localpart, or `nil`.
    ///   - domainpart: The domainpart.
    ///   - resourcepart: The resourcepart, or `nil`.
    /// - Throws: ``JIDError`` saying which part is wrong and why.
    public init(localpart: String?, domainpart: String, resourcepart: String?) throws(JIDError) {
        var domain = domainpart.lowercased()
        if domain.hasSuffix(".") { domain.removeLast() }
        guard !domain.isEmpty else { throw JIDError(.emptyDomainpart) }
        if let localpart, localpart.isEmpty { throw JIDError(.emptyLocalpart) }
        if let resourcepart, resourcepart.isEmpty { throw JIDError(.emptyResourcepart) }
        self.localpart = localpart
        self.domainpart = domain
        self.resourcepart = resourcepart
    }

    /// The bare JID: this JID without its resourcepart.
    public var bare: JID {
        JID(unchecked: self.localpart, self.domainpart, nil)
    }

    /// The domain JID: the domainpart alone.
    public var domain: JID {
        JID(unchecked: nil, self.domainpart, nil)
    }

    /// Whether the JID has no resourcepart.
    public var isBare: Bool { self.resourcepart == nil }

    /// The JID as a string: `[localpart@]domainpart[/resourcepart]`.
    public var description: String {
        var result = ""
        if let localpart = self.localpart {
            result += localpart
            result += "@"
        }
        result += self.domainpart
        if let resourcepart = self.resourcepart {
            result += "/"
            result += resourcepart
        }
        return result
    }

    init(unchecked localpart: String?, _ domainpart: String, _ resourcepart: String?) {
        self.localpart = localpart
        self.domainpart = domainpart
        self.resourcepart = resourcepart
    }
}

/// Why a string is not a valid JID.
public struct JIDError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The kinds of JID errors.
    public enum Kind: Hashable, Sendable {
        /// The domainpart is empty.
        case emptyDomainpart
        /// A localpart delimiter `@` with nothing before it.
        case emptyLocalpart
        /// A resource delimiter `/` with nothing after it.
        case emptyResourcepart
    }

    /// What is wrong.
    public let kind: Kind

    init(_ kind: Kind) {
        self.kind = kind
    }

    /// A sentence saying what is wrong.
    public var description: String {
        switch self.kind {
        case .emptyDomainpart: return "the domainpart is empty"
        case .emptyLocalpart: return "the localpart is empty (nothing before '@')"
        case .emptyResourcepart: return "the resourcepart is empty (nothing after '/')"
        }
    }
}
