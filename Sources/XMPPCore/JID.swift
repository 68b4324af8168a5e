/// An XMPP address (RFC 7622): `[localpart@]domainpart[/resourcepart]`.
///
/// Every `JID` is validated and normalised when it is made, so two JIDs for
/// the same address compare equal and hash alike:
///
/// - **localpart**: PRECIS UsernameCaseMapped profile (RFC 8265 §3.3), with
///   the limits noted below: fullwidth ASCII mapped to ASCII, lowercased,
///   NFC; the characters `" & ' / : < > @` (RFC 7622 §3.3.1), spaces and
///   controls are forbidden, and non-ASCII code points must be letters,
///   digits or combining marks (PRECIS IdentifierClass).
/// - **domainpart**: lowercased, NFC, one trailing dot removed
///   (`example.com.` is `example.com`), labels of 1...63 bytes; ASCII labels
///   are host names (letters, digits, hyphen; no hyphen at either end).
///   IPv4 dotted quads and bracketed IPv6 addresses (`[::1]`, lowercased
///   but otherwise kept as written) are accepted. A domainpart whose last
///   label is all digits can only be an IPv4 address: RFC 1123 §2.1 allows
///   all-digit labels but not an all-digit top-level label, so `256.1.1.1`
///   is an invalid IPv4 address, not a host name.
/// - **resourcepart**: PRECIS OpaqueString profile (RFC 8265 §4.2): non-ASCII
///   spaces mapped to U+0020, NFC, case kept; controls (C0, DEL, C1), format
///   and private-use characters, unassigned code points and old Hangul jamo
///   are forbidden. It may contain `@` and `/`.
/// - Each part is 1...1023 bytes of UTF-8 after normalisation, and no part
///   may begin or end with white space.
///
/// Limits: full IDNA2008 (RFC 5891/5892) is not done. Non-ASCII domain labels
/// (U-labels) are lowercased and NFC-normalised, must consist of letters,
/// digits, combining marks and hyphens, and their `xn--` form must fit in
/// 63 bytes, but they are not checked against the IDNA2008 tables
/// (CONTEXTJ/CONTEXTO rules, Bidi rule) and `xn--` A-labels are not decoded.
/// In the localpart, PRECIS's HasCompat exclusion, the Bidi rule and width
/// mapping beyond fullwidth ASCII are not applied. Unicode properties come
/// from the Swift standard library's Unicode version.
///
/// Pure-ASCII parts (the usual case) take a fast path with no Unicode
/// normalisation. Non-ASCII parts are NFC-normalised with the standard
/// library's own normaliser (no Foundation).
public struct JID: Hashable, Sendable, CustomStringConvertible {
    /// The longest a localpart, domainpart or resourcepart may be, in bytes of
    /// UTF-8 after normalisation (RFC 7622 §3.2–3.4).
    public static let maximumPartLength = 1023
    /// The longest a domain label may be, in bytes (RFC 1035 §2.3.4).
    public static let maximumLabelLength = 63

    /// The localpart (before `@`), normalised, or `nil`.
    public let localpart: String?
    /// The domainpart, normalised (lowercase, NFC, no trailing dot).
    public let domainpart: String
    /// The resourcepart (after the first `/`), normalised, or `nil`.
    public let resourcepart: String?

    /// Parses and normalises a JID.
    ///
    /// The string is split at the first `/` (the resourcepart may contain
    /// `@` and `/`), then what comes before it at the first `@`.
    /// - Parameter string: The address, e.g. `juliet@example.com/balcony`.
    /// - Throws: ``JIDError`` saying which part is wrong and why.
    public init(_ string: String) throws(JIDError) {
        let utf8 = string.utf8
        let (slash, at) = JIDParts.withBytes(utf8[...], JIDParts.delimiterOffsets)
        var domainEnd = utf8.endIndex
        var resource: Substring?
        if let slash {
            domainEnd = utf8.index(utf8.startIndex, offsetBy: slash)
            resource = string[utf8.index(after: domainEnd)...]
        }
        var domainStart = utf8.startIndex
        var local: Substring?
        if let at {
            let atIndex = utf8.index(utf8.startIndex, offsetBy: at)
            local = string[..<atIndex]
            domainStart = utf8.index(after: atIndex)
        }
        try self.init(
            normalizingLocalpart: local,
            domainpart: string[domainStart..<domainEnd],
            resourcepart: resource
        )
    }

    /// Creates a JID from its parts, validating and normalising each.
    /// - Parameters:
    ///   - localpart: The localpart, or `nil`.
    ///   - domainpart: The domainpart.
    ///   - resourcepart: The resourcepart, or `nil`.
    /// - Throws: ``JIDError`` saying which part is wrong and why.
    public init(localpart: String?, domainpart: String, resourcepart: String?) throws(JIDError) {
        try self.init(
            normalizingLocalpart: localpart.map { Substring($0) },
            domainpart: Substring(domainpart),
            resourcepart: resourcepart.map { Substring($0) }
        )
    }

    private init(
        normalizingLocalpart localpart: Substring?,
        domainpart: Substring,
        resourcepart: Substring?
    ) throws(JIDError) {
        self.localpart = try localpart.map { (part) throws(JIDError) in try JIDParts.localpart(part) }
        self.domainpart = try JIDParts.domainpart(domainpart)
        self.resourcepart = try resourcepart.map { (part) throws(JIDError) in try JIDParts.resourcepart(part) }
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

    /// Whether the JID is a domainpart alone (no localpart, no resourcepart),
    /// such as a server's or a component's address.
    public var isDomain: Bool { self.localpart == nil && self.resourcepart == nil }

    /// This JID with its resourcepart replaced (or added).
    /// - Parameter resourcepart: The new resourcepart; it is validated and
    ///   normalised like any resourcepart.
    /// - Returns: `localpart@domainpart/resourcepart`.
    /// - Throws: ``JIDError`` if the resourcepart is invalid.
    public func withResource(_ resourcepart: String) throws(JIDError) -> JID {
        JID(unchecked: self.localpart, self.domainpart, try JIDParts.resourcepart(Substring(resourcepart)))
    }

    /// The JID as a string: `[localpart@]domainpart[/resourcepart]`.
    ///
    /// Parsing the description gives back an equal JID.
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

extension JID: Codable {
    /// Decodes a JID from a single string, validating and normalising it.
    /// - Parameter decoder: The decoder to read from.
    /// - Throws: `DecodingError.dataCorrupted` (with the ``JIDError`` as
    ///   underlying error) if the string is not a valid JID, or the decoder's
    ///   error if the value is not a string.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let string = try container.decode(String.self)
        do {
            try self.init(string)
        } catch {
            throw DecodingError.dataCorrupted(
                DecodingError.Context(
                    codingPath: container.codingPath,
                    debugDescription: "Invalid JID: \(error)",
                    underlyingError: error
                )
            )
        }
    }

    /// Encodes the JID as a single string, its ``description``.
    /// - Parameter encoder: The encoder to write to.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(self.description)
    }
}
