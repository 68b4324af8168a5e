import Testing
import XMPPCore
import XMPPStream

/// Inputs found by the libFuzzer targets in `Fuzz/` (scripts/fuzz.sh), minimised, with the
/// behaviour intended. The reproducers are the fuzzer's own inputs: four control bytes
/// (split pattern, seed, restart mask, limits) followed by the stream bytes.
@Suite("Fuzz regressions")
struct FuzzRegressionTests {
    /// Parses `stream` (one element expected after the header), re-serialises that element
    /// inside a new stream with the encoder and parses it again, as FuzzXMLStream does.
    func roundTrip(_ stream: [UInt8]) throws -> (original: Element, again: Element, text: String) {
        let first = parse([stream])
        #expect(first.error == nil)
        guard first.events.count >= 2, case .element(let element) = first.events[1] else {
            Issue.record("no element in \(first.events)")
            throw CancellationError()
        }
        var encoder = XMLStreamEncoder(contentNamespace: Namespace.client)
        var text = ""
        encoder.encode(.header(StreamHeader(contentNamespace: Namespace.client, to: "example.com")), into: &text)
        encoder.encode(.element(element), into: &text)
        encoder.encode(.close, into: &text)
        let second = parse(text)
        #expect(second.error == nil, "\(text)")
        guard second.events.count == 3, case .element(let again) = second.events[1] else {
            Issue.record("re-parsing gave \(second.events), error \(String(describing: second.error))")
            throw CancellationError()
        }
        return (element, again, text)
    }

    /// FuzzXMLStream, round-trip oracle: an element in the XML namespace (`<xml:foo/>`, which
    /// expat accepts) was written as `<foo xmlns='http://www.w3.org/XML/1998/namespace'/>`,
    /// a reserved-namespace declaration every parser rejects: relaying such a payload made
    /// the component's own stream ill-formed and the server close it. It is now written
    /// with the predeclared `xml:` prefix.
    @Test func elementInTheXMLNamespaceKeepsItsPrefix() throws {
        let reproducer = Array(header().utf8) + Array("<message><xml:foo a='1'><b/></xml:foo></message>".utf8)
        let (original, again, text) = try self.roundTrip(reproducer)
        #expect(again == original)
        #expect(text.contains("<xml:foo a='1'><b/></xml:foo>"), "\(text)")
        #expect(!text.contains("xmlns='\(Namespace.xml)'"))
        #expect(Element(name: QualifiedName(Namespace.xml, "foo")).serialized() == "<xml:foo/>")
    }

    /// FuzzXMLStream, round-trip oracle: a carriage return in character data (sent as `&#13;`)
    /// was written literally and came back as a line feed (XML 1.0 §2.11), so relayed text
    /// was altered. Text now escapes CR as `&#13;`.
    @Test func carriageReturnInTextSurvivesTheRoundTrip() throws {
        let reproducer = Array(header().utf8) + Array("<message><body>a&#13;b\r\nc&#xD;</body></message>".utf8)
        let (original, again, text) = try self.roundTrip(reproducer)
        #expect(original.firstChild("body", namespace: Namespace.client)?.text == "a\rb\nc\r")
        #expect(again == original)
        #expect(text.contains("<body>a&#13;b\nc&#13;</body>"), "\(text)")
        #expect(
            Element("body", namespace: Namespace.client, text: "x\r\ny").serialized()
                == "<body xmlns='jabber:client'>x&#13;\ny</body>")
    }
}
