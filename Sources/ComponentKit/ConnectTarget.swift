/// A server address to connect to: a host name or IP address and a port.
public struct ConnectTarget: Hashable, Sendable, CustomStringConvertible {
    /// The host name or IP address (IPv6 without brackets).
    public var host: String
    /// The TCP port.
    public var port: Int
    /// The XMPP domain of the server there, when it is not the configured one (XEP-0051
    /// `<domain/>`): the stream's `to`, the SASL service name and the TLS name verified.
    public var domain: String?

    /// Creates a target.
    /// - Parameters:
    ///   - host: The host name or IP address.
    ///   - port: The TCP port.
    ///   - domain: The server's XMPP domain there, or `nil` for the configured one.
    public init(host: String, port: Int, domain: String? = nil) {
        self.host = host
        self.port = port
        self.domain = domain
    }

    /// Parses `host`, `host:port`, `1.2.3.4:5`, `[2001:db8::1]` or `[2001:db8::1]:5270`
    /// (the forms of XEP-0051 `<server/>` and RFC 6120 `see-other-host`).
    /// - Parameters:
    ///   - text: The address.
    ///   - defaultPort: The port when none is given.
    /// - Returns: `nil` when the text is empty or the port is not 1…65535.
    public static func parse(_ text: String, defaultPort: Int) -> ConnectTarget? {
        let trimmed = text.trimmingWhitespace()
        guard !trimmed.isEmpty else { return nil }
        if trimmed.hasPrefix("[") {
            guard let close = trimmed.firstIndex(of: "]") else { return nil }
            let host = String(trimmed[trimmed.index(after: trimmed.startIndex)..<close])
            let rest = trimmed[trimmed.index(after: close)...]
            guard !host.isEmpty else { return nil }
            if rest.isEmpty { return ConnectTarget(host: host, port: defaultPort) }
            guard rest.hasPrefix(":"), let port = Int(rest.dropFirst()), (1...65535).contains(port) else { return nil }
            return ConnectTarget(host: host, port: port)
        }
        let colons = trimmed.filter { $0 == ":" }.count
        if colons == 1, let colon = trimmed.firstIndex(of: ":") {
            let host = String(trimmed[..<colon])
            guard !host.isEmpty, let port = Int(trimmed[trimmed.index(after: colon)...]), (1...65535).contains(port) else {
                return nil
            }
            return ConnectTarget(host: host, port: port)
        }
        if colons > 1 {
            // A bare IPv6 address without brackets and without a port.
            return ConnectTarget(host: trimmed, port: defaultPort)
        }
        return ConnectTarget(host: trimmed, port: defaultPort)
    }

    /// `host:port`, with IPv6 in brackets.
    public var description: String {
        self.host.contains(":") ? "[\(self.host)]:\(self.port)" : "\(self.host):\(self.port)"
    }
}
