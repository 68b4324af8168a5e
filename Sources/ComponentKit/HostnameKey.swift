/// The identity of a hostname on a connection, and the one way to compute it.
///
/// A component binds a domain (`search.example.com`) or an instance of a domain
/// (`search.example.com/eu-1`, XEP-0225 §2). Two spellings of the same hostname
/// have the same key: the domain is compared lowercased and without a trailing dot; the
/// resource, when there is one, is kept as written (resources are case-sensitive).
///
/// ``ComponentConnection``, the host and its reload plan all key hostnames by this type,
/// so that `Echo.Example.COM` and `echo.example.com` can never be two bindings.
///
/// ```swift
/// HostnameKey("Echo.Example.com.")  // echo.example.com
/// HostnameKey("search.example.com/eu-1")?.resource  // "eu-1"
/// HostnameKey(address: "alice@echo.example.com/phone")  // echo.example.com
/// ```
public struct HostnameKey: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The domain, lowercased, without a trailing dot.
    public let domain: String
    /// The instance's resource for a `domain/resource` hostname; `nil` for a domain.
    public let resource: String?

    /// Creates a key from its parts.
    /// - Parameters:
    ///   - domain: The domain; lowercased and stripped of a trailing dot here.
    ///   - resource: The instance's resource, if any (an empty resource counts as none).
    public init(domain: String, resource: String? = nil) {
        self.init(domain: Substring(domain), resource: resource.map { Substring($0) })
    }

    /// The hot path (every stanza in and out): bytes, not `Character`s, and no new string
    /// when the domain is already lowercase ASCII without a trailing dot.
    private init(domain: Substring, resource: Substring?) {
        var domain = domain
        if domain.utf8.last == UInt8(ascii: ".") { domain = domain.dropLast() }
        let needsLowercasing = domain.utf8.contains { $0 >= 0x80 || ($0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z")) }
        self.domain = needsLowercasing ? domain.lowercased() : String(domain)
        self.resource = resource.flatMap { $0.isEmpty ? nil : String($0) }
    }

    /// The key of a hostname as configured or requested: `domain` or `domain/resource`.
    ///
    /// Returns `nil` for an empty domain or an address with a localpart (a component
    /// binds domains, not `user@domain`). This is not a full RFC 7622 check: hostnames are
    /// validated where they enter (``ComponentConnection/bind(_:handler:)``, the host's
    /// configuration).
    /// - Parameter hostname: The hostname.
    public init?(_ hostname: String) {
        let (local, domain, resource) = Self.split(hostname)
        guard local == nil, !domain.isEmpty, domain != "." else { return nil }
        self.init(domain: domain, resource: resource)
    }

    /// The key under which a stanza addressed to (or sent from) `address` is routed.
    ///
    /// For `user@domain/resource` and `user@domain` that is the domain (the hostname serves
    /// every JID under it); for `domain/resource` it is that instance; for `domain`, the
    /// domain.
    /// - Parameter address: A JID as found in a stanza's `to` or `from`.
    public init?(address: String) {
        let (local, domain, resource) = Self.split(address)
        guard !domain.isEmpty, domain != "." else { return nil }
        self.init(domain: domain, resource: local == nil ? resource : nil)
    }

    /// The key of the domain alone (the instance's resource dropped).
    public var domainKey: HostnameKey {
        self.resource == nil ? self : HostnameKey(domain: self.domain)
    }

    /// `domain` or `domain/resource`.
    public var description: String {
        guard let resource = self.resource else { return self.domain }
        return "\(self.domain)/\(resource)"
    }

    /// Orders by domain, then resource (a domain before its instances).
    public static func < (lhs: HostnameKey, rhs: HostnameKey) -> Bool {
        if lhs.domain != rhs.domain { return lhs.domain < rhs.domain }
        return (lhs.resource ?? "") < (rhs.resource ?? "")
    }

    private static func split(_ address: String) -> (local: Substring?, domain: Substring, resource: Substring?) {
        // Scanned as UTF-8: '/' and '@' are ASCII, so byte offsets are character boundaries.
        let utf8 = address.utf8
        var end = utf8.endIndex
        var resource: Substring?
        if let slash = utf8.firstIndex(of: UInt8(ascii: "/")) {
            resource = address[utf8.index(after: slash)...]
            end = slash
        }
        var start = utf8.startIndex
        var local: Substring?
        if let at = utf8[..<end].lastIndex(of: UInt8(ascii: "@")) {
            local = address[start..<at]
            start = utf8.index(after: at)
        }
        return (local, address[start..<end], resource)
    }
}
