import Testing
import XMPPCore

@testable import ComponentKit

/// Several instances of one domain on one connection, the bind weight on the wire, sticky
/// transfer targets and IQ 302 answers: no sockets.
@Suite("Instances, transfers and redirects")
struct InstanceStateTests {
    let eu1 = HostnameKey("search.example/eu-1")!
    let eu2 = HostnameKey("search.example/eu-2")!

    func bound(_ keys: [HostnameKey]) -> ConnectionStateMachine {
        var machine = ConnectionStateMachine(legacy: false)
        for key in keys { _ = machine.add(key, requested: key.description) }
        _ = try? machine.start()
        _ = machine.streamOpened(hasTLS: true)
        for key in keys {
            _ = machine.bindStarted(key, requestID: key.description)
            _ = machine.bindSucceeded(key, requestID: key.description, hostname: key.description)
        }
        return machine
    }

    @Test func instancesOnOneConnectionSplitTheDomainBySender() {
        let machine = self.bound([self.eu1, self.eu2])
        let domain = HostnameKey(address: "search.example")!
        // Addressed to an instance: that instance.
        #expect(machine.route(HostnameKey(address: "search.example/eu-2")!, from: "a@x/r") == .deliver(self.eu2, mayAnswer: true))
        // To the domain or a JID under it: one instance per sender, always the same one.
        var seen: [HostnameKey: Int] = [:]
        for user in 0..<100 {
            let sender = "user\(user)@example/r"
            guard case .deliver(let first, _) = machine.route(domain, from: sender) else {
                Issue.record("not delivered")
                return
            }
            seen[first, default: 0] += 1
            for _ in 0..<3 {
                #expect(
                    machine.route(HostnameKey(address: "bot@search.example")!, from: sender) == .deliver(first, mayAnswer: true))
            }
        }
        #expect(seen.count == 2, "both instances get senders: \(seen)")
        // `domain/other` (no such instance) is served like the domain, not dropped.
        guard case .deliver = machine.route(HostnameKey(address: "search.example/eu-9")!, from: "a@x/r") else {
            Issue.record("domain/other was not served")
            return
        }
        // Sending from the bare domain leaves through a bound instance.
        #expect(machine.send(from: domain) == .write(self.eu1))
        #expect(machine.send(from: self.eu2) == .write(self.eu2))
    }

    @Test func aPendingInstanceGetsNothingWhileAnotherIsBound() {
        var machine = self.bound([self.eu1])
        _ = machine.add(self.eu2, requested: self.eu2.description)
        for user in 0..<20 {
            #expect(
                machine.route(HostnameKey(address: "search.example")!, from: "u\(user)@x/r")
                    == .deliver(self.eu1, mayAnswer: true))
        }
    }

    @Test func theWeightTravelsOnTheHostnameElement() {
        let request = HostnameBinding.bindRequest(id: "b1", hostname: "search.example/eu-1", weight: 3)
        let hostname = request.element.firstChild("bind", namespace: Namespace.component)?
            .firstChild("hostname", namespace: Namespace.component)
        #expect(hostname?.attribute(QualifiedName(Namespace.componentBalancing, "weight")) == "3")
        #expect(hostname?.text == "search.example/eu-1")
        let serialized = request.element.serialized(streamNamespace: Namespace.client)
        #expect(serialized.contains("urn:xmpp:component:balancing:0"), "\(serialized)")
        let plain = HostnameBinding.bindRequest(id: "b2", hostname: "search.example")
        #expect(
            plain.element.firstChild("bind", namespace: Namespace.component)?.firstChild(
                "hostname", namespace: Namespace.component)?.attributes.isEmpty == true)
    }

    @Test func aTransferTargetIsStickyUntilForgotten() {
        var machine = self.bound([self.eu1])
        let configured = ConnectTarget(host: "configured", port: 5270)
        let moved = ConnectTarget(host: "node2", port: 5271, domain: "other.example")
        #expect(machine.nextTarget(configured: configured) == configured)
        machine.transferSucceeded(moved)
        for _ in 0..<3 {
            #expect(machine.nextTarget(configured: configured) == moved)
        }
        // A see-other-host from there keeps the transfer's domain, for one connection.
        let redirect = machine.seeOtherHost(ConnectTarget(host: "node3", port: 5272), fromStreamWithTLS: true)
        #expect(redirect == .follow(ConnectTarget(host: "node3", port: 5272, domain: "other.example")))
        #expect(machine.nextTarget(configured: configured).host == "node3")
        #expect(machine.nextTarget(configured: configured) == moved)
        machine.forgetTransferTarget()
        #expect(machine.nextTarget(configured: configured) == configured)
    }

    @Test func aRedirectAnswerIsValidAndOnlyForGets() throws {
        let request = IQ(
            type: .get, from: try JID("alice@example/phone"), to: try JID("search.example/eu-1"), id: "q1",
            payload: Element("query", namespace: "urn:example:state"))
        let answer = try IQRedirect.answer(redirecting: request, to: try JID("search.example/eu-2"))
        #expect(answer.type == .error)
        #expect(answer.element["to"] == "alice@example/phone")
        #expect(answer.element["from"] == "search.example/eu-1")
        #expect(answer.error?.condition == .redirect)
        #expect(answer.error?.redirectURI == "xmpp:search.example/eu-2")
        #expect(answer.error?.legacyCode == 302)
        let redirected = try #require(IQRedirect.redirectedQuery(in: answer))
        try IQRedirect.validate(original: request, redirected: redirected)
        #expect(redirected.payload == request.payload)
        #expect(answer.element.elements.count == 1, "only <error/>")

        var set = request
        set.element["type"] = "set"
        #expect(throws: ComponentError.self) {
            try IQRedirect.answer(redirecting: IQ(set.element)!, to: try JID("search.example/eu-2"))
        }
        #expect(throws: ComponentError.self) { try IQRedirect.answer(redirecting: request, to: try JID("search.example/eu-1")) }
    }
}
