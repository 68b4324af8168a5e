/// A snapshot of a ``ComponentConnection``: the negotiated stream and every hostname.
public struct ComponentStatus: Hashable, Sendable {
    /// The state of one hostname.
    public enum HostnameState: String, Hashable, Sendable {
        /// Registered, waiting for a stream.
        case pending
        /// A bind request is in flight.
        case binding
        /// Bound: stanzas flow.
        case bound
        /// An unbind request is in flight.
        case unbinding
        /// No longer bound.
        case unbound
    }

    /// One hostname and its counters.
    public struct Hostname: Hashable, Sendable {
        /// The hostname (as bound by the server, once bound).
        public var hostname: String
        /// Its state.
        public var state: HostnameState
        /// Stanzas received for it.
        public var stanzasIn: Int
        /// Stanzas sent from it.
        public var stanzasOut: Int
        /// Stanzas waiting for its handler now.
        public var queuedStanzas: Int = 0
        /// Bytes of the stanzas waiting for its handler now.
        public var queuedBytes: Int = 0
    }

    /// Whether a stream is up.
    public var isConnected: Bool
    /// The negotiated stream's facts, when connected (or last connected).
    public var connection: ConnectionInfo?
    /// The last connection error, if the last attempt failed.
    public var lastError: String?
    /// The hostnames, sorted.
    public var hostnames: [Hostname]
}
