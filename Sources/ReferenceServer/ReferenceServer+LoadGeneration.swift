public import XMPPCore

// Load generation for benchmarks: the same routing as ``ReferenceServer/inject(_:)`` and
// ``ReferenceServer/userStanzas()``, without a write-and-flush and an `AsyncStream` hop per
// stanza, so that the harness is not the bottleneck it measures.
extension ReferenceServer {
    /// Sends many stanzas as if users of the server had sent them: routed as by
    /// ``inject(_:)``, written in order, with one flush per component stream at the end.
    ///
    /// Call it on the event loop of the target streams to avoid one hop per stanza.
    /// - Parameter elements: Stanzas as for ``inject(_:)``.
    /// - Throws: ``ReferenceServerError`` of kind ``ReferenceServerError/Kind/invalidInjection``
    ///   (nothing is sent then).
    public func inject(contentsOf elements: [Element]) throws {
        try self.router.inject(contentsOf: elements)
    }

    /// Sets (or, with `nil`, removes) a function called with every stanza for the server's
    /// users, synchronously on the event loop of the stream it came from, before the
    /// ``userStanzas()`` subscribers see it. For load generators; it must not block.
    /// - Parameter observer: The function, or `nil`.
    public func observeUserStanzas(_ observer: (@Sendable (Element) -> Void)?) {
        self.router.setUserObserver(observer)
    }
}
