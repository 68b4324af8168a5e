/// How the reference server spreads the stanzas of a domain bound by several instances
/// (`domain/resource` hostnames, XEP-0225 §2): XEP-0354's algorithms plus affinity.
///
/// Set per domain in ``ReferenceServerConfiguration/routingAlgorithms``; a component may
/// query and change its own domain's algorithm with XEP-0354's `<query/>` and `<cmr/>`.
/// Whatever the algorithm, a stanza addressed to one instance (`domain/resource`) goes to
/// that instance, and an IQ result or error goes to the instance that sent the request.
public enum RoutingAlgorithm: String, Sendable, CaseIterable, CustomStringConvertible {
    /// `urn:xmpp:cmr:all`: messages and presences to every instance; an IQ request (one
    /// answer) to one of them, round-robin.
    case all = "urn:xmpp:cmr:all"
    /// `urn:xmpp:cmr:mostactive`: the instance that most recently sent a stanza (the first
    /// bound while none has).
    case mostActive = "urn:xmpp:cmr:mostactive"
    /// `urn:xmpp:cmr:roundrobin`: each instance in turn.
    case roundRobin = "urn:xmpp:cmr:roundrobin"
    /// `urn:xmpp:cmr:weighted`: in proportion to the weights given at bind time (smooth
    /// weighted round-robin; the weight is the `weight` attribute in
    /// `urn:xmpp:component:balancing:0` on `<hostname/>`, 1 when absent).
    case weighted = "urn:xmpp:cmr:weighted"
    /// This project's default for a domain with several instances: a remote full JID stays
    /// on the instance it first reached while that instance lives (conversations, IQ
    /// exchanges); new JIDs are spread round-robin.
    case affinity = "urn:xmpp:component:balancing:affinity"

    /// Parses an algorithm from its XEP-0354 name (`urn:xmpp:cmr:roundrobin`) or short name
    /// (`roundrobin`, `all`, `mostactive`, `weighted`, `affinity`).
    /// - Parameter name: The name.
    public init?(name: String) {
        if let value = RoutingAlgorithm(rawValue: name) {
            self = value
            return
        }
        guard let value = RoutingAlgorithm.allCases.first(where: { $0.shortName == name.lowercased() }) else { return nil }
        self = value
    }

    /// The short name: `all`, `mostactive`, `roundrobin`, `weighted`, `affinity`.
    public var shortName: String {
        switch self {
        case .all: "all"
        case .mostActive: "mostactive"
        case .roundRobin: "roundrobin"
        case .weighted: "weighted"
        case .affinity: "affinity"
        }
    }

    /// The algorithm's namespace name.
    public var description: String { self.rawValue }
}
