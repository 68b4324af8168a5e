import Testing
import XMPPStream

@Suite("XEP-0114 handshake digest")
struct ComponentHandshakeTests {
    // Expected values computed independently (Python hashlib.sha1).
    @Test(arguments: [
        ("3BF96D32", "sEcReT", "c9baffe00b849eb7092177dbabf5aa1613e9409f"),
        ("", "", "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
        ("ab", "c", "a9993e364706816aba3e25717850c26c9cd0d89d"),
        (String(repeating: "a", count: 600), String(repeating: "a", count: 400), "291e9a6c66994949b57ba5e650361e98fc36b1ba"),
        (String(repeating: "x", count: 55), "", "cef734ba81a024479e09eb5a75b6ddae62e6abf1"),
        (String(repeating: "x", count: 56), "", "901305367c259952f4e7af8323f480d59f81335b"),
        (String(repeating: "x", count: 32), String(repeating: "x", count: 32), "bb2fa3ee7afb9f54c6dfb5d021f14b1ffe40c163"),
        ("idé", "秘密😀", "5ebe9c0b2774473fad54558aa4228d0a4003c48d"),
    ])
    func digest(streamID: String, secret: String, expected: String) {
        #expect(ComponentHandshake.digest(streamID: streamID, secret: secret) == expected)
    }

    @Test func matchingIgnoresCaseAndRejectsAnyDifference() {
        let expected = ComponentHandshake.digest(streamID: "id", secret: "s")
        #expect(ComponentHandshake.matches(expected, expected: expected))
        #expect(ComponentHandshake.matches(expected.uppercased(), expected: expected))
        let flipped = String(expected.dropLast()) + (expected.last == "0" ? "1" : "0")
        #expect(!ComponentHandshake.matches(flipped, expected: expected))
        #expect(!ComponentHandshake.matches(String(expected.dropLast()), expected: expected))
        #expect(!ComponentHandshake.matches("", expected: expected))
    }
}
