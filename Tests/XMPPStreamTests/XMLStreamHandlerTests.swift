import NIOCore
import NIOEmbedded
import Testing
import XMPPCore
import XMPPStream

@Suite("XMLStreamHandler on EmbeddedChannel")
struct XMLStreamHandlerTests {
    func makeChannel() throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addXMLStreamHandler(contentNamespace: Namespace.componentAccept)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 5347)).wait()
        #expect(channel.isActive)
        return channel
    }

    func send(_ channel: EmbeddedChannel, _ text: String) throws {
        try channel.writeInbound(channel.allocator.buffer(string: text))
    }

    func written(_ channel: EmbeddedChannel) throws -> String {
        var text = ""
        while var buffer = try channel.readOutbound(as: ByteBuffer.self) {
            text += buffer.readString(length: buffer.readableBytes) ?? ""
        }
        return text
    }

    @Test func eventsOut() throws {
        let channel = try makeChannel()
        try send(channel, header(Namespace.componentAccept) + "<handshake>abc</hand")
        guard case .streamOpened(let header) = try channel.readInbound(as: XMLStreamEvent.self) else {
            Issue.record("no header")
            return
        }
        #expect(header.contentNamespace == Namespace.componentAccept)
        #expect(try channel.readInbound(as: XMLStreamEvent.self) == nil)
        try send(channel, "shake><message/>")
        #expect(
            try channel.readInbound(as: XMLStreamEvent.self)
                == .element(Element("handshake", namespace: Namespace.client, text: "abc"))
        )
        #expect(try channel.readInbound(as: XMLStreamEvent.self) == .element(Element("message", namespace: Namespace.client)))
        try send(channel, "</stream:stream>")
        #expect(try channel.readInbound(as: XMLStreamEvent.self) == .streamClosed)
        #expect(try channel.finish().isClean)
    }

    @Test func framesEncoded() throws {
        let channel = try makeChannel()
        try channel.writeOutbound(
            XMLStreamFrame.header(StreamHeader(contentNamespace: Namespace.componentAccept, to: "c.example.com", version: nil))
        )
        try channel.writeOutbound(XMLStreamFrame.element(Element("handshake", namespace: Namespace.client, text: "d1g")))
        try channel.writeOutbound(XMLStreamFrame.whitespace)
        try channel.writeOutbound(XMLStreamFrame.close)
        #expect(
            try written(channel)
                == "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='c.example.com'><handshake>d1g</handshake> </stream:stream>"
        )
        _ = try channel.finish()
    }

    @Test func nothingIsWrittenAfterOurClose() throws {
        let channel = try makeChannel()
        try channel.writeOutbound(
            XMLStreamFrame.header(StreamHeader(contentNamespace: Namespace.componentAccept, to: "c.example.com", version: nil))
        )
        try channel.writeOutbound(XMLStreamFrame.close)
        // A handler answering late: refused, not written behind </stream:stream>.
        let late = channel.eventLoop.makePromise(of: Void.self)
        channel.writeAndFlush(XMLStreamFrame.element(Element("message", namespace: Namespace.client)), promise: late)
        #expect(throws: ChannelError.outputClosed) { try late.futureResult.wait() }
        #expect(throws: ChannelError.outputClosed) { try channel.writeOutbound(XMLStreamFrame.whitespace) }
        // A second close is harmless and writes nothing.
        try channel.writeOutbound(XMLStreamFrame.close)
        let output = try written(channel)
        #expect(output.hasSuffix("to='c.example.com'></stream:stream>"), "\(output)")
        _ = try channel.finish()
    }

    @Test func decodeErrorBeforeOurHeader() throws {
        let channel = try makeChannel()
        var caught: (any Error)?
        try channel.pipeline.syncOperations.addHandler(ErrorRecorder { caught = $0 })
        try send(channel, header(Namespace.componentAccept) + "<message><!-- no --></message>")
        let output = try written(channel)
        #expect(
            output
                == "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' from='example.com' version='1.0'>"
                + "<stream:error><restricted-xml xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
                + "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>comments are not allowed in XMPP</text></stream:error></stream:stream>"
        )
        #expect((caught as? XMLStreamHandlerError)?.streamError.condition == .restrictedXML)
        #expect(!channel.isActive)
        // The header event had already been delivered; nothing after the error.
        guard case .streamOpened = try channel.readInbound(as: XMLStreamEvent.self) else {
            Issue.record("header not delivered")
            return
        }
        #expect(try channel.readInbound(as: XMLStreamEvent.self) == nil)
    }

    @Test func decodeErrorAfterOurHeader() throws {
        let channel = try makeChannel()
        try channel.pipeline.syncOperations.addHandler(ErrorRecorder { _ in })
        try channel.writeOutbound(XMLStreamFrame.header(StreamHeader(contentNamespace: Namespace.componentAccept)))
        _ = try written(channel)
        try send(channel, "<stream:stream xmlns:stream='urn:bad'>")
        #expect(
            try written(channel)
                == "<stream:error><invalid-namespace xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>the stream root is in namespace 'urn:bad', not 'http://etherx.jabber.org/streams'</text></stream:error></stream:stream>"
        )
        #expect(!channel.isActive)
    }

    @Test func restartRequestedWhileHandlingAnElementAppliesToTheRestOfTheRead() throws {
        let channel = try makeChannel()
        let restarter = Restarter(on: "success", mode: .carryingOverPendingInput)
        try channel.pipeline.syncOperations.addHandler(restarter)
        // One read: header, <success/>, new header, a stanza of the new stream.
        try send(
            channel,
            header(Namespace.client) + "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"
                + header(Namespace.client, extra: " id='new'") + "<presence/>"
        )
        #expect(restarter.events.count == 4)
        guard restarter.events.count == 4, case .streamOpened(let second) = restarter.events[2] else { return }
        #expect(second.id == "new")
        #expect(restarter.events[3] == .element(Element("presence", namespace: Namespace.client)))
        #expect(channel.isActive)
        #expect(try written(channel) == "")
    }

    @Test func starttlsRestartRefusesPipelinedPlaintext() throws {
        let channel = try makeChannel()
        var caught: (any Error)?
        let restarter = Restarter(on: "proceed", mode: .rejectingPendingInput)
        try channel.pipeline.syncOperations.addHandler(restarter)
        try channel.pipeline.syncOperations.addHandler(ErrorRecorder { caught = $0 })
        try send(
            channel,
            header(Namespace.client) + "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><iq type='set' id='x'/>"
        )
        #expect(restarter.events.count == 2)  // the injected <iq/> never comes out
        #expect((caught as? XMLStreamHandlerError)?.streamError.condition == .policyViolation)
        #expect(restarter.restartFailure?.streamError.condition == .policyViolation)
        #expect(try written(channel).contains("<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"))
        #expect(!channel.isActive)
    }

    @Test func starttlsRestartWithNothingPending() throws {
        let channel = try makeChannel()
        let restarter = Restarter(on: "proceed", mode: .rejectingPendingInput)
        try channel.pipeline.syncOperations.addHandler(restarter)
        try send(channel, header(Namespace.client) + "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        try send(channel, header(Namespace.client, extra: " id='tls'"))
        #expect(restarter.events.count == 3)
        #expect(restarter.restartFailure == nil)
        if case .streamOpened(let header) = restarter.events.last {
            #expect(header.id == "tls")
        } else {
            Issue.record("no new header")
        }
        #expect(channel.isActive)
    }
}

/// Records events; restarts the stream when an element with a given name arrives.
final class Restarter: ChannelInboundHandler {
    typealias InboundIn = XMLStreamEvent
    let name: String
    let mode: XMLStreamHandler.Restart
    var events: [XMLStreamEvent] = []
    var restartFailure: XMLStreamHandlerError?

    init(on name: String, mode: XMLStreamHandler.Restart) {
        self.name = name
        self.mode = mode
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let event = Self.unwrapInboundIn(data)
        self.events.append(event)
        if case .element(let element) = event, element.name.localName == self.name {
            let promise = context.eventLoop.makePromise(of: Void.self)
            promise.futureResult.assumeIsolated().whenFailure { self.restartFailure = $0 as? XMLStreamHandlerError }
            context.triggerUserOutboundEvent(self.mode, promise: promise)
        }
    }
}

/// Hands every error to a closure.
final class ErrorRecorder: ChannelInboundHandler {
    typealias InboundIn = XMLStreamEvent
    let onError: (any Error) -> Void
    init(_ onError: @escaping (any Error) -> Void) { self.onError = onError }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) { context.fireChannelRead(data) }
    func errorCaught(context: ChannelHandlerContext, error: any Error) { self.onError(error) }
}
