public import NIOCore

/// A SwiftNIO handler that runs TLS over system OpenSSL 3, using memory BIOs.
///
/// Place it in front of the handlers that speak plaintext. It may be added to a channel that is already
/// active (STARTTLS): the handshake then starts in `handlerAdded`; otherwise it starts in `channelActive`.
///
/// - Plaintext written before the handshake completes is buffered and sent, with its promises honoured,
///   once it completes.
/// - On completion the handler fires ``TLSEvent/handshakeCompleted(_:)`` as a user inbound event and
///   sets ``sessionInfo``.
/// - `close(mode: .all)` sends `close_notify` and then closes the channel, after at most the shutdown
///   timeout; it does not wait for the peer's `close_notify`.
/// - Failures are reported with `fireErrorCaught` as a ``TLSError`` and the channel is then closed. A
///   connection that ends without the peer's `close_notify` is reported as ``TLSError/uncleanShutdown``.
public final class OpenSSLHandler: ChannelDuplexHandler, RemovableChannelHandler {
    /// Ciphertext from the network.
    public typealias InboundIn = ByteBuffer
    /// Plaintext for the next handler.
    public typealias InboundOut = ByteBuffer
    /// Plaintext from the application.
    public typealias OutboundIn = ByteBuffer
    /// Ciphertext for the network.
    public typealias OutboundOut = ByteBuffer

    private enum State {
        /// Added to the pipeline; the handshake has not started.
        case idle
        case handshaking
        case active
        /// `close_notify` sent; waiting for it to be written before closing.
        case closing
        case closed
    }

    private struct PendingWrite {
        var data: ByteBuffer
        var promise: EventLoopPromise<Void>?
    }

    private let tlsContext: OpenSSLContext
    private let serverName: String?
    private let shutdownTimeout: TimeAmount
    private var connection: OpenSSLConnection?
    private var state: State = .idle
    private var pendingWrites: CircularBuffer<PendingWrite> = []
    /// How many of `pendingWrites` (from the front) have been flushed by the application.
    private var flushedPendingCount = 0
    private var receivedCloseNotify = false
    private var shutdownTimer: Scheduled<Void>?

    /// What the handshake negotiated; `nil` until it completes.
    public private(set) var sessionInfo: TLSSessionInfo?

    /// Creates a handler for one connection.
    ///
    /// - Parameters:
    ///   - context: The shared context; it decides whether this side is the client or the server.
    ///   - serverName: For a client, overrides the context's server name (SNI and verification).
    ///   - shutdownTimeout: The longest a `close` waits for the `close_notify` alert to be written.
    public init(context: OpenSSLContext, serverName: String? = nil, shutdownTimeout: TimeAmount = .seconds(5)) {
        self.tlsContext = context
        self.serverName = serverName
        self.shutdownTimeout = shutdownTimeout
    }

    // MARK: Lifecycle

    /// Creates the OpenSSL connection and, if the channel is already active, starts the handshake.
    public func handlerAdded(context: ChannelHandlerContext) {
        do {
            self.connection = try OpenSSLConnection(context: self.tlsContext, serverName: self.serverName)
        } catch {
            self.fail(error, context: context)
            return
        }
        if context.channel.isActive {
            self.startHandshake(context: context)
        }
    }

    /// Fails buffered writes and cancels the shutdown timer.
    public func handlerRemoved(context: ChannelHandlerContext) {
        self.shutdownTimer?.cancel()
        self.shutdownTimer = nil
        self.failPendingWrites(ChannelError.ioOnClosedChannel)
    }

    /// Starts the handshake and forwards the event.
    public func channelActive(context: ChannelHandlerContext) {
        self.startHandshake(context: context)
        context.fireChannelActive()
    }

    /// Reports a close during the handshake or without `close_notify`, then forwards the event.
    public func channelInactive(context: ChannelHandlerContext) {
        let previous = self.state
        self.state = .closed
        self.shutdownTimer?.cancel()
        self.shutdownTimer = nil
        switch previous {
        case .idle, .handshaking:
            self.failPendingWrites(TLSError.closedDuringHandshake)
            if case .handshaking = previous {
                context.fireErrorCaught(TLSError.closedDuringHandshake)
            }
        case .active:
            self.failPendingWrites(ChannelError.ioOnClosedChannel)
            if !self.receivedCloseNotify {
                context.fireErrorCaught(TLSError.uncleanShutdown)
            }
        case .closing, .closed:
            self.failPendingWrites(ChannelError.ioOnClosedChannel)
        }
        context.fireChannelInactive()
    }

    // MARK: Inbound

    /// Decrypts ciphertext, drives the handshake and forwards plaintext.
    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = self.unwrapInboundIn(data)
        guard let connection = self.connection else { return }
        switch self.state {
        case .idle:
            connection.feed(buffer)
            self.startHandshake(context: context)
        case .handshaking:
            connection.feed(buffer)
            self.continueHandshake(context: context)
        case .active:
            connection.feed(buffer)
            self.readPlaintext(context: context)
        case .closing, .closed:
            // After our close_notify the application no longer wants data.
            break
        }
    }

    // MARK: Outbound

    /// Buffers plaintext until the next flush (or the end of the handshake).
    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch self.state {
        case .idle, .handshaking, .active:
            self.pendingWrites.append(PendingWrite(data: self.unwrapOutboundIn(data), promise: promise))
        case .closing, .closed:
            promise?.fail(ChannelError.ioOnClosedChannel)
        }
    }

    /// Encrypts the buffered plaintext and writes it as one buffer; before the handshake completes, remembers the flush.
    public func flush(context: ChannelHandlerContext) {
        self.flushedPendingCount = self.pendingWrites.count
        if case .active = self.state {
            self.encryptFlushedWrites(context: context)
        }
    }

    /// For `.all`: sends `close_notify` (if the handshake completed) and then closes, bounded by the shutdown timeout.
    public func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        guard mode == .all else {
            context.close(mode: mode, promise: promise)
            return
        }
        switch self.state {
        case .active:
            self.state = .closing
            self.failPendingWrites(ChannelError.ioOnClosedChannel)
            self.connection?.shutdown()
            let closeOnce = CloseOnce(context: context, promise: promise)
            self.shutdownTimer = context.eventLoop.assumeIsolated().scheduleTask(in: self.shutdownTimeout) {
                closeOnce.close()
            }
            if let output = self.connection?.drainOutput(allocator: context.channel.allocator) {
                context.writeAndFlush(self.wrapOutboundOut(output)).assumeIsolated().whenComplete { _ in
                    closeOnce.close()
                }
            } else {
                closeOnce.close()
            }
        case .closing:
            if let promise { context.channel.closeFuture.cascade(to: promise) }
        case .idle, .handshaking, .closed:
            self.state = .closed
            self.failPendingWrites(ChannelError.ioOnClosedChannel)
            context.close(mode: mode, promise: promise)
        }
    }

    // MARK: Handshake

    private func startHandshake(context: ChannelHandlerContext) {
        guard case .idle = self.state, self.connection != nil else { return }
        self.state = .handshaking
        self.continueHandshake(context: context)
    }

    private func continueHandshake(context: ChannelHandlerContext) {
        guard let connection = self.connection else { return }
        switch connection.handshake() {
        case .wantRead:
            self.writeOutput(context: context)
        case .failed(let error):
            self.fail(error, context: context)
        case .complete:
            let info = connection.makeSessionInfo()
            self.sessionInfo = info
            self.state = .active
            self.writeOutput(context: context)
            if self.flushedPendingCount > 0 {
                self.encryptFlushedWrites(context: context)
            }
            context.fireUserInboundEventTriggered(TLSEvent.handshakeCompleted(info))
            // Application data may have arrived together with the last handshake message.
            if case .active = self.state {
                self.readPlaintext(context: context)
            }
        }
    }

    // MARK: Data

    private func readPlaintext(context: ChannelHandlerContext) {
        guard let connection = self.connection else { return }
        var plaintext = context.channel.allocator.buffer(capacity: OpenSSLConnection.maximumRecordPlaintext)
        var failure: TLSError?
        reading: while true {
            switch connection.read(into: &plaintext) {
            case .read:
                continue
            case .wantRead:
                break reading
            case .closeNotify:
                self.receivedCloseNotify = true
                break reading
            case .failed(let error):
                failure = error
                break reading
            }
        }
        if plaintext.readableBytes > 0 {
            context.fireChannelRead(self.wrapInboundOut(plaintext))
        }
        // Reading may have produced output (alerts, key-update responses).
        if case .active = self.state {
            self.writeOutput(context: context)
        }
        if let failure {
            self.fail(failure, context: context)
        } else if self.receivedCloseNotify, case .active = self.state {
            // Answer the peer's close_notify with ours and close.
            self.close(context: context, mode: .all, promise: nil)
        }
    }

    private func encryptFlushedWrites(context: ChannelHandlerContext) {
        guard let connection = self.connection else { return }
        var promises: [EventLoopPromise<Void>] = []
        while self.flushedPendingCount > 0, let write = self.pendingWrites.popFirst() {
            self.flushedPendingCount -= 1
            if let error = connection.write(write.data) {
                write.promise?.fail(error)
                for promise in promises { promise.fail(error) }
                self.fail(error, context: context)
                return
            }
            if let promise = write.promise { promises.append(promise) }
        }
        guard let output = connection.drainOutput(allocator: context.channel.allocator) else {
            for promise in promises { promise.succeed() }
            return
        }
        let writePromise: EventLoopPromise<Void>?
        switch promises.count {
        case 0: writePromise = nil
        case 1: writePromise = promises[0]
        default:
            let aggregate = context.eventLoop.makePromise(of: Void.self)
            let waiting = promises
            aggregate.futureResult.whenComplete { result in
                for promise in waiting { promise.completeWith(result) }
            }
            writePromise = aggregate
        }
        context.writeAndFlush(self.wrapOutboundOut(output), promise: writePromise)
    }

    /// Writes and flushes whatever ciphertext OpenSSL produced.
    private func writeOutput(context: ChannelHandlerContext) {
        guard let output = self.connection?.drainOutput(allocator: context.channel.allocator) else { return }
        context.writeAndFlush(self.wrapOutboundOut(output), promise: nil)
    }

    // MARK: Failure

    private func fail(_ error: any Error, context: ChannelHandlerContext) {
        if case .closed = self.state { return }
        self.state = .closed
        // Send the alert OpenSSL queued, so the peer learns why.
        if let output = self.connection?.drainOutput(allocator: context.channel.allocator) {
            context.writeAndFlush(self.wrapOutboundOut(output), promise: nil)
        }
        self.failPendingWrites(error)
        context.fireErrorCaught(error)
        context.close(promise: nil)
    }

    private func failPendingWrites(_ error: any Error) {
        self.flushedPendingCount = 0
        while let write = self.pendingWrites.popFirst() {
            write.promise?.fail(error)
        }
    }
}

@available(*, unavailable)
extension OpenSSLHandler: Sendable {}

/// Closes a channel once, from whichever of the write completion and the timeout comes first.
private final class CloseOnce {
    private let context: ChannelHandlerContext
    private var promise: EventLoopPromise<Void>?
    private var done = false

    init(context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        self.context = context
        self.promise = promise
    }

    func close() {
        guard !self.done else { return }
        self.done = true
        self.context.close(mode: .all, promise: self.promise)
        self.promise = nil
    }
}
