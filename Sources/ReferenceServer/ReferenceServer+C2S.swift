public import XMPPCore

// The client (c2s) port's observable state.
extension ReferenceServer {
    /// The full JIDs of the users' client sessions open now, sorted.
    public var clientSessions: [JID] {
        self.router.clients.connected
    }
}
