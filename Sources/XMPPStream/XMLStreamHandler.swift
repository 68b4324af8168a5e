public import NIOCore
import XMPPCore

/// The XML stream codec as a SwiftNIO handler: bytes in, ``XMLStreamEvent``s out;
/// ``XMLStreamFrame``s in, bytes out.
///
/// Inbound, it feeds every read to an ``XMLStreamParser`` and fires one `channelRead`
/// per event. Outbound, it writes frames with an ``XMLStreamEncoder``.
///
/// ## Restarts
///
/// A later handler restarts the stream synchronously, while it handles the element that
/// calls for it (`<success/>`, `<proceed/>`…), by sending ``Restart`` as an outbound user
/// event:
///
/// ```swift
/// context.triggerUserOutboundEvent(XMLStreamHandler.Restart.carryingOverPendingInput, promise: nil)
/// ```
///
/// The restart applies to the bytes that followed that element in the same read: they
/// are parsed as the new stream. The encoder also forgets its header, so the next
/// ``XMLStreamFrame/header(_:)`` opens the new outgoing stream. With
/// ``Restart/rejectingPendingInput`` (STARTTLS) pipelined bytes are a stream error.
///
/// ## Errors
///
/// When the peer's input is rejected, the handler writes its stream header if it has
/// not sent one yet (RFC 6120 §4.9.1.1), then `<stream:error>` and `</stream:stream>`,
/// fires `errorCaught` with an ``XMLStreamHandlerError`` and closes the channel.
public final class XMLStreamHandler: ChannelDuplexHandler {
    /// Bytes from the peer.
    public typealias InboundIn = ByteBuffer
    /// Parsed events.
    public typealias InboundOut = XMLStreamEvent
    /// Frames to write.
    public typealias OutboundIn = XMLStreamFrame
    /// Bytes to the peer.
    public typealias OutboundOut = ByteBuffer

    /// An outbound user event that restarts the stream (see ``XMLStreamHandler``).
    public struct Restart: Hashable, Sendable {
        fileprivate let rejectsPendingInput: Bool

        /// After SASL success (or a XEP-0225 restart): bytes already received after the
        /// element are the start of the new stream.
        public static let carryingOverPendingInput = Restart(rejectsPendingInput: false)
        /// After STARTTLS: bytes already received after the element are refused with a
        /// `policy-violation` stream error, since the new stream must come through TLS.
        public static let rejectingPendingInput = Restart(rejectsPendingInput: true)
    }

    private enum State {
        case open
        case failed
        case closed
    }

    private let parser: XMLStreamParser
    private var encoder: XMLStreamEncoder
    private var state = State.open
    /// Encoded frames not yet handed to the next handler (until the next flush).
    private var pendingOutput = ""
    private var pendingPromises: [EventLoopPromise<Void>] = []
    /// Our `</stream:stream>` was written: nothing more may follow it on this stream.
    private var closeWritten = false
    private var peerHeader: StreamHeader?
    private var decoding = false

    /// An outbound user event: the peer is authenticated, so the pre-authentication stanza
    /// limit (``XMLStreamLimits/maxStanzaSizeBeforeAuthentication``) no longer applies. The
    /// negotiation handlers send it when negotiation succeeds.
    public struct Authenticated: Hashable, Sendable {
        /// Creates the event.
        public init() {}
    }

    /// Creates the handler.
    /// - Parameters:
    ///   - contentNamespace: The content namespace of the streams written (used for elements
    ///     written before a header, and for the header sent with an early stream error).
    ///   - limits: The limits enforced on the peer's input.
    ///   - authenticated: Whether the peer counts as authenticated from the start; when
    ///     `false`, stanzas are held to ``XMLStreamLimits/maxStanzaSizeBeforeAuthentication``
    ///     until an ``Authenticated`` event.
    public init(contentNamespace: String, limits: XMLStreamLimits = .default, authenticated: Bool = true) {
        self.parser = XMLStreamParser(limits: limits, authenticated: authenticated)
        self.encoder = XMLStreamEncoder(contentNamespace: contentNamespace)
    }

    // MARK: Inbound

    /// Parses the bytes and fires one `channelRead` per event.
    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .open = self.state else { return }
        let buffer = Self.unwrapInboundIn(data)
        buffer.withUnsafeReadableBytes { self.parser.feed($0) }
        // A handler may (in theory) cause a re-entrant read; the outer loop then drains it.
        guard !self.decoding else { return }
        self.decoding = true
        defer { self.decoding = false }
        do {
            while case .open = self.state, let event = try self.parser.nextEvent() {
                if case .streamOpened(let header) = event {
                    self.peerHeader = header
                }
                context.fireChannelRead(Self.wrapInboundOut(event))
            }
        } catch {
            self.fail(context: context, error: error)
        }
    }

    /// Marks the stream closed and passes the event on.
    public func channelInactive(context: ChannelHandlerContext) {
        self.state = .closed
        context.fireChannelInactive()
    }

    // MARK: Outbound

    /// Encodes a frame into the output of the current flush.
    ///
    /// Frames written between two flushes go out as one buffer (one `writev` entry, one
    /// run of TLS records) instead of one buffer each: measured, about 1 µs less per stanza
    /// when a component answers a batch of stanzas. Each write's promise completes with
    /// the buffer's.
    ///
    /// Nothing is written after our `</stream:stream>`: a later frame (a handler answering
    /// late) fails its promise with `ChannelError.outputClosed` instead of going out behind
    /// the close, where the peer would read it as a protocol violation.
    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let frame = Self.unwrapOutboundIn(data)
        switch frame {
        case .header:
            self.closeWritten = false
        case .close:
            guard !self.closeWritten else {
                promise?.succeed()
                return
            }
            self.closeWritten = true
        case .element, .whitespace:
            guard !self.closeWritten else {
                promise?.fail(ChannelError.outputClosed)
                return
            }
        }
        self.encoder.encode(frame, into: &self.pendingOutput)
        if let promise { self.pendingPromises.append(promise) }
    }

    /// Writes what was encoded since the last flush, then flushes.
    public func flush(context: ChannelHandlerContext) {
        self.writePendingOutput(context: context)
        context.flush()
    }

    /// Hands what was encoded so far to the next handler (without flushing): before a
    /// close, a restart or a stream error, so that order is kept.
    private func writePendingOutput(context: ChannelHandlerContext) {
        guard !self.pendingOutput.isEmpty else { return }
        let buffer = context.channel.allocator.buffer(string: self.pendingOutput)
        self.pendingOutput.removeAll(keepingCapacity: self.pendingOutput.utf8.count <= 1 << 16)
        let promises = self.pendingPromises
        self.pendingPromises.removeAll(keepingCapacity: true)
        switch promises.count {
        case 0:
            context.write(Self.wrapOutboundOut(buffer), promise: nil)
        case 1:
            context.write(Self.wrapOutboundOut(buffer), promise: promises[0])
        default:
            let promise = context.eventLoop.makePromise(of: Void.self)
            promise.futureResult.whenComplete { result in
                for each in promises { each.completeWith(result) }
            }
            context.write(Self.wrapOutboundOut(buffer), promise: promise)
        }
    }

    /// Writes what is pending (so that NIO fails it if it cannot go out), then closes.
    public func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        self.writePendingOutput(context: context)
        context.close(mode: mode, promise: promise)
    }

    /// Fails writes never flushed when the handler goes away.
    public func handlerRemoved(context: ChannelHandlerContext) {
        self.pendingOutput = ""
        let promises = self.pendingPromises
        self.pendingPromises = []
        for promise in promises { promise.fail(ChannelError.ioOnClosedChannel) }
    }

    /// Carries out a ``Restart``; other events are passed on.
    public func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?) {
        if event is Authenticated {
            self.parser.markAuthenticated()
            promise?.succeed()
            return
        }
        guard let restart = event as? Restart else {
            context.triggerUserOutboundEvent(event, promise: promise)
            return
        }
        do {
            try self.restart(restart, context: context)
            promise?.succeed()
        } catch {
            promise?.fail(XMLStreamHandlerError(streamError: error))
        }
    }

    private func restart(_ restart: Restart, context: ChannelHandlerContext) throws(StreamError) {
        guard case .open = self.state else { return }
        if restart.rejectsPendingInput {
            do {
                try self.parser.restartRejectingPendingInput()
            } catch {
                self.fail(context: context, error: error)
                throw error
            }
        } else {
            self.parser.restart()
        }
        self.writePendingOutput(context: context)
        self.encoder.reset()
        self.peerHeader = nil
    }

    // MARK: Errors

    private func fail(context: ChannelHandlerContext, error: StreamError) {
        guard case .open = self.state else { return }
        self.state = .failed
        self.writePendingOutput(context: context)
        var text = ""
        if !self.encoder.headerSent {
            let header = StreamHeader(
                contentNamespace: self.encoder.contentNamespace,
                from: self.peerHeader?.to,
                version: "1.0"
            )
            self.encoder.encode(.header(header), into: &text)
        }
        self.encoder.encode(.element(error.element), into: &text)
        self.encoder.encode(.close, into: &text)
        self.closeWritten = true
        context.writeAndFlush(Self.wrapOutboundOut(context.channel.allocator.buffer(string: text)), promise: nil)
        context.fireErrorCaught(XMLStreamHandlerError(streamError: error))
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension XMLStreamHandler: Sendable {}

extension ChannelPipeline.SynchronousOperations {
    /// Adds an ``XMLStreamHandler`` at the end of the pipeline.
    /// - Parameters:
    ///   - contentNamespace: The content namespace of the streams written.
    ///   - limits: The limits enforced on the peer's input.
    ///   - authenticated: Whether the peer counts as authenticated from the start (see
    ///     ``XMLStreamHandler/init(contentNamespace:limits:authenticated:)``).
    /// - Returns: The handler, to keep for later use.
    @discardableResult
    public func addXMLStreamHandler(
        contentNamespace: String,
        limits: XMLStreamLimits = .default,
        authenticated: Bool = true
    ) throws -> XMLStreamHandler {
        let handler = XMLStreamHandler(contentNamespace: contentNamespace, limits: limits, authenticated: authenticated)
        try self.addHandler(handler)
        return handler
    }
}
