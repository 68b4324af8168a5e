import ComponentKit
import Foundation
import ReferenceServer
import Testing
import XMPPCore
import XMPPStream

/// XEP-0198 acknowledgements on the reference server's component streams, on the wire: a
/// raw component (real TLS and SASL, no SDK) enables them, counts, and dies without
/// acknowledging; what it had not acknowledged is routed again, nothing silently lost.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct ReferenceServerAcknowledgementTests {
    static let sm = "urn:xmpp:sm:3"

    static func message(_ id: String, to: String = ScaleFixture.service) -> Element {
        Message(type: .chat, from: try? JID("alice@example.test/r"), to: try? JID(to), id: id, body: id).element
    }

    @Test func enableCountAndRequestAsTheProsodyModuleDoes() async throws {
        try await withServers { servers in
            let server = try await servers.start(ScaleFixture.shared.serverConfiguration())
            let users = Locked([Element]())
            let userStanzas = server.userStanzas()
            let watcher = Task { for await element in userStanzas { users.update { $0.append(element) } } }
            defer { watcher.cancel() }
            let stream = try await RawComponentStream.connect(port: server.port)
            let features = try await stream.next()
            #expect(
                features.firstChild("bind", namespace: Namespace.component)?.firstChild(
                    "required", namespace: Namespace.component) != nil)
            #expect(features.firstChild("sm", namespace: Self.sm) != nil, "\(features)")
            let bind = Element(
                "bind", namespace: Namespace.component,
                children: [Element("hostname", namespace: Namespace.component, text: ScaleFixture.service)])
            try await stream.send(IQ(type: .set, to: try JID(ScaleFixture.domain), id: "b1", payload: bind).element)
            #expect(try await stream.next()["type"] == "result")

            // <enabled/> without id or resume (resumption is not offered), even when asked for.
            try await stream.send(Element("enable", namespace: Self.sm, attributes: ["resume": "true"]))
            let enabled = try await stream.next()
            #expect(enabled.name == QualifiedName(Self.sm, "enabled"))
            #expect(enabled["id"] == nil && enabled["resume"] == nil)
            let again = try await stream.enableAcknowledgements()
            #expect(again.name == QualifiedName(Self.sm, "failed"))
            #expect(again.firstChild("unexpected-request", namespace: Namespace.stanzas) != nil)

            // What the component sent is counted: <r/> is answered with h.
            for index in 1...3 {
                var reply = Self.message("c\(index)", to: "alice@example.test/r")
                reply["from"] = ScaleFixture.service
                reply["to"] = "alice@example.test/r"
                try await stream.send(reply)
            }
            try await stream.send(Element("r", namespace: Self.sm))
            #expect(try await stream.next() == Element("a", namespace: Self.sm, attributes: ["h": "3"]))

            // The server asks after 16 unacknowledged stanzas, right behind the 16th.
            try server.inject(contentsOf: (1...16).map { Self.message("u\($0)") })
            var order: [String] = []
            for _ in 0..<17 {
                let element = try await stream.next()
                order.append(element.name.localName == "message" ? "message" : element.name.localName)
            }
            #expect(order == Array(repeating: "message", count: 16) + ["r"])
            try await stream.send(Element("a", namespace: Self.sm, attributes: ["h": "16"]))
            // Its answer says the acknowledgement was processed (a stream is read in order).
            try await stream.send(Element("r", namespace: Self.sm))
            #expect(try await stream.next() == Element("a", namespace: Self.sm, attributes: ["h": "3"]))

            // One more: asked for by the timer, behind it.
            try server.inject(Self.message("u17"))
            #expect(try await stream.next()["id"] == "u17")
            #expect(try await stream.next() == Element("r", namespace: Self.sm))

            // Acknowledging more than was sent ends the stream.
            try await stream.send(Element("a", namespace: Self.sm, attributes: ["h": "18"]))
            let error = try await stream.next()
            let streamError = try #require(StreamError(element: error), "\(error)")
            #expect(streamError.condition == .undefinedCondition)
            let detail = streamError.applicationCondition
            #expect(detail?.name == QualifiedName(Self.sm, "handled-count-too-high"))
            #expect(detail?["h"] == "18" && detail?["send-count"] == "17")
            try await stream.waitClosed()

            // u17 was never acknowledged: routed again, and with no instance left, bounced.
            try await server.waitUntilUnbound(ScaleFixture.service)
            let deadline = ContinuousClock.now + .seconds(10)
            while !users.value.contains(where: { $0["id"] == "u17" }), ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))
            }
            let bounce = try #require(users.value.first { $0["id"] == "u17" })
            #expect(Message(bounce)?.error?.condition == .serviceUnavailable)
            #expect(server.reroutedUnacknowledgedStanzas == 1)
            #expect(!users.value.contains { $0["id"]?.hasPrefix("u") == true && $0["id"] != "u17" }, "acknowledged, not bounced")
        }
    }

    @Test func pastTheMaximumUnacknowledgedTheStreamIsClosedAndItsStanzasBounced() async throws {
        try await withServers { servers in
            var configuration = ScaleFixture.shared.serverConfiguration()
            configuration.maximumUnacknowledgedStanzas = 20
            let server = try await servers.start(configuration)
            let users = Locked([Element]())
            let userStanzas = server.userStanzas()
            let watcher = Task { for await element in userStanzas { users.update { $0.append(element) } } }
            defer { watcher.cancel() }
            let stream = try await RawComponentStream.bound(ScaleFixture.service, port: server.port)
            #expect(try await stream.enableAcknowledgements().name.localName == "enabled")
            try server.inject(contentsOf: (1...21).map { Self.message("o\($0)") })
            let error = try await stream.next { $0.name == QualifiedName(Namespace.stream, "error") }
            #expect(StreamError(element: error)?.condition == .resourceConstraint, "\(error)")
            #expect(stream.received.filter { $0.name.localName == "message" }.count == 21)
            try await stream.waitClosed()
            let deadline = ContinuousClock.now + .seconds(10)
            while users.value.count < 21, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(Set(users.value.filter { $0["type"] == "error" }.compactMap { $0["id"] }).count == 21)
            #expect(server.reroutedUnacknowledgedStanzas == 21)
        }
    }

    @Test(arguments: ["r", "a"])
    func acknowledgementElementsBeforeEnableEndTheStream(_ name: String) async throws {
        try await withServers { servers in
            let server = try await servers.start(ScaleFixture.shared.serverConfiguration())
            let stream = try await RawComponentStream.bound(ScaleFixture.service, port: server.port)
            try await stream.send(Element(name, namespace: Self.sm, attributes: name == "a" ? ["h": "0"] : [:]))
            let error = try await stream.next()
            #expect(StreamError(element: error)?.condition == .unsupportedStanzaType, "\(error)")
            try await stream.waitClosed()
        }
    }

    @Test func whatADeadStreamDidNotAcknowledgeIsRoutedAgainButNotItsAnswers() async throws {
        try await withServers { servers in
            let server = try await servers.start(ScaleFixture.shared.serverConfiguration(algorithm: .roundRobin))
            let userStanzas = server.userStanzas()
            let victim = try await RawComponentStream.bound("\(ScaleFixture.service)/i1", port: server.port)
            let survivor = try await RawComponentStream.bound("\(ScaleFixture.service)/i2", port: server.port)
            #expect(try await victim.enableAcknowledgements().name.localName == "enabled")
            // Five messages for the victim's instance, its ping answered by the server, and the
            // answer to its request of a user: none acknowledged.
            try server.inject(contentsOf: (1...5).map { Self.message("v\($0)", to: "\(ScaleFixture.service)/i1") })
            let ping = IQ(
                type: .get, from: try JID("\(ScaleFixture.service)/i1"), to: try JID(ScaleFixture.domain), id: "p1",
                payload: Element("ping", namespace: Namespace.ping))
            try await victim.send(ping.element)
            let request = IQ(
                type: .get, from: try JID("\(ScaleFixture.service)/i1"), to: try JID("alice@example.test/r"), id: "q1",
                payload: Element("query", namespace: "urn:example:q"))
            try await victim.send(request.element)
            // The request reached the user (so the server tracks who asked) before the answer.
            try await withDeadline(.seconds(10), "the request to reach the user") {
                for await element in userStanzas where element["id"] == "q1" { return }
            }
            try server.inject(
                IQ(type: .result, from: try JID("alice@example.test/r"), to: try JID(ScaleFixture.service), id: "q1").element)
            for id in ["v1", "v2", "v3", "v4", "v5", "p1", "q1"] {
                _ = try await victim.next { $0["id"] == id }
            }
            await victim.kill()
            for id in ["v1", "v2", "v3", "v4", "v5"] {
                _ = try await survivor.next { $0["id"] == id }
            }
            // A marker behind them: had the answers been routed again, they would be before it.
            try server.inject(Self.message("end", to: "\(ScaleFixture.service)/i2"))
            _ = try await survivor.next { $0["id"] == "end" }
            #expect(!survivor.drain().contains { $0.name.localName == "iq" }, "a server answer or IQ result moved")
            #expect(server.reroutedUnacknowledgedStanzas == 5)
            #expect(server.droppedUnacknowledgedAnswers == 1)
            await survivor.kill()
        }
    }

    /// How the raw instance that is killed behaves.
    enum Victim: String, CaseIterable, Sendable {
        /// Enables acknowledgements and never acknowledges.
        case silent
        /// Enables acknowledgements and answers every `<r/>` at once (what it acknowledged
        /// counts as delivered: it must not be routed again).
        case answering
        /// The control: no acknowledgements, so what it was written is lost with it.
        case off
    }

    /// Three instances under round robin; the raw one dies mid-traffic (a TCP reset). With
    /// acknowledgements enabled nothing is lost, whether it acknowledged nothing or all it
    /// could; without (the control), what it had been written is lost: the accounting sees it.
    @Test(arguments: Victim.allCases)
    func killingAnInstanceMidTrafficLosesNothingItDidNotAcknowledge(victimMode: Victim) async throws {
        let acknowledging = victimMode != .off
        try await withServers { servers in
            let server = try await servers.start(ScaleFixture.shared.serverConfiguration(algorithm: .roundRobin))
            let tally = InstanceTally()
            let bounced = Locked(Set<String>())
            let userStanzas = server.userStanzas()
            let watcher = Task {
                for await element in userStanzas where element.name.localName == "message" && element["type"] == "error" {
                    if let id = element["id"] { bounced.update { _ = $0.insert(id) } }
                }
            }
            defer { watcher.cancel() }
            let sent = 3000
            let victimReceived = Locked(0)
            let victimAcknowledged = Locked(Set<String>())
            try await withInstances(server: server, weights: [nil, nil], tally: tally) { _ in
                let victim = try await RawComponentStream.bound("\(ScaleFixture.service)/victim", port: server.port)
                if acknowledging {
                    #expect(try await victim.enableAcknowledgements().name.localName == "enabled")
                }
                if victimMode == .answering { victim.answerRequests() }
                let messages = userMessages(sent, senders: 1)
                let killed = Locked(false)
                // Users send continuously; the second half goes out once the victim is killed,
                // while the server is noticing.
                async let injected: Void = {
                    for batch in 0..<(sent / 10) {
                        while batch == sent / 20, !killed.value {
                            try await Task.sleep(for: .milliseconds(1))
                        }
                        try server.inject(contentsOf: Array(messages[batch * 10..<(batch + 1) * 10]))
                        await Task.yield()
                    }
                }()
                let deadline = ContinuousClock.now + .seconds(20)
                // Killed once it has 100 messages (the answering one: once it acknowledged 100).
                func ready() -> Bool {
                    victimMode == .answering
                        ? victim.acknowledged.count >= 100
                        : victim.received.filter({ $0.name.localName == "message" }).count >= 100
                }
                while !ready(), ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(1))
                }
                await victim.kill()
                killed.update { $0 = true }
                victimReceived.update { $0 = victim.received.filter { $0.name.localName == "message" }.count }
                victimAcknowledged.update { $0 = Set(victim.acknowledged.compactMap { $0["id"] }) }
                try await injected
                // Then one marker per survivor (round robin), behind everything else on their streams.
                try await server.waitUntilUnbound("\(ScaleFixture.service)/victim")
                try server.inject(contentsOf: (0..<2).map { Self.message("after-\($0)") })
                func settled() -> Bool {
                    let ids = Set(tally.allIDs)
                    guard ids.isSuperset(of: ["after-0", "after-1"]) else { return false }
                    // The control stops at the markers; with acknowledgements, everything arrives.
                    return !acknowledging || ids.union(victimAcknowledged.value).union(bounced.value).count - 2 >= sent
                }
                while !settled(), ContinuousClock.now < deadline + .seconds(10) {
                    try await Task.sleep(for: .milliseconds(10))
                }
            }
            let distinct = Set(tally.allIDs.filter { !$0.hasPrefix("after-") })
            // Delivered: to the survivors, or to the victim when it acknowledged it.
            let delivered = distinct.union(victimAcknowledged.value)
            let lost = sent - delivered.union(bounced.value).count
            report(
                "scale sm-kill victim=\(victimMode.rawValue) sent=\(sent) delivered=\(delivered.count) "
                    + "bounced=\(bounced.value.count) lost=\(lost) duplicated=\(tally.allIDs.count - 2 - distinct.count) "
                    + "victim-received=\(victimReceived.value) victim-acknowledged=\(victimAcknowledged.value.count) "
                    + "rerouted=\(server.reroutedUnacknowledgedStanzas)")
            #expect(victimReceived.value >= 100, "the victim died before its share reached it")
            if victimMode == .answering { #expect(victimAcknowledged.value.count >= 100) }
            #expect(tally.allIDs.count - 2 == distinct.count, "a stanza routed twice to the survivors")
            if acknowledging {
                #expect(lost == 0, "stanzas neither delivered nor bounced")
                #expect(
                    server.reroutedUnacknowledgedStanzas >= victimReceived.value - victimAcknowledged.value.count,
                    "what it received and did not acknowledge was routed again")
                #expect(distinct.isDisjoint(with: victimAcknowledged.value), "an acknowledged stanza routed again")
            } else {
                #expect(lost >= victimReceived.value, "without acknowledgements what the victim was written is lost")
                #expect(server.reroutedUnacknowledgedStanzas == 0)
            }
        }
    }
}
