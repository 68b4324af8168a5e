import Testing
import XMPPCore
import XMPPStream

@testable import ReferenceServer

@Suite struct ServerLegacyComponentNegotiationStateMachineTests {
    typealias Machine = ServerLegacyComponentNegotiationStateMachine

    func machine() -> Machine {
        Machine(secrets: { $0 == "legacy.example.test" ? "s3cret" : nil })
    }

    func open(_ machine: inout Machine) -> String? {
        guard
            case .sendHeader(let header) = machine.streamOpened(
                StreamHeader(contentNamespace: Namespace.componentAccept, to: "Legacy.Example.Test", version: nil))
        else { return nil }
        #expect(header.from == "legacy.example.test")
        #expect(header.version == nil)
        #expect(header.contentNamespace == Namespace.componentAccept)
        return header.id
    }

    @Test func handshakeSucceeds() throws {
        var machine = self.machine()
        let id = try #require(self.open(&machine))
        let digest = ComponentHandshake.digest(streamID: id, secret: "s3cret").uppercased()
        #expect(
            machine.received(Element("handshake", namespace: Namespace.client, text: digest))
                == .authenticate(hostname: "legacy.example.test"))
        #expect(machine.bindingSucceeded() == .send(Element("handshake", namespace: Namespace.client)))
        #expect(machine.hostname == "legacy.example.test")
        let message = Element("message", namespace: Namespace.client)
        #expect(machine.received(message) == .established(message))
    }

    @Test func wrongSecretIsNotAuthorized() throws {
        var machine = self.machine()
        let id = try #require(self.open(&machine))
        let digest = ComponentHandshake.digest(streamID: id, secret: "wrong")
        guard case .fail(let error, nil) = machine.received(Element("handshake", namespace: Namespace.client, text: digest))
        else {
            Issue.record("expected a failure")
            return
        }
        #expect(error.condition == .notAuthorized)
    }

    @Test func unknownHostAndWrongNamespace() {
        var unknown = self.machine()
        guard
            case .fail(let error, let header?) = unknown.streamOpened(
                StreamHeader(contentNamespace: Namespace.componentAccept, to: "nobody.example.test", version: nil))
        else {
            Issue.record("expected host-unknown")
            return
        }
        #expect(error.condition == .hostUnknown)
        #expect(header.id != nil)

        var client = self.machine()
        guard
            case .fail(let namespaceError, _?) = client.streamOpened(
                StreamHeader(contentNamespace: Namespace.client, to: "legacy.example.test"))
        else {
            Issue.record("expected invalid-namespace")
            return
        }
        #expect(namespaceError.condition == .invalidNamespace)
    }

    @Test func conflictAndEarlyStanza() throws {
        var machine = self.machine()
        let id = try #require(self.open(&machine))
        _ = machine.received(
            Element("handshake", namespace: Namespace.client, text: ComponentHandshake.digest(streamID: id, secret: "s3cret")))
        guard case .fail(let error, nil) = machine.bindingConflicted() else {
            Issue.record("expected conflict")
            return
        }
        #expect(error.condition == .conflict)

        var early = self.machine()
        _ = self.open(&early)
        guard case .fail(let notAuthorized, nil) = early.received(Element("message", namespace: Namespace.client)) else {
            Issue.record("expected not-authorized")
            return
        }
        #expect(notAuthorized.condition == .notAuthorized)
    }
}
