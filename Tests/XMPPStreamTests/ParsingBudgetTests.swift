import NIOCore
import NIOEmbedded
import Testing
import XMPPCore
import XMPPStream

/// Issue #13 item 3: one XML token is bounded (expat rescans an unfinished token on every
/// read, so an unbounded token fed in small segments costs quadratic time), and the stanza
/// limit before authentication is small. No test here measures time: they check that the
/// limit errors come, and that ordinary large content still passes.
@Suite("Parsing budgets")
struct ParsingBudgetTests {
    private func chunks(_ text: String, size: Int = 100) -> [[UInt8]] {
        let bytes = Array(text.utf8)
        return stride(from: 0, to: bytes.count, by: size).map { Array(bytes[$0..<min($0 + size, bytes.count)]) }
    }

    @Test func aHugeAttributeValueFedInSmallSegmentsIsRefusedAsATooLargeToken() {
        let value = String(repeating: "a", count: 200 << 10)
        let result = parse(self.chunks(header() + "<message to='\(value)'/>"))
        #expect(result.error?.condition == .policyViolation)
        #expect(result.error?.text?.contains("token") == true, "\(String(describing: result.error))")
        #expect(result.error?.text?.contains("\(XMLStreamLimits.default.maxTokenSize)") == true)
    }

    @Test func aHugeElementNameIsRefusedAsATooLargeToken() {
        let name = String(repeating: "n", count: 100 << 10)
        let result = parse(self.chunks(header() + "<\(name)/>"))
        #expect(result.error?.condition == .policyViolation)
        #expect(result.error?.text?.contains("token") == true, "\(String(describing: result.error))")
    }

    @Test func theTokenLimitIsConfigurable() {
        var limits = XMLStreamLimits()
        limits.maxTokenSize = 1 << 10
        let value = String(repeating: "b", count: 2 << 10)
        #expect(parse(self.chunks(header() + "<message to='\(value)'/>"), limits: limits).error?.condition == .policyViolation)
        limits.maxTokenSize = 4 << 10
        #expect(parse(self.chunks(header() + "<message to='\(value)'/>"), limits: limits).error == nil)
    }

    @Test func largeTextInSmallSegmentsStillPasses() {
        let body = String(repeating: "x", count: 600 << 10)
        let result = parse(self.chunks(header() + "<message><body>\(body)</body></message>"))
        #expect(result.error == nil)
        #expect(result.events.count == 2)
    }

    @Test func beforeAuthenticationStanzasAreSmall() throws {
        let big = "<message><body>" + String(repeating: "y", count: 100 << 10) + "</body></message>"
        let parser = XMLStreamParser(limits: .default, authenticated: false)
        parser.feed(Array((header() + big).utf8))
        #expect(try parser.nextEvent() != nil)  // the header
        let error = #expect(throws: StreamError.self) { _ = try parser.nextEvent() }
        #expect(error?.condition == .policyViolation)
        #expect(error?.text?.contains("before authentication") == true, "\(String(describing: error))")

        let authenticated = XMLStreamParser(limits: .default, authenticated: false)
        authenticated.feed(Array(header().utf8))
        #expect(try authenticated.nextEvent() != nil)
        authenticated.markAuthenticated()
        authenticated.feed(Array(big.utf8))
        #expect(try authenticated.nextEvent() != nil)
    }

    @Test func theHandlerLiftsThePreAuthenticationLimitOnItsEvent() throws {
        let big = "<message><body>" + String(repeating: "z", count: 100 << 10) + "</body></message>"
        for signalled in [false, true] {
            let channel = EmbeddedChannel()
            try channel.pipeline.syncOperations.addHandler(
                XMLStreamHandler(contentNamespace: Namespace.client, authenticated: false))
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 5270)).wait()
            try channel.writeInbound(channel.allocator.buffer(string: header()))
            _ = try channel.readInbound(as: XMLStreamEvent.self)
            if signalled {
                channel.pipeline.triggerUserOutboundEvent(XMLStreamHandler.Authenticated(), promise: nil)
            }
            do {
                try channel.writeInbound(channel.allocator.buffer(string: big))
                #expect(signalled, "the big stanza passed before authentication")
                #expect(try channel.readInbound(as: XMLStreamEvent.self) != nil)
            } catch {
                #expect(!signalled, "refused after authentication: \(error)")
            }
            _ = try? channel.finish()
        }
    }
}
