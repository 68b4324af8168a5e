/// Why a string is not a valid JID.
///
/// ``kind`` says which part is wrong, which rule it breaks and, for length
/// errors, the measured length; ``description`` is a sentence for logs.
public struct JIDError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The three parts of a JID, to name the one that is wrong.
    public enum Part: Hashable, Sendable, CustomStringConvertible {
        /// The localpart, before `@`.
        case localpart
        /// The domainpart.
        case domainpart
        /// The resourcepart, after `/`.
        case resourcepart

        /// The part's name as used in RFC 7622: `localpart`, `domainpart` or `resourcepart`.
        public var description: String {
            switch self {
            case .localpart: return "localpart"
            case .domainpart: return "domainpart"
            case .resourcepart: return "resourcepart"
            }
        }
    }

    /// The kinds of JID errors.
    public enum Kind: Hashable, Sendable {
        /// The domainpart is empty (also after removing a trailing dot).
        case emptyDomainpart
        /// A localpart delimiter `@` with nothing before it.
        case emptyLocalpart
        /// A resource delimiter `/` with nothing after it.
        case emptyResourcepart
        /// The part is longer than ``JID/maximumPartLength`` (1023) bytes of
        /// UTF-8 after normalisation; `bytes` is its length.
        case partTooLong(JIDError.Part, bytes: Int)
        /// The part begins or ends with white space (or is only white space).
        case surroundingWhitespace(JIDError.Part)
        /// The part contains a code point that its rules forbid, for example
        /// one of `" & ' / : < > @` or a space in the localpart, a control
        /// character in the resourcepart, or anything but a letter, digit or
        /// hyphen in an ASCII domain label.
        case forbiddenCharacter(JIDError.Part, Unicode.Scalar)
        /// The domainpart has an empty label (`a..b`, `.a`, or two trailing dots).
        case emptyDomainLabel
        /// A domain label is longer than ``JID/maximumLabelLength`` (63)
        /// bytes; `bytes` is its length (for a non-ASCII label, the length of
        /// its `xn--` A-label form).
        case domainLabelTooLong(label: String, bytes: Int)
        /// A domain label begins or ends with a hyphen.
        case hyphenAtDomainLabelEdge(label: String)
        /// A non-ASCII domain label begins with a combining mark (RFC 5891 §4.2.3.2).
        case combiningMarkAtDomainLabelStart(label: String)
        /// The domainpart ends in an all-digit label, so it can only be an IPv4
        /// address, but it is not a dotted quad of decimal numbers 0...255
        /// without leading zeros (e.g. `256.1.1.1`, `1.2.3`, `01.2.3.4`).
        case invalidIPv4Address(String)
        /// The domainpart starts with `[` but is not a bracketed IPv6 address
        /// (RFC 3986 `IPv6address`), e.g. `[1::2::3]` or `[::1`.
        case invalidIPv6Address(String)
    }

    /// What is wrong.
    public let kind: Kind

    init(_ kind: Kind) {
        self.kind = kind
    }

    /// A sentence saying what is wrong.
    public var description: String {
        switch self.kind {
        case .emptyDomainpart:
            return "the domainpart is empty"
        case .emptyLocalpart:
            return "the localpart is empty (nothing before '@')"
        case .emptyResourcepart:
            return "the resourcepart is empty (nothing after '/')"
        case .partTooLong(let part, let bytes):
            return "the \(part) is \(bytes) bytes long after normalisation; the limit is \(JID.maximumPartLength) bytes of UTF-8"
        case .surroundingWhitespace(let part):
            return "the \(part) begins or ends with white space"
        case .forbiddenCharacter(let part, let scalar):
            return "the \(part) contains the forbidden character \(Self.name(of: scalar))"
        case .emptyDomainLabel:
            return "the domainpart has an empty label"
        case .domainLabelTooLong(let label, let bytes):
            return "the domain label '\(label)' is \(bytes) bytes long; the limit is \(JID.maximumLabelLength) bytes"
        case .hyphenAtDomainLabelEdge(let label):
            return "the domain label '\(label)' begins or ends with a hyphen"
        case .combiningMarkAtDomainLabelStart(let label):
            return "the domain label '\(label)' begins with a combining mark"
        case .invalidIPv4Address(let domain):
            return "the domainpart '\(domain)' ends in an all-digit label but is not an IPv4 address (four numbers 0-255)"
        case .invalidIPv6Address(let domain):
            return "the domainpart '\(domain)' is not a valid bracketed IPv6 address"
        }
    }

    /// `U+0022 '"'`, or just `U+0000` for invisible code points.
    private static func name(of scalar: Unicode.Scalar) -> String {
        var hex = String(scalar.value, radix: 16, uppercase: true)
        while hex.count < 4 { hex = "0" + hex }
        let visible: Bool
        switch scalar.properties.generalCategory {
        case .control, .format, .spaceSeparator, .lineSeparator, .paragraphSeparator,
            .surrogate, .privateUse, .unassigned:
            visible = false
        default:
            visible = !scalar.properties.isDefaultIgnorableCodePoint
        }
        return visible ? "U+\(hex) '\(Character(scalar))'" : "U+\(hex)"
    }
}
