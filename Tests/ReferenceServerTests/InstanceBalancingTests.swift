import Testing
import XMPPCore

@testable import ReferenceServer

/// Several instances of one domain (`domain/resource`): who gets what under each routing
/// algorithm, with no socket (``ComponentRoutingTable``).
@Suite(.timeLimit(.minutes(1))) struct InstanceBalancingTests {
    static let identity = "component.example.test"

    static func table(_ algorithm: RoutingAlgorithm? = nil) -> ComponentRoutingTable {
        var configuration = ComponentRoutingTableTests.configuration
        configuration.allowedHostnames[identity] = ["search.example.test"]
        if let algorithm { configuration.routingAlgorithms = ["Search.Example.Test": algorithm] }
        return ComponentRoutingTable(configuration: configuration)
    }

    static func bind(_ hostname: String, weight: String? = nil) -> Element {
        var element = Element("hostname", namespace: Namespace.component, text: hostname)
        if let weight { element.setAttribute(QualifiedName(Namespace.componentBalancing, "weight"), weight) }
        return Element("bind", namespace: Namespace.component, children: [element])
    }

    static func message(from: String, to: String = "search.example.test", id: String = "m") -> Element {
        Element("message", namespace: Namespace.client, attributes: ["from": from, "to": to, "id": id, "type": "chat"])
    }

    /// Binds eu-1, eu-2, eu-3 on sessions 1, 2, 3 (weights 1, 2, 3 when `weighted`).
    static func threeInstances(_ table: inout ComponentRoutingTable, weighted: Bool = false) {
        for index in 1...3 {
            let result = table.bind(
                bind("search.example.test/eu-\(index)", weight: weighted ? "\(index)" : nil), session: UInt64(index),
                identity: identity)
            #expect(result == .success("search.example.test/eu-\(index)"))
        }
    }

    /// Routes `count` user messages (from `senders` distinct JIDs) and counts per session.
    static func spread(_ table: inout ComponentRoutingTable, count: Int, senders: Int) throws -> [UInt64: Int] {
        var counts: [UInt64: Int] = [:]
        for index in 0..<count {
            let stanza = message(from: "user\(index % senders)@example.test/r", id: "m\(index)")
            switch try table.routeFromUser(stanza) {
            case .deliver(_, let session): counts[session, default: 0] += 1
            case .deliverAll(_, let sessions): for session in sessions { counts[session, default: 0] += 1 }
            default: Issue.record("not delivered")
            }
        }
        return counts
    }

    @Test func roundRobinSharesEvenly() throws {
        var table = Self.table(.roundRobin)
        Self.threeInstances(&table)
        #expect(try Self.spread(&table, count: 3000, senders: 1) == [1: 1000, 2: 1000, 3: 1000])
    }

    @Test func weightedSharesInProportion() throws {
        var table = Self.table(.weighted)
        Self.threeInstances(&table, weighted: true)
        #expect(try Self.spread(&table, count: 3000, senders: 7) == [1: 500, 2: 1000, 3: 1500])
        #expect(table.instances.map(\.weight) == [1, 2, 3])
    }

    @Test func allDeliversToEveryInstanceButAnIQRequestToOne() throws {
        var table = Self.table(.all)
        Self.threeInstances(&table)
        #expect(try Self.spread(&table, count: 300, senders: 3) == [1: 300, 2: 300, 3: 300])
        let iq = IQ(type: .get, from: try JID("alice@example.test/r"), to: try JID("search.example.test"), id: "q1").element
        guard case .deliver = try table.routeFromUser(iq) else {
            Issue.record("an IQ request goes to one instance")
            return
        }
    }

    @Test func affinityIsTheDefaultAndHoldsAJIDWhileItsInstanceLives() throws {
        var table = Self.table()
        Self.threeInstances(&table)
        #expect(table.algorithm(for: "search.example.test") == .affinity)
        var first: [String: UInt64] = [:]
        for round in 0..<5 {
            for user in 0..<30 {
                let from = "user\(user)@example.test/r"
                guard case .deliver(_, let session) = try table.routeFromUser(Self.message(from: from)) else {
                    Issue.record("not delivered")
                    return
                }
                if round == 0 { first[from] = session } else { #expect(first[from] == session, "\(from) moved") }
            }
        }
        #expect(
            Dictionary(grouping: first.values, by: { $0 }).mapValues(\.count) == [1: 10, 2: 10, 3: 10], "new JIDs round-robin")
        // Instance 2 dies: its users move to the others at once; the others' users stay.
        #expect(table.release(session: 2) == ["search.example.test/eu-2"])
        for (from, session) in first {
            guard case .deliver(_, let now) = try table.routeFromUser(Self.message(from: from)) else {
                Issue.record("not delivered")
                return
            }
            if session == 2 { #expect(now != 2) } else { #expect(now == session, "\(from) moved although its instance lives") }
        }
    }

    @Test func anInstanceAddressedDirectlyGetsItsStanzas() throws {
        var table = Self.table(.roundRobin)
        Self.threeInstances(&table)
        for _ in 0..<5 {
            #expect(try table.routeFromUser(Self.message(from: "a@example.test/r", to: "search.example.test/eu-3")).session == 3)
        }
    }

    @Test func anIQAnswerGoesToTheInstanceThatAsked() throws {
        var table = Self.table(.roundRobin)
        Self.threeInstances(&table)
        for asker in 1...3 {
            for index in 0..<10 {
                let id = "q\(asker)-\(index)"
                let request = IQ(
                    type: .get, from: try JID("search.example.test/eu-\(asker)"), to: try JID("alice@example.test/r"), id: id)
                #expect(table.routeFromComponent(request.element, session: UInt64(asker)) == .toUsers(request.element))
                let result = IQ(type: .result, from: try JID("alice@example.test/r"), to: try JID("search.example.test"), id: id)
                #expect(try table.routeFromUser(result.element).session == UInt64(asker))
            }
        }
    }

    @Test func mostActiveFollowsTheLastSender() throws {
        var table = Self.table(.mostActive)
        Self.threeInstances(&table)
        #expect(try table.routeFromUser(Self.message(from: "a@example.test/r")).session == 1, "none active: the first")
        _ = table.routeFromComponent(Self.message(from: "search.example.test/eu-3", to: "a@example.test/r"), session: 3)
        #expect(try table.routeFromUser(Self.message(from: "a@example.test/r")).session == 3)
        _ = table.routeFromComponent(Self.message(from: "bot@search.example.test", to: "a@example.test/r"), session: 2)
        #expect(try table.routeFromUser(Self.message(from: "b@example.test/r")).session == 2)
    }

    @Test func bindRulesForInstances() {
        var table = Self.table()
        #expect(
            table.bind(Self.bind("search.example.test/eu-1"), session: 1, identity: Self.identity)
                == .success("search.example.test/eu-1"))
        #expect(
            table.bind(Self.bind("search.example.test/eu-2"), session: 1, identity: Self.identity)
                == .success("search.example.test/eu-2"), "two instances on one stream")
        #expect(table.bind(Self.bind("search.example.test/eu-1"), session: 2, identity: Self.identity).error == .conflict)
        #expect(
            table.bind(Self.bind("search.example.test"), session: 2, identity: Self.identity) == .success("search.example.test"),
            "the bare domain is an instance too")
        #expect(
            table.bind(Self.bind("search.example.test/eu-3"), session: 3, identity: "other.example.test").error == .notAllowed)
        for bad in ["0", "1001", "x", "-1", ""] {
            #expect(
                table.bind(Self.bind("search.example.test/w", weight: bad), session: 3, identity: Self.identity).error
                    == .badRequest, "weight '\(bad)'")
        }
        #expect(table.unbind(Self.bind("search.example.test/eu-2"), session: 2).error == .itemNotFound, "not this stream's")
        #expect(table.unbind(Self.bind("search.example.test/eu-2"), session: 1) == .success("search.example.test/eu-2"))
        #expect(table.boundHostnames == ["search.example.test", "search.example.test/eu-1"])
        #expect(table.release(session: 1) == ["search.example.test/eu-1"])
        #expect(table.release(session: 2) == ["search.example.test"])
        // The last instance gone: the domain bounces again.
        guard case .toUsers(let bounce) = try? table.routeFromUser(Self.message(from: "a@example.test/r")) else {
            Issue.record("expected a bounce")
            return
        }
        #expect(Message(bounce)?.error?.condition == .serviceUnavailable)
    }

    @Test func tooManyInstancesIsAResourceConstraint() {
        var table = Self.table()
        for index in 0..<DomainInstances.maximumInstances {
            #expect(table.bind(Self.bind("search.example.test/i\(index)"), session: 1, identity: Self.identity).error == nil)
        }
        #expect(
            table.bind(Self.bind("search.example.test/one-more"), session: 1, identity: Self.identity).error
                == .resourceConstraint)
    }

    @Test func customizableMessageRoutingQueryAndSet() throws {
        var table = Self.table(.roundRobin)
        Self.threeInstances(&table)
        let from = try JID("search.example.test/eu-1")
        let query = IQ(
            type: .get, from: from, to: nil, id: "s1", payload: Element("query", namespace: Namespace.customizableMessageRouting))
        guard case .reply(let answer) = table.routeFromComponent(query.element, session: 1),
            let payload = IQ(answer)?.payload
        else {
            Issue.record("expected a reply")
            return
        }
        #expect(answer["type"] == "result")
        #expect(
            payload.children("active", namespace: Namespace.customizableMessageRouting).map { $0["algorithm"] } == [
                "urn:xmpp:cmr:roundrobin"
            ])
        #expect(
            Set(payload.children("available", namespace: Namespace.customizableMessageRouting).compactMap { $0["algorithm"] })
                == Set(RoutingAlgorithm.allCases.map(\.rawValue)))

        let set = IQ(
            type: .set, from: from, to: try JID("example.test"), id: "s2",
            payload: Element(
                "cmr", namespace: Namespace.customizableMessageRouting, attributes: ["algorithm": "urn:xmpp:cmr:weighted"]))
        guard case .reply(let setAnswer) = table.routeFromComponent(set.element, session: 1) else {
            Issue.record("expected a reply")
            return
        }
        #expect(setAnswer["type"] == "result")
        #expect(setAnswer["from"] == "example.test")
        #expect(table.algorithm(for: "search.example.test") == .weighted)

        var unknown = set
        unknown.element.children = [
            .element(
                Element(
                    "cmr", namespace: Namespace.customizableMessageRouting, attributes: ["algorithm": "urn:xmpp:cmr:forkalways"]))
        ]
        guard case .reply(let refused) = table.routeFromComponent(unknown.element, session: 1) else {
            Issue.record("expected a reply")
            return
        }
        #expect(IQ(refused)?.error?.condition == .badRequest)
        #expect(table.algorithm(for: "search.example.test") == .weighted)

        // The server advertises urn:xmpp:cmr:0.
        let disco = IQ(
            type: .get, from: from, to: try JID("example.test"), id: "d1",
            payload: Element("query", namespace: Namespace.discoInfo))
        guard case .reply(let info) = table.routeFromComponent(disco.element, session: 1) else {
            Issue.record("expected a reply")
            return
        }
        #expect(
            IQ(info)?.payload?.children("feature", namespace: Namespace.discoInfo).contains { $0["var"] == "urn:xmpp:cmr:0" }
                == true)
    }

    @Test func algorithmNames() {
        #expect(RoutingAlgorithm(name: "roundrobin") == .roundRobin)
        #expect(RoutingAlgorithm(name: "urn:xmpp:cmr:weighted") == .weighted)
        #expect(RoutingAlgorithm(name: "Affinity") == .affinity)
        #expect(RoutingAlgorithm(name: "forkalways") == nil)
    }
}

extension ComponentRoutingTable.Decision {
    var session: UInt64? {
        if case .deliver(_, let session) = self { return session }
        return nil
    }
}
