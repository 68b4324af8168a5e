import NIOCore

/// Simulates a half-open link on one server-side stream (see
/// ``ReferenceServer/setReadingPaused(_:)``): while paused, nothing the component sends
/// reaches the server (it is dropped, as on a broken link) and the component's close goes
/// unnoticed (the FIN is swallowed), so the server keeps the stream and its hostnames.
///
/// Sits first in the pipeline, so that it sees the bytes and `inputClosed` before TLS and
/// XML. (Turning `autoRead` off is not enough: on EOF, NIO reads everything left even
/// without `autoRead`, and the server would see the close.)
final class HalfOpenLinkHandler: ChannelInboundHandler {
    typealias InboundIn = NIOAny

    private var paused = false

    /// Stops reading; from now on the link is silently broken.
    func pause(context: ChannelHandlerContext) throws {
        self.paused = true
        try context.channel.syncOptions?.setOption(ChannelOptions.allowRemoteHalfClosure, value: true)
        try context.channel.syncOptions?.setOption(ChannelOptions.autoRead, value: false)
    }

    /// The server notices the broken link: the stream is closed (its hostnames released).
    func resume(context: ChannelHandlerContext) {
        guard self.paused else { return }
        self.paused = false
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.paused else { return }
        context.fireChannelRead(data)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if self.paused, let event = event as? ChannelEvent, event == .inputClosed {
            return
        }
        context.fireUserInboundEventTriggered(event)
    }
}
