import NIOCore
public import XMPPCore
import XMPPStream

/// One bound instance of a component domain, as the server sees it.
public struct BoundInstance: Hashable, Sendable {
    /// The hostname as bound (`domain` or `domain/resource`).
    public var hostname: String
    /// The weight given at bind time (1 when none was).
    public var weight: Int

    /// Creates a description of an instance.
    /// - Parameters:
    ///   - hostname: The hostname as bound.
    ///   - weight: Its weight.
    public init(hostname: String, weight: Int) {
        self.hostname = hostname
        self.weight = weight
    }
}

// Balancing and moving instances: the administrator's side of several instances per domain.
extension ReferenceServer {
    /// Every bound instance, sorted by hostname.
    public var instances: [BoundInstance] {
        self.router.instances.map { BoundInstance(hostname: $0.hostname, weight: $0.weight) }
    }

    /// The routing algorithm in force for a domain (configured, or changed by a component
    /// with XEP-0354 `<cmr/>`).
    /// - Parameter domain: The component domain.
    public func routingAlgorithm(for domain: String) -> RoutingAlgorithm {
        self.router.algorithm(for: domain)
    }

    /// Changes the routing algorithm of a domain while it has instances (as XEP-0354 `<cmr/>`
    /// does); the configured one applies again once the last instance leaves.
    /// - Parameters:
    ///   - algorithm: The new algorithm.
    ///   - domain: The component domain.
    /// - Throws: ``ReferenceServerError`` of kind ``ReferenceServerError/Kind/invalidInjection``
    ///   when the domain has no instance.
    public func setRoutingAlgorithm(_ algorithm: RoutingAlgorithm, for domain: String) throws {
        guard self.router.setAlgorithm(algorithm, for: domain) else {
            throw ReferenceServerError(.invalidInjection, "\(domain) has no bound instance")
        }
    }

    /// Drops the stream that bound `hostname` abruptly, as a crash of that instance would;
    /// its share of the domain moves to the other instances at once.
    /// - Parameter hostname: A bound hostname (`domain/resource` names one instance).
    /// - Throws: ``ReferenceServerError`` when no stream has bound it.
    public func disconnect(hostname: String) async throws {
        guard let channel = self.router.channel(boundTo: hostname) else {
            throw ReferenceServerError(.invalidInjection, "no component stream has bound \(hostname)")
        }
        try? await channel.close()
    }

    /// Orders the component stream that bound `hostname` to another server (XEP-0051):
    /// sends `<iq type='set'><query xmlns='urn:xmpp:cxf'><domain/><server/></query></iq>`
    /// from the server's domain and waits for the component's answer.
    /// - Parameters:
    ///   - hostname: A hostname bound on the stream to move (`domain/resource` names one instance).
    ///   - server: Where to reconnect: `host`, `host:port`, `[v6]:port`.
    ///   - domain: The XMPP domain of the new server (the stream's `to` and the TLS name), or
    ///     `nil` to keep this server's.
    ///   - variant: Send `urn:xmpp:cxfr` instead of `urn:xmpp:cxf`.
    ///   - timeout: How long to wait for the answer.
    /// - Returns: The component's answer (`result`, or `error` when it refused).
    /// - Throws: ``ReferenceServerError`` when no stream has bound `hostname` or no answer came in time.
    @discardableResult
    public func transfer(
        hostname: String, to server: String, domain: String? = nil, variant: Bool = false,
        timeout: Duration = .seconds(10)
    ) async throws -> IQ {
        let namespace = variant ? Namespace.connectionTransferVariant : Namespace.connectionTransfer
        var children = [Element("server", namespace: namespace, text: server)]
        if let domain {
            children.insert(Element("domain", namespace: namespace, text: domain), at: 0)
        }
        let id = "cxf-\(UInt64.random(in: 1...UInt64.max))"
        let request = IQ(type: .set, id: id, payload: Element("query", namespace: namespace, children: children))
        let answers = self.userStanzas()
        try self.send(request.element, toComponentBound: hostname)
        return try await withThrowingTaskGroup(of: IQ?.self) { group in
            group.addTask {
                for await element in answers where element.name.localName == "iq" && element["id"] == id {
                    if let iq = IQ(element) { return iq }
                }
                return nil
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            guard let answer = try await group.next() ?? nil else {
                throw ReferenceServerError(.timeout, "\(hostname) did not answer the transfer within \(timeout)")
            }
            return answer
        }
    }
}
