public import NIOCore

extension ComponentConnection {
    /// The event loop every stream, state change and handler loop of this connection runs
    /// on. Code that feeds the connection from elsewhere (a local listener relaying another
    /// process's stanzas) costs no thread hop per stanza when its channels and tasks run here
    /// too: ``send(_:)`` called on this loop writes without waiting for another thread.
    public var streamEventLoop: any EventLoop {
        self.eventLoop
    }
}
