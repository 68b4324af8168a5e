import Testing
import XMPPCore
import XMPPStream

@Suite("XMLStreamParser: hostile input")
struct XMLStreamParserRejectionTests {
    /// Parses `input` whole, byte by byte and in random splits; all must fail alike.
    func rejection(_ input: [UInt8], limits: XMLStreamLimits = .default) -> StreamError? {
        let whole = parse([input], limits: limits)
        let bytewise = parse(input.map { [$0] }, limits: limits)
        #expect(whole.error?.condition == bytewise.error?.condition)
        let split = parse(randomSplit(input, seed: 7, maxChunk: 97), limits: limits)
        #expect(whole.error?.condition == split.error?.condition)
        return whole.error
    }

    func rejection(_ input: String, limits: XMLStreamLimits = .default) -> StreamError? {
        self.rejection(Array(input.utf8), limits: limits)
    }

    @Test func doctype() {
        let error = rejection("<?xml version='1.0'?><!DOCTYPE stream:stream>" + header())
        #expect(error?.condition == .restrictedXML)
        #expect(error?.text?.contains("DOCTYPE") == true)
    }

    @Test func processingInstruction() {
        let error = rejection(header() + "<?evil data?>")
        #expect(error?.condition == .restrictedXML)
        #expect(error?.text?.contains("processing instructions") == true)
    }

    @Test func processingInstructionInsideStanza() {
        let error = rejection(header() + "<message><?evil data?></message>")
        #expect(error?.condition == .restrictedXML)
    }

    @Test func comment() {
        let error = rejection(header() + "<message><!-- hi --></message>")
        #expect(error?.condition == .restrictedXML)
        #expect(error?.text?.contains("comments") == true)
    }

    @Test func entityDeclaration() {
        let error = rejection("<!DOCTYPE s [<!ENTITY x 'y'>]>" + header())
        #expect(error?.condition == .restrictedXML)
    }

    @Test func undefinedEntity() {
        let error = rejection(header() + "<message><body>&foo;</body></message>")
        #expect(error?.condition == .restrictedXML)
        #expect(error?.text?.contains("undefined entity") == true)
    }

    @Test func billionLaughs() {
        var input = "<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>"
        input += "<!ENTITY lol1 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>"
        for level in 2...9 {
            input += "<!ENTITY lol\(level) '" + String(repeating: "&lol\(level - 1);", count: 10) + "'>"
        }
        input += "]>" + header() + "<message><body>&lol9;</body></message>"
        let error = rejection(input)
        #expect(error?.condition == .restrictedXML)
        #expect(error?.text?.contains("DOCTYPE") == true)
    }

    @Test func invalidUTF8() {
        var bytes = Array((header() + "<message><body>").utf8)
        bytes += [0xC3, 0x28, 0xFF]  // bad continuation byte, then a byte never valid in UTF-8
        bytes += Array("</body></message>".utf8)
        let error = rejection(bytes)
        #expect(error?.condition == .notWellFormed)
    }

    @Test func overlongUTF8() {
        var bytes = Array((header() + "<message><body>").utf8)
        bytes += [0xC0, 0xBC]  // overlong '<'
        bytes += Array("</body></message>".utf8)
        #expect(rejection(bytes)?.condition == .notWellFormed)
    }

    @Test func malformed() {
        let error = rejection(header() + "<message><body></message>")
        #expect(error?.condition == .notWellFormed)
        #expect(error?.text?.contains("line") == true)
    }

    @Test func unboundPrefix() {
        let error = rejection(header() + "<foo:bar/>")
        #expect(error?.condition == .badNamespacePrefix)
    }

    @Test func unboundAttributePrefix() {
        #expect(rejection(header() + "<message foo:x='1'/>")?.condition == .badNamespacePrefix)
    }

    @Test func wrongRootNamespace() {
        let error = rejection("<stream:stream xmlns:stream='urn:wrong' xmlns='jabber:client'>")
        #expect(error?.condition == .invalidNamespace)
        #expect(error?.text?.contains("urn:wrong") == true)
    }

    @Test func wrongRootName() {
        #expect(rejection("<html xmlns='http://www.w3.org/1999/xhtml'>")?.condition == .invalidNamespace)
    }

    @Test func nonUTF8Encoding() {
        let error = rejection("<?xml version='1.0' encoding='ISO-8859-1'?>" + header().dropFirst(21))
        #expect(error?.condition == .unsupportedEncoding)
    }

    @Test func secondHeaderWithoutRestartIsMalformed() {
        // A new <stream:stream> inside the old document is just an element in the wrong place…
        let result = parse(header() + header())
        #expect(result.error?.condition == .notWellFormed)  // "<?xml" not at start of entity
    }

    @Test func oversizeStanza() {
        let limits = XMLStreamLimits(maxStanzaSize: 1000)
        let body = String(repeating: "a", count: 990)
        #expect(rejection(header() + "<message><body>\(body.prefix(900))</body></message>", limits: limits) == nil)
        let error = rejection(header() + "<message><body>\(body)</body></message>", limits: limits)
        #expect(error?.condition == .policyViolation)
        #expect(error?.text == "stanza too large (maximum stanza size: 1000 bytes)")
    }

    @Test func oversizeUnterminatedAttributeIsCaughtWhileStillOpen() throws {
        let parser = XMLStreamParser(limits: XMLStreamLimits(maxStanzaSize: 4096))
        parser.feed(Array((header() + "<message to='").utf8))
        _ = try parser.nextEvent()
        var thrown: StreamError?
        let chunk = [UInt8](repeating: UInt8(ascii: "x"), count: 1024)
        for _ in 0..<100 {
            parser.feed(chunk)
            do {
                while try parser.nextEvent() != nil {}
            } catch {
                thrown = error
                break
            }
        }
        #expect(thrown?.condition == .policyViolation)
        #expect(thrown?.text?.contains("4096") == true)
        #expect(parser.pendingInputCount <= 4096 + 1024)
    }

    @Test func endlessWhitespaceIsBounded() {
        let limits = XMLStreamLimits(maxStanzaSize: 2048)
        let input = header() + String(repeating: " ", count: 10_000)
        #expect(rejection(input, limits: limits)?.condition == .policyViolation)
        // …but whitespace keepalives between stanzas do not add up.
        let keepalives = header() + String(repeating: String(repeating: " ", count: 1000) + "<presence/>", count: 10)
        #expect(rejection(keepalives, limits: limits) == nil)
    }

    @Test func oversizeHeader() {
        let limits = XMLStreamLimits(maxHeaderSize: 512)
        let error = rejection(header(extra: " from='\(String(repeating: "h", count: 600))'"), limits: limits)
        #expect(error?.condition == .policyViolation)
        #expect(error?.text == "stream header too large (maximum stream header size: 512 bytes)")
        let unterminated = rejection(header().dropLast() + String(repeating: " ", count: 4096), limits: limits)
        #expect(unterminated?.condition == .policyViolation)
    }

    @Test func tooDeep() {
        let limits = XMLStreamLimits(maxDepth: 8)
        func nested(_ depth: Int) -> String {
            String(repeating: "<a>", count: depth) + String(repeating: "</a>", count: depth)
        }
        #expect(rejection(header() + nested(8), limits: limits) == nil)
        let error = rejection(header() + nested(9), limits: limits)
        #expect(error?.condition == .policyViolation)
        #expect(error?.text == "elements nested too deeply (maximum depth: 8)")
        // The default limit holds against a deep bomb without recursion trouble.
        #expect(rejection(header() + String(repeating: "<a>", count: 100_000))?.condition == .policyViolation)
    }

    @Test func tooManyAttributes() {
        let limits = XMLStreamLimits(maxAttributes: 4)
        func element(_ count: Int) -> String {
            "<message " + (0..<count).map { "a\($0)='v'" }.joined(separator: " ") + "/>"
        }
        #expect(rejection(header() + element(4), limits: limits) == nil)
        let error = rejection(header() + element(5), limits: limits)
        #expect(error?.condition == .policyViolation)
        #expect(error?.text == "too many attributes on one element (maximum attributes per element: 4)")
    }

    @Test func errorIsSticky() throws {
        let parser = XMLStreamParser()
        parser.feed(Array((header() + "<!-- x -->").utf8))
        #expect(try parser.nextEvent() != nil)
        #expect(throws: StreamError.self) { try parser.nextEvent() }
        parser.feed(Array("<presence/>".utf8))
        #expect(throws: StreamError.self) { try parser.nextEvent() }
    }
}

@Suite("XMLStreamParser: restarts")
struct XMLStreamParserRestartTests {
    static let saslSuccess = "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"

    @Test func bytesAfterSuccessGoToTheNewDocument() throws {
        let parser = XMLStreamParser()
        // One read: old header, <success/>, and the pipelined new header + stanza.
        let newHeader = header(extra: " id='second'")
        parser.feed(Array((header() + Self.saslSuccess + newHeader + "<presence/>").utf8))
        guard case .streamOpened(let first) = try parser.nextEvent() else {
            Issue.record("no header")
            return
        }
        #expect(first.id == nil)
        #expect(try parser.nextEvent() == .element(Element("success", namespace: Namespace.sasl)))
        #expect(parser.pendingInputCount == newHeader.utf8.count + "<presence/>".utf8.count)
        parser.restart()
        guard case .streamOpened(let second) = try parser.nextEvent() else {
            Issue.record("no second header")
            return
        }
        #expect(second.id == "second")
        #expect(try parser.nextEvent() == .element(Element("presence", namespace: Namespace.client)))
        #expect(try parser.nextEvent() == nil)
    }

    @Test(arguments: 0..<100)
    func restartInAnySplit(seed: Int) throws {
        let input = Array(
            (header() + "<message id='1'/>" + Self.saslSuccess + header(extra: " id='2'")
                + "<message id='3'/>").utf8
        )
        let parser = XMLStreamParser()
        var events: [XMLStreamEvent] = []
        for chunk in randomSplit(input, seed: UInt64(seed), maxChunk: 1 + seed % 80) {
            parser.feed(chunk)
            while let event = try parser.nextEvent() {
                events.append(event)
                if case .element(let element) = event, element.name.localName == "success" {
                    parser.restart()
                }
            }
        }
        #expect(events.count == 5)
        guard events.count == 5, case .streamOpened(let second) = events[3] else { return }
        #expect(second.id == "2")
        #expect(events[4] == .element(Element("message", namespace: Namespace.client, attributes: ["id": "3"])))
    }

    @Test func withoutRestartTheNewHeaderIsAnError() {
        let result = parse(header() + Self.saslSuccess + header())
        #expect(result.events.count == 2)
        #expect(result.error?.condition == .notWellFormed)
    }

    @Test func starttlsWithNothingPendingRestarts() throws {
        let parser = XMLStreamParser()
        parser.feed(Array((header() + "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>").utf8))
        _ = try parser.nextEvent()
        #expect(try parser.nextEvent() == .element(Element("starttls", namespace: Namespace.tls)))
        #expect(parser.pendingInputCount == 0)
        try parser.restartRejectingPendingInput()
        parser.feed(Array(header().utf8))
        guard case .streamOpened = try parser.nextEvent() else {
            Issue.record("no new header")
            return
        }
    }

    @Test func starttlsWithPipelinedPlaintextIsRefused() throws {
        let parser = XMLStreamParser()
        let injected = "<iq type='set' id='evil'/>"
        parser.feed(Array((header() + "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>" + injected).utf8))
        _ = try parser.nextEvent()
        _ = try parser.nextEvent()
        #expect(parser.pendingInputCount == injected.utf8.count)
        do {
            try parser.restartRejectingPendingInput()
            Issue.record("pipelined plaintext accepted")
        } catch {
            #expect(error.condition == .policyViolation)
            #expect(error.text?.hasPrefix("\(injected.utf8.count) bytes") == true)
        }
        #expect(throws: StreamError.self) { try parser.nextEvent() }
    }

    @Test func starttlsWithAPartialPipelinedTagIsRefused() throws {
        let parser = XMLStreamParser()
        parser.feed(Array((header() + "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><i").utf8))
        _ = try parser.nextEvent()
        _ = try parser.nextEvent()
        #expect(parser.pendingInputCount == 2)
        #expect(throws: StreamError.self) { try parser.restartRejectingPendingInput() }
    }
}
