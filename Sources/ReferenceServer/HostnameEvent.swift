/// A change in the hostnames bound on a ``ReferenceServer`` (see ``ReferenceServer/hostnameEvents()``).
public enum HostnameEvent: Hashable, Sendable {
    /// A stream bound the hostname (XEP-0225 bind or XEP-0114 handshake).
    case bound(hostname: String)
    /// The hostname was unbound, or the stream that bound it closed.
    case unbound(hostname: String)
}
