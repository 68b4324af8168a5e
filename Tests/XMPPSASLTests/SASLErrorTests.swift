import Testing
import XMPPCore

@testable import XMPPSASL

@Suite struct SASLErrorTests {
    static let conditionTable: [(String, SASLError.Kind)] = [
        ("aborted", .aborted),
        ("account-disabled", .accountDisabled),
        ("credentials-expired", .credentialsExpired),
        ("encryption-required", .encryptionRequired),
        ("incorrect-encoding", .incorrectEncoding),
        ("invalid-authzid", .invalidAuthzid),
        ("invalid-mechanism", .invalidMechanism),
        ("malformed-request", .malformedRequest),
        ("mechanism-too-weak", .mechanismTooWeak),
        ("not-authorized", .notAuthorized),
        ("temporary-auth-failure", .temporaryAuthFailure),
        // RFC 6120 §6.5: an unknown condition is treated as not-authorized.
        ("some-future-condition", .notAuthorized),
    ]

    @Test(arguments: conditionTable)
    func failureConditionIsParsed(condition: String, kind: SASLError.Kind) {
        let plain = SASLError(
            failure: Element("failure", namespace: Namespace.sasl, children: [Element(condition, namespace: Namespace.sasl)])
        )
        #expect(plain.kind == kind)
        #expect(plain.detail == nil)

        // <text/> may come first; it is the detail, not the condition.
        let withText = SASLError(
            failure: Element(
                "failure",
                namespace: Namespace.sasl,
                children: [
                    Element("text", namespace: Namespace.sasl, attributes: [:], text: "Call 212-555-1212"),
                    Element(condition, namespace: Namespace.sasl),
                ]
            )
        )
        #expect(withText.kind == kind)
        #expect(withText.detail == "Call 212-555-1212")
        #expect(withText.description == "SASL \(kind): Call 212-555-1212")
    }

    @Test func emptyFailureIsNotAuthorized() {
        #expect(SASLError(failure: Element("failure", namespace: Namespace.sasl)).kind == .notAuthorized)
    }

    @Test func allConditionsAreElevenDistinctKinds() {
        #expect(SASLError.Kind.allConditions.count == 11)
        #expect(Set(SASLError.Kind.allConditions).count == 11)
        #expect(SASLError.Kind.cyrus.condition == nil)
        #expect(SASLError.Kind.noAcceptableMechanism.description == "no-acceptable-mechanism")
    }

    @Test(arguments: SASLError.Kind.allConditions)
    func failureElementRoundTrips(kind: SASLError.Kind) {
        let element = SASLError(kind, detail: "local detail is not sent").failureElement()
        #expect(element.name == QualifiedName(Namespace.sasl, "failure"))
        #expect(element.elements.map(\.name.localName) == [kind.condition!])
        #expect(SASLError(failure: element).kind == kind)
        #expect(!element.description.contains("local detail"))
    }

    @Test func localKindsMapToNotAuthorizedOnTheWire() {
        let element = SASLError(.cyrus, detail: "x").failureElement(text: "sorry")
        #expect(element.elements.map(\.name.localName) == ["not-authorized", "text"])
        #expect(SASLError(failure: element).detail == "sorry")
    }
}

@Suite struct SASLBase64Tests {
    @Test(arguments: [
        ("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ])
    func rfc4648Vectors(plain: String, encoded: String) {
        #expect(SASLBase64.encode(Array(plain.utf8)) == encoded)
        #expect(SASLBase64.decode(encoded) == Array(plain.utf8))
    }

    @Test func allByteValuesRoundTrip() {
        let bytes = (0...255).map { UInt8($0) }
        for length in [0, 1, 2, 3, 100, 256] {
            let slice = Array(bytes.prefix(length))
            #expect(SASLBase64.decode(SASLBase64.encode(slice)) == slice)
        }
    }

    @Test(arguments: ["Zg", "Zg=", "Z===", "Zm9v=", "Zm=v", "Zm9v\nYmFy", "Zm 9", "Zh==", "Zm9=", "Zm9vYg==Zm9v", "Zm9*"])
    func malformedInputIsRejected(_ text: String) {
        #expect(SASLBase64.decode(text) == nil)
    }

    @Test func elementTextConventions() throws {
        #expect(try SASLBase64.decodeElementText("") == nil)
        #expect(try SASLBase64.decodeElementText("  \n") == nil)
        #expect(try SASLBase64.decodeElementText("=") == [])
        #expect(try SASLBase64.decodeElementText(" Zm9v\n") == Array("foo".utf8))
        let error = #expect(throws: SASLError.self) { try SASLBase64.decodeElementText("Zm9") }
        #expect(error?.kind == .malformedBase64)
    }
}
