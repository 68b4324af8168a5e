import Foundation
import Testing

@testable import XMPPCore

private let a63 = String(repeating: "a", count: 63)
private let a64 = String(repeating: "a", count: 64)
private let a1023 = String(repeating: "a", count: 1023)
private let a1024 = String(repeating: "a", count: 1024)
/// 1023 bytes: 15 labels of 63 letters and 15 dots (960), then a 63-letter label.
private let domain1023 = Array(repeating: a63, count: 16).joined(separator: ".")
/// 1024 bytes: the same with one more letter in the last label.
private let domain1024 = Array(repeating: a63, count: 15).joined(separator: ".") + "." + String(repeating: "a", count: 62) + ".b"

@Suite("JID (RFC 7622)")
struct JIDTests {
    // MARK: Valid addresses

    /// (input, normalised description, localpart, domainpart, resourcepart)
    static let valid: [(String, String, String?, String, String?)] = [
        // Structure
        ("example.com", "example.com", nil, "example.com", nil),
        ("juliet@example.com", "juliet@example.com", "juliet", "example.com", nil),
        ("example.com/resource", "example.com/resource", nil, "example.com", "resource"),
        ("juliet@example.com/balcony", "juliet@example.com/balcony", "juliet", "example.com", "balcony"),
        ("a@b", "a@b", "a", "b", nil),
        ("localhost", "localhost", nil, "localhost", nil),
        // Split at the first '/', then the first '@' before it
        ("juliet@example.com/foo@bar/baz", "juliet@example.com/foo@bar/baz", "juliet", "example.com", "foo@bar/baz"),
        ("example.com/a@b", "example.com/a@b", nil, "example.com", "a@b"),
        ("a/b@example.com", "a/b@example.com", nil, "a", "b@example.com"),
        // Case: localpart and domainpart folded, resourcepart kept
        ("Juliet@Example.COM/Balcony", "juliet@example.com/Balcony", "juliet", "example.com", "Balcony"),
        ("JULIET@EXAMPLE.COM", "juliet@example.com", "juliet", "example.com", nil),
        // Localpart: printable ASCII other than the RFC 7622 §3.3.1 characters
        (
            "a.b-c_d+e!#$%*=?^`{|}~@example.com", "a.b-c_d+e!#$%*=?^`{|}~@example.com", "a.b-c_d+e!#$%*=?^`{|}~", "example.com",
            nil
        ),
        // Resourcepart: spaces inside and any printable ASCII
        ("a@example.com/The Balcony", "a@example.com/The Balcony", "a", "example.com", "The Balcony"),
        ("a@example.com/\"&'<>:@/", "a@example.com/\"&'<>:@/", "a", "example.com", "\"&'<>:@/"),
        // Trailing dot
        ("example.com.", "example.com", nil, "example.com", nil),
        ("juliet@Example.com./r", "juliet@example.com/r", "juliet", "example.com", "r"),
        // Host-name labels
        ("a-b.c--d.example", "a-b.c--d.example", nil, "a-b.c--d.example", nil),
        ("123.example.com", "123.example.com", nil, "123.example.com", nil),
        ("1.2.3.4a", "1.2.3.4a", nil, "1.2.3.4a", nil),
        ("xn--bcher-kva.example", "xn--bcher-kva.example", nil, "xn--bcher-kva.example", nil),
        ("\(a63).example", "\(a63).example", nil, "\(a63).example", nil),
        // IPv4
        ("1.2.3.4", "1.2.3.4", nil, "1.2.3.4", nil),
        ("0.0.0.0", "0.0.0.0", nil, "0.0.0.0", nil),
        ("255.255.255.255", "255.255.255.255", nil, "255.255.255.255", nil),
        ("juliet@192.168.0.1/r", "juliet@192.168.0.1/r", "juliet", "192.168.0.1", "r"),
        ("10.0.0.1.", "10.0.0.1", nil, "10.0.0.1", nil),
        // IPv6: compressed, uncompressed, embedded IPv4, lowercased
        ("[::1]", "[::1]", nil, "[::1]", nil),
        ("[::]", "[::]", nil, "[::]", nil),
        ("[1::]", "[1::]", nil, "[1::]", nil),
        ("juliet@[2001:DB8::Ab]/r", "juliet@[2001:db8::ab]/r", "juliet", "[2001:db8::ab]", "r"),
        (
            "[2001:0db8:0000:0000:0000:ff00:0042:8329]", "[2001:0db8:0000:0000:0000:ff00:0042:8329]", nil,
            "[2001:0db8:0000:0000:0000:ff00:0042:8329]", nil
        ),
        ("[1:2:3:4:5:6:7:8]", "[1:2:3:4:5:6:7:8]", nil, "[1:2:3:4:5:6:7:8]", nil),
        ("[1:2:3:4:5:6:7::]", "[1:2:3:4:5:6:7::]", nil, "[1:2:3:4:5:6:7::]", nil),
        ("[::2:3:4:5:6:7:8]", "[::2:3:4:5:6:7:8]", nil, "[::2:3:4:5:6:7:8]", nil),
        ("[1:2::7:8]", "[1:2::7:8]", nil, "[1:2::7:8]", nil),
        ("[::FFFF:192.0.2.1]", "[::ffff:192.0.2.1]", nil, "[::ffff:192.0.2.1]", nil),
        ("[1:2:3:4:5:6:1.2.3.4]", "[1:2:3:4:5:6:1.2.3.4]", nil, "[1:2:3:4:5:6:1.2.3.4]", nil),
        ("[::1.2.3.4]", "[::1.2.3.4]", nil, "[::1.2.3.4]", nil),
        ("[::1].", "[::1]", nil, "[::1]", nil),
        // Non-ASCII localpart: lowercase + NFC
        ("e\u{301}@example.com", "\u{E9}@example.com", "\u{E9}", "example.com", nil),
        ("E\u{301}LODIE@example.com", "\u{E9}lodie@example.com", "\u{E9}lodie", "example.com", nil),
        ("\u{C9}lodie@example.com", "\u{E9}lodie@example.com", "\u{E9}lodie", "example.com", nil),
        (
            "\u{41F}\u{443}\u{448}\u{43A}\u{438}\u{43D}@example.com", "\u{43F}\u{443}\u{448}\u{43A}\u{438}\u{43D}@example.com",
            "\u{43F}\u{443}\u{448}\u{43A}\u{438}\u{43D}", "example.com", nil
        ),
        ("\u{1100}\u{1161}\u{11A8}@example.com", "\u{AC01}@example.com", "\u{AC01}", "example.com", nil),
        ("\u{AC00}\u{11A8}@example.com", "\u{AC01}@example.com", "\u{AC01}", "example.com", nil),
        ("\u{7528}\u{6237}@example.com", "\u{7528}\u{6237}@example.com", "\u{7528}\u{6237}", "example.com", nil),
        // Fullwidth ASCII is width-mapped
        ("\u{FF2A}\u{FF35}\u{FF2C}\u{FF29}\u{FF25}\u{FF34}@example.com", "juliet@example.com", "juliet", "example.com", nil),
        // Non-ASCII domainpart: lowercase + NFC, IDNA2003 dots, width mapping
        ("B\u{DC}CHER.example", "b\u{FC}cher.example", nil, "b\u{FC}cher.example", nil),
        ("bu\u{308}cher.example.", "b\u{FC}cher.example", nil, "b\u{FC}cher.example", nil),
        ("m\u{FC}nchen\u{3002}de", "m\u{FC}nchen.de", nil, "m\u{FC}nchen.de", nil),
        (
            "\u{FF45}\u{FF58}\u{FF41}\u{FF4D}\u{FF50}\u{FF4C}\u{FF45}\u{FF0E}\u{FF43}\u{FF4F}\u{FF4D}", "example.com", nil,
            "example.com", nil
        ),
        ("example\u{3002}", "example", nil, "example", nil),
        (
            "\u{4F8B}\u{3048}.\u{30C6}\u{30B9}\u{30C8}", "\u{4F8B}\u{3048}.\u{30C6}\u{30B9}\u{30C8}", nil,
            "\u{4F8B}\u{3048}.\u{30C6}\u{30B9}\u{30C8}", nil
        ),
        (
            "\u{E9}l\u{E8}ve@\u{C9}COLE.fr/Cours", "\u{E9}l\u{E8}ve@\u{E9}cole.fr/Cours", "\u{E9}l\u{E8}ve", "\u{E9}cole.fr",
            "Cours"
        ),
        // U-label limit is on the A-label: 'ü' + 55 × 'a' is xn--…-… of 63 bytes,
        // 22 × '中' is 66 bytes of UTF-8 but a 28-byte A-label.
        (
            "\u{FC}\(String(repeating: "a", count: 55)).de", "\u{FC}\(String(repeating: "a", count: 55)).de", nil,
            "\u{FC}\(String(repeating: "a", count: 55)).de", nil
        ),
        (
            "\(String(repeating: "\u{4E2D}", count: 22)).cn", "\(String(repeating: "\u{4E2D}", count: 22)).cn", nil,
            "\(String(repeating: "\u{4E2D}", count: 22)).cn", nil
        ),
        // Non-ASCII resourcepart: NFC, case kept, non-ASCII spaces mapped to U+0020
        ("a@example.com/Re\u{301}sume\u{301}", "a@example.com/R\u{E9}sum\u{E9}", "a", "example.com", "R\u{E9}sum\u{E9}"),
        ("a@example.com/\u{2126}", "a@example.com/\u{3A9}", "a", "example.com", "\u{3A9}"),
        ("a@example.com/x\u{A0}y\u{3000}z", "a@example.com/x y z", "a", "example.com", "x y z"),
        (
            "a@example.com/\u{1F4F1} \u{2603} \u{FB01}", "a@example.com/\u{1F4F1} \u{2603} \u{FB01}", "a", "example.com",
            "\u{1F4F1} \u{2603} \u{FB01}"
        ),
        // Lengths at the limit
        ("\(a1023)@example.com", "\(a1023)@example.com", a1023, "example.com", nil),
        (domain1023, domain1023, nil, domain1023, nil),
        ("example.com/\(a1023)", "example.com/\(a1023)", nil, "example.com", a1023),
        // 511 × 'é' + 'a' = 1023 bytes
        (
            "\(String(repeating: "\u{E9}", count: 511))a@x", "\(String(repeating: "\u{E9}", count: 511))a@x",
            "\(String(repeating: "\u{E9}", count: 511))a", "x", nil
        ),
        // 1200 bytes before NFC, 800 after: length counts after normalisation
        (
            "x/\(String(repeating: "e\u{301}", count: 400))", "x/\(String(repeating: "\u{E9}", count: 400))", nil, "x",
            String(repeating: "\u{E9}", count: 400)
        ),
    ]

    @Test(arguments: valid)
    func parsesAndNormalises(
        _ testCase: (input: String, description: String, localpart: String?, domainpart: String, resourcepart: String?)
    ) throws {
        let jid = try JID(testCase.input)
        // Compare UTF-8, not String ==, which is only canonical equivalence.
        #expect(Array(jid.description.utf8) == Array(testCase.description.utf8))
        #expect(jid.localpart.map { Array($0.utf8) } == testCase.localpart.map { Array($0.utf8) })
        #expect(Array(jid.domainpart.utf8) == Array(testCase.domainpart.utf8))
        #expect(jid.resourcepart.map { Array($0.utf8) } == testCase.resourcepart.map { Array($0.utf8) })
        // Round trips
        #expect(try JID(jid.description) == jid)
        #expect(try JID(localpart: jid.localpart, domainpart: jid.domainpart, resourcepart: jid.resourcepart) == jid)
    }

    // MARK: Invalid addresses

    static let invalid: [(String, JIDError.Kind)] = [
        // Empty parts
        ("", .emptyDomainpart),
        ("@example.com", .emptyLocalpart),
        ("@example.com/r", .emptyLocalpart),
        ("a@", .emptyDomainpart),
        ("a@/r", .emptyDomainpart),
        ("/r", .emptyDomainpart),
        (".", .emptyDomainpart),
        ("a@.", .emptyDomainpart),
        ("example.com/", .emptyResourcepart),
        ("a@example.com/", .emptyResourcepart),
        // Lengths (bytes of UTF-8 after normalisation)
        ("\(a1024)@example.com", .partTooLong(.localpart, bytes: 1024)),
        (domain1024, .partTooLong(.domainpart, bytes: 1024)),
        ("example.com/\(a1024)", .partTooLong(.resourcepart, bytes: 1024)),
        ("\(String(repeating: "\u{E9}", count: 512))@x", .partTooLong(.localpart, bytes: 1024)),
        ("\(String(repeating: "E\u{301}", count: 512))@x", .partTooLong(.localpart, bytes: 1024)),
        ("x/\(String(repeating: "\u{E9}", count: 512))", .partTooLong(.resourcepart, bytes: 1024)),
        ("\(String(repeating: "\u{E9}", count: 512))", .partTooLong(.domainpart, bytes: 1024)),
        // Localpart: RFC 7622 §3.3.1 characters (those '/' and '@' cannot reach
        // the localpart through the string form; see `forbiddenLocalpartDelimiters`)
        ("a\"b@example.com", .forbiddenCharacter(.localpart, "\"")),
        ("a&b@example.com", .forbiddenCharacter(.localpart, "&")),
        ("a'b@example.com", .forbiddenCharacter(.localpart, "'")),
        ("a:b@example.com", .forbiddenCharacter(.localpart, ":")),
        ("a<b@example.com", .forbiddenCharacter(.localpart, "<")),
        ("a>b@example.com", .forbiddenCharacter(.localpart, ">")),
        ("\u{E9}<@example.com", .forbiddenCharacter(.localpart, "<")),
        // Localpart: spaces, controls, non-letters
        ("a b@example.com", .forbiddenCharacter(.localpart, " ")),
        ("a\u{0}b@example.com", .forbiddenCharacter(.localpart, "\u{0}")),
        ("a\u{7}b@example.com", .forbiddenCharacter(.localpart, "\u{7}")),
        ("a\u{7F}b@example.com", .forbiddenCharacter(.localpart, "\u{7F}")),
        ("a\u{85}b@example.com", .forbiddenCharacter(.localpart, "\u{85}")),
        ("a\u{A0}b@example.com", .forbiddenCharacter(.localpart, "\u{A0}")),
        ("a\u{3000}b@example.com", .forbiddenCharacter(.localpart, "\u{3000}")),
        ("a\u{200B}b@example.com", .forbiddenCharacter(.localpart, "\u{200B}")),
        ("\u{2603}@example.com", .forbiddenCharacter(.localpart, "\u{2603}")),
        ("a\u{E000}@example.com", .forbiddenCharacter(.localpart, "\u{E000}")),
        // Surrounding white space
        (" a@example.com", .surroundingWhitespace(.localpart)),
        ("a\t@example.com", .surroundingWhitespace(.localpart)),
        ("   @example.com", .surroundingWhitespace(.localpart)),
        ("\u{E9}\u{3000}@example.com", .surroundingWhitespace(.localpart)),
        (" example.com", .surroundingWhitespace(.domainpart)),
        ("a@example.com /r", .surroundingWhitespace(.domainpart)),
        ("\u{E9}.com\n", .surroundingWhitespace(.domainpart)),
        ("a@example.com/ r", .surroundingWhitespace(.resourcepart)),
        ("a@example.com/r ", .surroundingWhitespace(.resourcepart)),
        ("a@example.com/   ", .surroundingWhitespace(.resourcepart)),
        ("a@example.com/\n", .surroundingWhitespace(.resourcepart)),
        ("a@example.com/\u{A0}r", .surroundingWhitespace(.resourcepart)),
        ("a@example.com/r\u{3000}", .surroundingWhitespace(.resourcepart)),
        // Resourcepart: controls (C0, DEL, C1) and other PRECIS-disallowed code points
        ("a@example.com/x\u{0}y", .forbiddenCharacter(.resourcepart, "\u{0}")),
        ("a@example.com/x\u{1B}y", .forbiddenCharacter(.resourcepart, "\u{1B}")),
        ("a@example.com/x\ty", .forbiddenCharacter(.resourcepart, "\t")),
        ("a@example.com/x\u{7F}y", .forbiddenCharacter(.resourcepart, "\u{7F}")),
        ("a@example.com/x\u{80}y", .forbiddenCharacter(.resourcepart, "\u{80}")),
        ("a@example.com/x\u{85}y", .forbiddenCharacter(.resourcepart, "\u{85}")),
        ("a@example.com/x\u{9F}y", .forbiddenCharacter(.resourcepart, "\u{9F}")),
        ("a@example.com/x\u{200B}y", .forbiddenCharacter(.resourcepart, "\u{200B}")),
        ("a@example.com/x\u{2028}y", .forbiddenCharacter(.resourcepart, "\u{2028}")),
        ("a@example.com/x\u{E000}y", .forbiddenCharacter(.resourcepart, "\u{E000}")),
        ("a@example.com/x\u{FFFF}y", .forbiddenCharacter(.resourcepart, "\u{FFFF}")),
        ("a@example.com/x\u{1100}y", .forbiddenCharacter(.resourcepart, "\u{1100}")),
        // Domainpart: host-name labels
        ("exa_mple.com", .forbiddenCharacter(.domainpart, "_")),
        ("exa mple.com", .forbiddenCharacter(.domainpart, " ")),
        ("example.com:5222", .forbiddenCharacter(.domainpart, ":")),
        ("::1", .forbiddenCharacter(.domainpart, ":")),
        ("a@b@example.com", .forbiddenCharacter(.domainpart, "@")),
        ("ex*ample.com", .forbiddenCharacter(.domainpart, "*")),
        ("-example.com", .hyphenAtDomainLabelEdge(label: "-example")),
        ("example-.com", .hyphenAtDomainLabelEdge(label: "example-")),
        ("example.-", .hyphenAtDomainLabelEdge(label: "-")),
        ("a..b", .emptyDomainLabel),
        (".example.com", .emptyDomainLabel),
        ("example.com..", .emptyDomainLabel),
        ("\(a64).example", .domainLabelTooLong(label: a64, bytes: 64)),
        ("example.\(a64.uppercased())", .domainLabelTooLong(label: a64, bytes: 64)),
        // Domainpart: non-ASCII labels
        ("b\u{FC}_cher.example", .forbiddenCharacter(.domainpart, "_")),
        ("\u{2603}.example", .forbiddenCharacter(.domainpart, "\u{2603}")),
        ("b\u{FC}cher\u{A0}.example", .forbiddenCharacter(.domainpart, "\u{A0}")),
        ("x\u{200D}\u{E9}.example", .forbiddenCharacter(.domainpart, "\u{200D}")),
        ("-b\u{FC}cher.example", .hyphenAtDomainLabelEdge(label: "-b\u{FC}cher")),
        ("\u{301}abc.example", .combiningMarkAtDomainLabelStart(label: "\u{301}abc")),
        ("\u{E9}..example", .emptyDomainLabel),
        (
            "\u{FC}\(String(repeating: "a", count: 56)).de",
            .domainLabelTooLong(label: "\u{FC}\(String(repeating: "a", count: 56))", bytes: 64)
        ),
        ("[\u{E9}]", .invalidIPv6Address("[\u{E9}]")),
        // IPv4: a last label of digits makes it an IPv4 address (RFC 1123 §2.1)
        ("256.1.1.1", .invalidIPv4Address("256.1.1.1")),
        ("1.2.3.256", .invalidIPv4Address("1.2.3.256")),
        ("1.2.3.1000", .invalidIPv4Address("1.2.3.1000")),
        ("1.2.3", .invalidIPv4Address("1.2.3")),
        ("1.2.3.4.5", .invalidIPv4Address("1.2.3.4.5")),
        ("01.2.3.4", .invalidIPv4Address("01.2.3.4")),
        ("1.2.3.00", .invalidIPv4Address("1.2.3.00")),
        ("123", .invalidIPv4Address("123")),
        ("example.123", .invalidIPv4Address("example.123")),
        ("\u{E9}.42", .invalidIPv4Address("\u{E9}.42")),
        // IPv6
        ("[1::2::3]", .invalidIPv6Address("[1::2::3]")),
        ("[::1", .invalidIPv6Address("[::1")),
        ("[::1]x", .invalidIPv6Address("[::1]x")),
        ("[]", .invalidIPv6Address("[]")),
        ("[:]", .invalidIPv6Address("[:]")),
        ("[:::]", .invalidIPv6Address("[:::]")),
        ("[:1]", .invalidIPv6Address("[:1]")),
        ("[1:]", .invalidIPv6Address("[1:]")),
        ("[1:2:3:4:5:6:7]", .invalidIPv6Address("[1:2:3:4:5:6:7]")),
        ("[1:2:3:4:5:6:7:8:9]", .invalidIPv6Address("[1:2:3:4:5:6:7:8:9]")),
        ("[1::2:3:4:5:6:7:8]", .invalidIPv6Address("[1::2:3:4:5:6:7:8]")),
        ("[12345::]", .invalidIPv6Address("[12345::]")),
        ("[::G]", .invalidIPv6Address("[::g]")),
        ("[fe80::1%eth0]", .invalidIPv6Address("[fe80::1%eth0]")),
        ("[v1.fe]", .invalidIPv6Address("[v1.fe]")),
        ("[1.2.3.4]", .invalidIPv6Address("[1.2.3.4]")),
        ("[::1.2.3]", .invalidIPv6Address("[::1.2.3]")),
        ("[::256.1.1.1]", .invalidIPv6Address("[::256.1.1.1]")),
        ("[1.2.3.4::]", .invalidIPv6Address("[1.2.3.4::]")),
        ("[::1.2.3.4:5]", .invalidIPv6Address("[::1.2.3.4:5]")),
        ("[1:2:3:4:5:6:7:1.2.3.4]", .invalidIPv6Address("[1:2:3:4:5:6:7:1.2.3.4]")),
    ]

    @Test(arguments: invalid)
    func rejects(_ testCase: (input: String, kind: JIDError.Kind)) {
        #expect {
            try JID(testCase.input)
        } throws: { error in
            (error as? JIDError)?.kind == testCase.kind
        }
    }

    @Test(arguments: ["/", "@"] as [Unicode.Scalar])
    func forbiddenLocalpartDelimiters(_ scalar: Unicode.Scalar) {
        #expect(throws: JIDError(.forbiddenCharacter(.localpart, scalar))) {
            try JID(localpart: "a\(scalar)b", domainpart: "example.com", resourcepart: nil)
        }
        #expect(throws: JIDError(.forbiddenCharacter(.domainpart, scalar))) {
            try JID(localpart: nil, domainpart: "a\(scalar)b", resourcepart: nil)
        }
    }

    @Test func partsInitialiserRejectsEmptyParts() {
        #expect(throws: JIDError(.emptyLocalpart)) {
            try JID(localpart: "", domainpart: "example.com", resourcepart: nil)
        }
        #expect(throws: JIDError(.emptyDomainpart)) {
            try JID(localpart: nil, domainpart: "", resourcepart: nil)
        }
        #expect(throws: JIDError(.emptyResourcepart)) {
            try JID(localpart: nil, domainpart: "example.com", resourcepart: "")
        }
    }

    // MARK: Derived JIDs

    @Test func bareDomainAndResource() throws {
        let full = try JID("Juliet@Example.com/Balcony")
        #expect(!full.isBare)
        #expect(!full.isDomain)
        #expect(full.bare == (try JID("juliet@example.com")))
        #expect(full.bare.isBare)
        #expect(!full.bare.isDomain)
        #expect(full.domain == (try JID("example.com")))
        #expect(full.domain.isDomain)
        #expect(full.domain.isBare)
        #expect((try JID("example.com/r")).isDomain == false)

        let moved = try full.withResource("Orchard/1@2")
        #expect(moved.description == "juliet@example.com/Orchard/1@2")
        #expect(moved.bare == full.bare)
        #expect(try full.bare.withResource("Re\u{301}").resourcepart.map { Array($0.utf8) } == Array("R\u{E9}".utf8))
        #expect(try full.domain.withResource("r").description == "example.com/r")
        #expect(throws: JIDError(.emptyResourcepart)) { try full.withResource("") }
        #expect(throws: JIDError(.forbiddenCharacter(.resourcepart, "\u{0}"))) { try full.withResource("\u{0}") }
        #expect(throws: JIDError(.surroundingWhitespace(.resourcepart))) { try full.withResource(" r") }
    }

    @Test func equalAfterNormalisation() throws {
        let forms = [
            "juliet@example.com/r", "JULIET@EXAMPLE.COM/r", "Juliet@Example.Com./r",
            "\u{FF2A}uliet@example\u{3002}com/r",
        ]
        let jids = try forms.map { try JID($0) }
        #expect(Set(jids).count == 1)
        #expect(try JID("a@example.com/R") != JID("a@example.com/r"))
        #expect(try JID("[::1]") != JID("[0::1]"))  // IPv6 is lowercased, not canonicalised
    }

    // MARK: Errors

    @Test func errorDescriptionsNamePartRuleAndLimit() {
        let tooLong = JIDError(.partTooLong(.localpart, bytes: 1024)).description
        #expect(tooLong.contains("localpart"))
        #expect(tooLong.contains("1024"))
        #expect(tooLong.contains("1023"))
        let label = JIDError(.domainLabelTooLong(label: a64, bytes: 64)).description
        #expect(label.contains("64"))
        #expect(label.contains("63"))
        #expect(JIDError(.forbiddenCharacter(.resourcepart, "\u{0}")).description.contains("U+0000"))
        #expect(JIDError(.forbiddenCharacter(.localpart, "&")).description.contains("U+0026 '&'"))
        #expect(JIDError(.invalidIPv6Address("[1::2::3]")).description.contains("[1::2::3]"))
    }

    // MARK: Codable

    @Test func codableRoundTrip() throws {
        let jids = try ["Juliet@Example.com/Balcony", "example.com", "[::1]/r", "\u{E9}@b\u{FC}cher.example"].map { try JID($0) }
        let data = try JSONEncoder().encode(jids)
        let json = try #require(String(data: data, encoding: .utf8))
        #expect(json.hasPrefix(#"["juliet@example.com\/Balcony","example.com""#))
        #expect(try JSONDecoder().decode([JID].self, from: data) == jids)
        // Decoding normalises.
        let decoded = try JSONDecoder().decode(JID.self, from: Data(#""JULIET@EXAMPLE.COM.""#.utf8))
        #expect(decoded == (try JID("juliet@example.com")))
    }

    @Test(arguments: [
        (#""@example.com""#, JIDError.Kind.emptyLocalpart),
        (#""a@256.1.1.1""#, .invalidIPv4Address("256.1.1.1")),
        (#""a@example.com\/\u0000""#, .forbiddenCharacter(.resourcepart, "\u{0}")),
    ])
    func codableRejectsInvalid(_ testCase: (json: String, kind: JIDError.Kind)) {
        #expect {
            try JSONDecoder().decode(JID.self, from: Data(testCase.json.utf8))
        } throws: { error in
            guard case DecodingError.dataCorrupted(let context) = error else { return false }
            return (context.underlyingError as? JIDError)?.kind == testCase.kind
        }
    }

    @Test func codableRejectsNonString() {
        #expect {
            try JSONDecoder().decode(JID.self, from: Data("42".utf8))
        } throws: { error in
            guard case DecodingError.typeMismatch = error else { return false }
            return true
        }
    }

    // MARK: Internals

    @Test(arguments: [
        ("b\u{FC}cher", "bcher-kva"),
        ("m\u{FC}nchen", "mnchen-3ya"),
        ("\u{4F8B}\u{3048}", "r8jz45g"),
        ("\u{4ED6}\u{4EEC}\u{4E3A}\u{4EC0}\u{4E48}\u{4E0D}\u{8BF4}\u{4E2D}\u{6587}", "ihqwcrb4cv8a8dqg056pqjye"),
    ])
    func punycode(_ testCase: (label: String, encoded: String)) {
        #expect(Punycode.encode(testCase.label.unicodeScalars) == testCase.encoded)
    }

    @Test func standardLibraryNFC() {
        #expect(Array(JIDParts.nfc("e\u{301}").unicodeScalars) == ["\u{E9}"])
        #expect(Array(JIDParts.nfc("\u{212B}").unicodeScalars) == ["\u{C5}"])
        #expect(Array(JIDParts.nfc("\u{AC00}\u{11A8}").unicodeScalars) == ["\u{AC01}"])
        #expect(Array(JIDParts.nfc("q\u{307}\u{323}").unicodeScalars) == ["q", "\u{323}", "\u{307}"])
        #expect(Array(JIDParts.nfc("\u{FB01}").unicodeScalars) == ["\u{FB01}"])  // NFC, not NFKC
    }
}
