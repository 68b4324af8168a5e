import Testing
import XMPPCore

@testable import ReferenceServer

@Suite struct ComponentRoutingTableTests {
    static var configuration: ReferenceServerConfiguration {
        var configuration = ReferenceServerConfiguration(
            domain: "example.test", tls: nil, sasl: .init(sasldbPath: "/nonexistent"))
        configuration.allowedHostnames = ["component.example.test": ["a.example.test", "*.b.example.test"]]
        configuration.legacySecrets = ["legacy.example.test": "x"]
        return configuration
    }

    func bindPayload(_ hostname: String?, _ name: String = "bind") -> Element {
        Element(
            name, namespace: Namespace.component,
            children: hostname.map { [Element("hostname", namespace: Namespace.component, text: $0)] } ?? [])
    }

    func message(from: String?, to: String?, type: String? = nil) -> Element {
        var element = Element("message", namespace: Namespace.client)
        element["from"] = from
        element["to"] = to
        element["type"] = type
        return element
    }

    /// XEP-0198: a dead stream's unacknowledged stanza goes to another instance; with none
    /// left, its bounce goes to its sender by address: a user, or a live component instance.
    @Test func redeliveryRoutesAgainOrBouncesToTheSender() throws {
        var table = ComponentRoutingTable(configuration: Self.configuration)
        let identity = "component.example.test"
        #expect(table.bind(bindPayload("x.b.example.test/r1"), session: 1, identity: identity) == .success("x.b.example.test/r1"))
        #expect(table.bind(bindPayload("x.b.example.test/r2"), session: 2, identity: identity) == .success("x.b.example.test/r2"))
        #expect(table.bind(bindPayload("a.example.test"), session: 3, identity: identity) == .success("a.example.test"))
        let fromUser = message(from: "alice@example.test/r", to: "x.b.example.test/r1")
        let fromComponent = message(from: "a.example.test", to: "x.b.example.test")
        _ = table.release(session: 1)
        #expect(table.redeliver(fromUser) == .deliver(fromUser, to: 2), "the other instance, though addressed to r1")
        _ = table.release(session: 2)
        guard case .toUsers(let bounce) = table.redeliver(fromUser) else {
            Issue.record("a user's stanza bounces to the users")
            return
        }
        #expect(Message(bounce)?.error?.condition == .serviceUnavailable)
        guard case .deliver(let error, to: 3) = table.redeliver(fromComponent) else {
            Issue.record("a component's stanza bounces to its live instance")
            return
        }
        #expect(error["type"] == "error" && error["to"] == "a.example.test")
        _ = table.release(session: 3)
        #expect(table.redeliver(fromComponent) == .drop, "no error about an error, nowhere to send it")
        #expect(table.redeliver(message(from: "alice@example.test/r", to: "x.b.example.test", type: "error")) == .drop)
    }

    @Test func bindRules() {
        var table = ComponentRoutingTable(configuration: Self.configuration)
        let identity = "component.example.test"
        #expect(table.bind(bindPayload("a.example.test"), session: 1, identity: identity) == .success("a.example.test"))
        #expect(
            table.bind(bindPayload("a.example.test"), session: 1, identity: identity) == .success("a.example.test"), "idempotent")
        #expect(
            table.bind(bindPayload("x.y.b.example.test/r1"), session: 1, identity: identity) == .success("x.y.b.example.test/r1"))
        #expect(
            table.bind(bindPayload("x.y.b.example.test/r2"), session: 2, identity: identity) == .success("x.y.b.example.test/r2"),
            "another instance of the domain, on another stream")
        #expect(
            table.bind(bindPayload("x.y.b.example.test/r2"), session: 3, identity: identity).error == .conflict,
            "the same instance on another stream")
        #expect(table.bind(bindPayload("a.example.test"), session: 2, identity: identity).error == .conflict)
        #expect(
            table.bind(bindPayload("b.example.test"), session: 1, identity: identity).error == .notAllowed,
            "wildcard excludes the parent")
        #expect(table.bind(bindPayload("a.example.test"), session: 3, identity: "other.example.test").error == .notAllowed)
        #expect(table.bind(bindPayload(nil), session: 1, identity: identity).error == .badRequest)
        #expect(table.bind(bindPayload("user@a.example.test"), session: 1, identity: identity).error == .badRequest)
        #expect(table.bind(bindPayload("bad host"), session: 1, identity: identity).error == .badRequest)
        #expect(table.boundHostnames == ["a.example.test", "x.y.b.example.test/r1", "x.y.b.example.test/r2"])

        #expect(table.unbind(bindPayload("a.example.test", "unbind"), session: 2).error == .itemNotFound)
        #expect(table.unbind(bindPayload("a.example.test", "unbind"), session: 1) == .success("a.example.test"))
        #expect(table.unbind(bindPayload("a.example.test", "unbind"), session: 1).error == .itemNotFound)
        #expect(table.release(session: 1) == ["x.y.b.example.test/r1"])
        #expect(table.boundHostnames == ["x.y.b.example.test/r2"])
        #expect(table.release(session: 2) == ["x.y.b.example.test/r2"])
        #expect(table.boundHostnames.isEmpty)
    }

    @Test func routing() throws {
        var table = ComponentRoutingTable(configuration: Self.configuration)
        _ = table.bind(bindPayload("a.example.test"), session: 1, identity: "component.example.test")
        let first = table.bindLegacy("legacy.example.test", session: 2)
        let second = table.bindLegacy("legacy.example.test", session: 3)
        #expect(first)
        #expect(!second)

        let toLegacy = message(from: "bot@a.example.test", to: "room@legacy.example.test")
        #expect(table.routeFromComponent(toLegacy, session: 1) == .deliver(toLegacy, to: 2))
        let toUser = message(from: "a.example.test", to: "alice@example.test")
        #expect(table.routeFromComponent(toUser, session: 1) == .toUsers(toUser))
        #expect(
            table.routeFromComponent(message(from: "legacy.example.test", to: "x@example.test"), session: 1).streamErrorCondition
                == .invalidFrom)
        #expect(
            table.routeFromComponent(message(from: nil, to: "x@example.test"), session: 1).streamErrorCondition
                == .improperAddressing)
        #expect(
            table.routeFromComponent(Element("foo", namespace: "urn:x"), session: 1).streamErrorCondition
                == .unsupportedStanzaType)
        guard case .reply(let noTo) = table.routeFromComponent(message(from: "a.example.test", to: nil), session: 1) else {
            Issue.record("expected a bad-request reply")
            return
        }
        #expect(Message(noTo)?.error?.condition == .badRequest)
        // Unbound component hostname: bounce, except errors.
        guard
            case .reply(let bounce) = table.routeFromComponent(
                message(from: "a.example.test", to: "x.b.example.test"), session: 1)
        else {
            Issue.record("expected a bounce")
            return
        }
        #expect(Message(bounce)?.error?.condition == .serviceUnavailable)
        #expect(bounce["to"] == "a.example.test")
        #expect(
            table.routeFromComponent(message(from: "a.example.test", to: "x.b.example.test", type: "error"), session: 1) == .drop)
        let result = IQ(type: .result, from: try JID("a.example.test"), to: try JID("x.b.example.test"), id: "1").element
        #expect(table.routeFromComponent(result, session: 1) == .drop)

        // From users.
        let injected = message(from: "alice@example.test/phone", to: "bot@a.example.test")
        #expect(try table.routeFromUser(injected) == .deliver(injected, to: 1))
        guard case .toUsers(let userBounce) = try table.routeFromUser(message(from: "alice@example.test", to: "x.b.example.test"))
        else {
            Issue.record("expected a bounce to users")
            return
        }
        #expect(Message(userBounce)?.error?.condition == .serviceUnavailable)
        #expect(throws: ReferenceServerError.self) {
            try table.routeFromUser(message(from: "bot@a.example.test", to: "a.example.test"))
        }
        #expect(throws: ReferenceServerError.self) {
            try table.routeFromUser(message(from: "example.test", to: "a.example.test"))
        }
        #expect(throws: ReferenceServerError.self) { try table.routeFromUser(message(from: "alice@example.test", to: nil)) }
    }
}

extension Result where Success == String, Failure == StanzaError {
    var error: StanzaError.Condition? {
        if case .failure(let error) = self { return error.condition }
        return nil
    }
}

extension ComponentRoutingTable.Decision {
    var streamErrorCondition: StreamError.Condition? {
        if case .streamError(let error) = self { return error.condition }
        return nil
    }
}
