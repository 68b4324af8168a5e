import NIOCore
import XMPPCore

/// The live instances of one component domain and the choice of which one gets a stanza
/// (``RoutingAlgorithm``): I/O-free, kept by ``ComponentRoutingTable``.
struct DomainInstances: Sendable {
    typealias SessionID = ComponentRoutingTable.SessionID

    /// One instance: a stream and the resource it bound (`nil` for the bare domain).
    struct ID: Hashable, Sendable {
        var session: SessionID
        var resource: String?
    }

    struct Instance: Hashable, Sendable {
        var id: ID
        /// What the stream asked for and was answered with (`domain` or `domain/resource`).
        var hostname: String
        var weight: Int
        /// The activity clock's value when the instance last sent a stanza (0: never).
        var lastActive: UInt64 = 0
        /// Smooth weighted round-robin's running value.
        var current = 0
    }

    /// Most instances a domain may have; one more is refused with `resource-constraint`.
    static let maximumInstances = 64
    /// Most remote JIDs remembered for affinity; the oldest are forgotten past it.
    static let maximumAffinities = 65_536

    var algorithm: RoutingAlgorithm
    private(set) var instances: [Instance] = []
    private var cursor = 0
    private var clock: UInt64 = 0
    private var affinity: [String: ID] = [:]
    private var affinityOrder = CircularBuffer<String>()

    init(algorithm: RoutingAlgorithm) {
        self.algorithm = algorithm
    }

    var isEmpty: Bool { self.instances.isEmpty }

    func instance(_ id: ID) -> Instance? {
        self.instances.first { $0.id == id }
    }

    /// Instances of a session, in bind order.
    func instances(of session: SessionID) -> [Instance] {
        self.instances.filter { $0.id.session == session }
    }

    /// Which of a stream's instances a stanza it sent comes from: the one `from` names
    /// (`domain/resource`, or the bare domain), else the stream's first instance of the
    /// domain; `nil` when the stream has none (the `from` is not its to use).
    func sender(session: SessionID, from: JID) -> ID? {
        var first: ID?
        for instance in self.instances where instance.id.session == session {
            if from.localpart == nil, instance.id.resource == from.resourcepart { return instance.id }
            if first == nil { first = instance.id }
        }
        return first
    }

    /// The instance with this resource (any session).
    func instance(resource: String?) -> Instance? {
        self.instances.first { $0.id.resource == resource }
    }

    enum AddResult: Equatable {
        case added
        case updated
        case conflict
        case full
    }

    mutating func add(_ id: ID, hostname: String, weight: Int) -> AddResult {
        if let index = self.instances.firstIndex(where: { $0.id.resource == id.resource }) {
            guard self.instances[index].id.session == id.session else { return .conflict }
            self.instances[index].weight = weight
            self.instances[index].hostname = hostname
            return .updated
        }
        guard self.instances.count < Self.maximumInstances else { return .full }
        self.instances.append(Instance(id: id, hostname: hostname, weight: weight))
        return .added
    }

    /// Removes an instance; its affinities move on their next stanza.
    @discardableResult
    mutating func remove(_ id: ID) -> Instance? {
        guard let index = self.instances.firstIndex(where: { $0.id == id }) else { return nil }
        for other in self.instances.indices { self.instances[other].current = 0 }
        return self.instances.remove(at: index)
    }

    /// Records that an instance sent a stanza (for `mostactive`).
    mutating func noteActivity(_ id: ID) {
        guard let index = self.instances.firstIndex(where: { $0.id == id }) else { return }
        self.clock += 1
        self.instances[index].lastActive = self.clock
    }

    /// The instances a stanza from `from` goes to: one, or (``RoutingAlgorithm/all``, not
    /// for IQ requests) every one. Empty when the domain has none.
    mutating func select(from: String?, isIQRequest: Bool) -> [Instance] {
        guard !self.instances.isEmpty else { return [] }
        if self.instances.count == 1 { return self.instances }
        switch self.algorithm {
        case .all:
            return isIQRequest ? [self.nextRoundRobin()] : self.instances
        case .mostActive:
            var best = self.instances[0]
            for instance in self.instances.dropFirst() where instance.lastActive > best.lastActive {
                best = instance
            }
            return [best]
        case .roundRobin:
            return [self.nextRoundRobin()]
        case .weighted:
            return [self.nextWeighted()]
        case .affinity:
            guard let from else { return [self.nextRoundRobin()] }
            if let id = self.affinity[from], let instance = self.instance(id) {
                return [instance]
            }
            let chosen = self.nextRoundRobin()
            self.remember(from, chosen.id)
            return [chosen]
        }
    }

    private mutating func nextRoundRobin() -> Instance {
        let instance = self.instances[self.cursor % self.instances.count]
        self.cursor = (self.cursor + 1) % self.instances.count
        return instance
    }

    /// Smooth weighted round-robin (as nginx): exact proportions over each cycle of
    /// total-weight picks, and no instance gets a long run.
    private mutating func nextWeighted() -> Instance {
        var total = 0
        var best = 0
        for index in self.instances.indices {
            self.instances[index].current += self.instances[index].weight
            total += self.instances[index].weight
            if self.instances[index].current > self.instances[best].current { best = index }
        }
        self.instances[best].current -= total
        return self.instances[best]
    }

    private mutating func remember(_ from: String, _ id: ID) {
        if self.affinity.updateValue(id, forKey: from) == nil {
            self.affinityOrder.append(from)
        }
        while self.affinityOrder.count > Self.maximumAffinities {
            let oldest = self.affinityOrder.removeFirst()
            self.affinity.removeValue(forKey: oldest)
        }
    }
}
