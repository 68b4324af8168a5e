import ComponentKit
import Foundation
import ReferenceServer
import Synchronization
import Testing
import XMPPCore

/// "Stream order is state order": what the server said first takes effect first.
///
/// A server may route a user's stanza to a hostname the moment it has sent the bind
/// result; the two then arrive in one read. These tests make the reference server write a
/// burst of stanzas behind every bind result, in the same write, and count what the
/// component answered.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct StreamOrderTests {
    /// Echoes messages, counting what it saw per hostname.
    struct Echo: ComponentHandler {
        func handle(_ stanza: Stanza, in context: ComponentContext) async throws {
            guard case .message(let message) = stanza, message.type != .error else { return }
            try await context.send(message.reply(body: message.body ?? ""))
        }
    }

    /// What the server's users received, by stanza id (the last one wins).
    final class Answers: Sendable {
        private final class Store: Sendable {
            let byID = Mutex<[String: Element]>([:])
        }

        private let store = Store()

        init(_ server: ReferenceServer) {
            let store = self.store
            server.observeUserStanzas { element in
                guard let id = element["id"] else { return }
                store.byID.withLock { $0[id] = element }
            }
        }

        var count: Int { self.store.byID.withLock { $0.count } }
        func all() -> [String: Element] { self.store.byID.withLock { $0 } }

        func wait(for count: Int, timeout: Duration = .seconds(60)) async throws {
            let deadline = ContinuousClock.now + timeout
            while self.count < count {
                guard ContinuousClock.now < deadline else {
                    throw IntegrationTestError("waited for \(count) answers, got \(self.count)")
                }
                try await Task.sleep(for: .milliseconds(10))
            }
        }
    }

    /// A burst of `size` messages from alice to the hostname just bound, with ids unique
    /// across the test (`burst-<bind number>-<i>`).
    final class Burst: Sendable {
        private let binds = Atomic<Int>(0)
        let size: Int

        init(size: Int) { self.size = size }

        var bindCount: Int { self.binds.load(ordering: .relaxed) }

        func stanzas(for hostname: String) -> [Element] {
            let bind = self.binds.add(1, ordering: .relaxed).newValue
            return (0..<self.size).map { index in
                Element(
                    "message", namespace: Namespace.client,
                    attributes: [
                        "from": "alice@\(SDKFixture.domain)/burst", "to": hostname, "type": "chat",
                        "id": "burst-\(bind)-\(index)",
                    ],
                    children: [Element("body", namespace: Namespace.client, text: "\(bind).\(index)")])
            }
        }
    }

    private func transferIQ(_ id: String, to port: Int) -> Element {
        var iq = IQ(
            type: .set, to: try? JID("a.example.test"), id: id,
            payload: Element(
                "query", namespace: Namespace.connectionTransfer,
                children: [Element("server", namespace: Namespace.connectionTransfer, text: "127.0.0.1:\(port)")])
        ).element
        iq["from"] = nil
        return iq
    }

    private func burstEchoes(_ answers: [Answers]) -> [String: Element] {
        answers[0].all().merging(answers[1].all()) { $1 }.filter { $0.key.hasPrefix("burst-") }
    }

    /// Waits (bounded) until `count` burst stanzas are answered.
    private func waitForEchoes(_ answers: [Answers], count: Int) async -> Bool {
        let deadline = ContinuousClock.now + .seconds(20)
        while self.burstEchoes(answers).count < count {
            guard ContinuousClock.now < deadline else { return false }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return true
    }

    /// 200+ binds and re-binds (runtime binds, reconnects, transfers), each followed in the
    /// same write by stanzas to the new hostname: every one is delivered and echoed, none is
    /// bounced, and per binding they arrive in order.
    @Test func stanzasWrittenWithTheBindResultAreDeliveredNeverBounced() async throws {
        try await withServers { servers in
            let first = try await servers.start(SDKFixture.shared.serverConfiguration())
            let second = try await servers.start(SDKFixture.shared.serverConfiguration())
            let burst = Burst(size: 5)
            for server in [first, second] {
                server.setBurstAfterBind { burst.stanzas(for: $0) }
            }
            let answers = [Answers(first), Answers(second)]
            var configuration = SDKFixture.shared.clientConfiguration(port: first.port)
            configuration.reconnect = ReconnectPolicy(initialDelay: .milliseconds(5), maximumDelay: .milliseconds(20))
            let connection = ComponentConnection(configuration: configuration, logger: testLogger("order-bind"))
            let events = EventRecorder(connection)
            try connection.register("a.example.test", handler: Echo())
            try connection.register("b.example.test", handler: Echo())
            let ports = [first.port, second.port]
            try await withRunningConnection(connection) { connection in
                try await events.waitBound(["a.example.test", "b.example.test"])
                var current = 0
                for round in 0..<30 {
                    // Runtime unbind and bind again: one bind each.
                    for _ in 0..<4 {
                        do {
                            try await connection.unbind("c.example.test")
                        } catch let error as ComponentError where error.kind == .notBound {}
                        try await connection.bind("c.example.test", handler: Echo())
                        // Its burst is answered before the next unbind: what a handler sends after
                        // the unbind went out is not sent (by design), and would count as missing.
                        let answered = await self.waitForEchoes(answers, count: burst.bindCount * burst.size)
                        #expect(answered, "round \(round): the burst of a runtime bind was not answered")
                    }
                    // Every burst so far is answered before the link is cut: a server that drops
                    // a link loses what was in flight on it (component streams have no acks).
                    let answered = await self.waitForEchoes(answers, count: burst.bindCount * burst.size)
                    #expect(answered, "round \(round): echoes missing before the link change")
                    events.reset()
                    if round % 2 == 0 {
                        // A reconnect: the server drops the link; both hostnames are bound again,
                        // on the same server (a transfer's target is sticky until a reload).
                        (current == 0 ? first : second).disconnectComponents()
                    } else {
                        // A transfer to the other server: both hostnames are bound there.
                        let target = 1 - current
                        try (current == 0 ? first : second).send(
                            self.transferIQ("xfer-\(round)", to: ports[target]), toComponentBound: "a.example.test")
                        current = target
                    }
                    // Every hostname bound again, and the bursts of those re-binds answered,
                    // before the next round unbinds c.
                    try await events.waitBound(["a.example.test", "b.example.test", "c.example.test"])
                    let rebound = await self.waitForEchoes(answers, count: burst.bindCount * burst.size)
                    #expect(rebound, "round \(round): the bursts of the re-binds were not answered")
                }
            }
            let binds = burst.bindCount
            #expect(binds >= 200, "only \(binds) binds happened")
            let expected = binds * burst.size
            _ = await self.waitForEchoes(answers, count: expected)
            let echoes = self.burstEchoes(answers)
            let bounced = echoes.values.filter { $0["type"] == "error" }
            #expect(bounced.isEmpty, "\(bounced.count) stanzas were bounced, e.g. \(bounced.first.map { "\($0)" } ?? "")")
            let missing = (1...binds).flatMap { bind in (0..<burst.size).map { "burst-\(bind)-\($0)" } }.filter {
                echoes[$0] == nil
            }
            #expect(echoes.count == expected, "\(echoes.count) of \(expected) burst stanzas answered; missing \(missing)")
            print("stream order: \(binds) binds, \(echoes.count) of \(expected) burst stanzas echoed, \(bounced.count) bounced")
        }
    }

    /// From the moment `<unbind/>` is sent, nothing leaves from the hostname: a handler
    /// still answering a flood of stanzas never makes the server end the stream with
    /// `invalid-from`.
    @Test func anUnbindRacingHandlerRepliesNeverEndsTheStream() async throws {
        try await withServers { servers in
            let server = try await servers.start(SDKFixture.shared.serverConfiguration())
            let answers = Answers(server)
            let connection = ComponentConnection(
                configuration: SDKFixture.shared.clientConfiguration(port: server.port), logger: testLogger("order-unbind"))
            let events = EventRecorder(connection)
            try connection.register("a.example.test", handler: Echo())
            try connection.register("b.example.test", handler: Echo())
            try await withRunningConnection(connection) { connection in
                try await events.waitBound(["a.example.test", "b.example.test"])
                for round in 0..<20 {
                    let flood = try (0..<300).map { index in
                        Message(
                            type: .chat, from: try JID("alice@\(SDKFixture.domain)/r"), to: try JID("a.example.test"),
                            id: "flood-\(round)-\(index)", body: "x"
                        ).element
                    }
                    try server.inject(contentsOf: flood)
                    try await connection.unbind("a.example.test")
                    try await connection.bind("a.example.test", handler: Echo())
                }
                // The stream survived every race: one connection all along, b still answers.
                try server.inject(
                    Message(
                        type: .chat, from: try JID("alice@\(SDKFixture.domain)/r"), to: try JID("b.example.test"), id: "probe",
                        body: "p"
                    )
                    .element)
                let deadline = ContinuousClock.now + .seconds(20)
                while answers.all()["probe"] == nil && ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(10))
                }
                #expect(answers.all()["probe"]?["type"] == "chat")
                let disconnects = events.all.filter { $0.kind == .disconnected }
                #expect(disconnects.isEmpty, "the stream ended: \(disconnects)")
            }
        }
    }

    /// An unbind while the hostname's bind is still in flight reaches the server (behind
    /// the bind): the server holds no binding afterwards, and a stanza to the hostname is
    /// bounced by the server instead of being routed to a stream that no longer serves it
    /// (which dropped it without an answer: the component may not answer for a hostname it
    /// does not hold).
    @Test func anUnbindWhileTheBindIsInFlightLeavesNothingBoundOnTheServer() async throws {
        try await withServers { servers in
            let server = try await servers.start(SDKFixture.shared.serverConfiguration())
            let answers = Answers(server)
            let connection = ComponentConnection(
                configuration: SDKFixture.shared.clientConfiguration(port: server.port),
                logger: testLogger("order-unbind-binding"))
            let events = EventRecorder(connection)
            try connection.register("b.example.test", handler: Echo())
            try await withRunningConnection(connection) { connection in
                try await events.waitBound(["b.example.test"])
                for round in 0..<30 {
                    // register() returns once the bind request is on its way.
                    try connection.register("c.example.test", handler: Echo())
                    try await connection.unbind("c.example.test")
                    try server.inject(
                        Message(
                            type: .chat, from: try JID("alice@\(SDKFixture.domain)/r"), to: try JID("c.example.test"),
                            id: "probe-\(round)", body: "p"
                        ).element)
                }
                try await answers.wait(for: 30, timeout: .seconds(20))
                let probes = answers.all().filter { $0.key.hasPrefix("probe-") }
                #expect(probes.count == 30)
                #expect(probes.values.allSatisfy { $0["type"] == "error" }, "\(probes.values.filter { $0["type"] != "error" })")
                #expect(!server.boundHostnames.contains("c.example.test"))
                #expect(events.all.filter { $0.kind == .disconnected }.isEmpty)
            }
        }
    }

    /// A `bind()` that times out while its request is still unanswered (here: the answer
    /// waits unread, behind reading paused by the connection's budget) does not forget the
    /// hostname locally while the server binds it: an `<unbind/>` follows the bind, and the
    /// server ends with nothing bound. Before: the late result was dropped, the server kept
    /// the hostname bound and routed to it, and the connection dropped every such stanza.
    @Test func aBindThatTimesOutLeavesNothingBoundOnTheServer() async throws {
        try await withServers { servers in
            let server = try await servers.start(SDKFixture.shared.serverConfiguration())
            let answers = Answers(server)
            var configuration = SDKFixture.shared.clientConfiguration(port: server.port)
            configuration.connectionBudget = ConnectionBudgetPolicy(maxBytes: 64 << 10)
            configuration.requestTimeout = .seconds(1)
            let connection = ComponentConnection(configuration: configuration, logger: testLogger("order-bind-timeout"))
            let events = EventRecorder(connection)
            let gated = BackpressureTests.GatedHandler()
            try connection.register("b.example.test", handler: gated)
            try await withRunningConnection(connection) { connection in
                try await events.waitBound(["b.example.test"])
                // Fill the budget: reading pauses, with a blocked handler.
                let body = String(repeating: "x", count: 2_000)
                try server.inject(
                    contentsOf: try (0..<200).map {
                        Message(
                            type: .chat, from: try JID("alice@\(SDKFixture.domain)/r"), to: try JID("b.example.test"),
                            id: "fill-\($0)", body: body
                        ).element
                    })
                // Until the connection stops taking stanzas in (the count holds still).
                var last = -1
                var stable = 0
                let paused = ContinuousClock.now + .seconds(20)
                while stable < 10, ContinuousClock.now < paused {
                    try await Task.sleep(for: .milliseconds(50))
                    let now = connection.status.hostnames.first { $0.hostname == "b.example.test" }?.stanzasIn ?? 0
                    stable = now == last && now > 0 ? stable + 1 : 0
                    last = now
                }
                try #require(last > 0 && last < 200, "reading never paused (\(last) of 200 taken in)")
                // The server binds c at once; its answer waits behind the pause.
                await #expect(throws: ComponentError.self) {
                    try await connection.bind("c.example.test", handler: Echo())
                }
                gated.release()
                // Read on: the late bind result, then the unbind's.
                let deadline = ContinuousClock.now + .seconds(20)
                while server.boundHostnames.contains("c.example.test"), ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(20))
                }
                #expect(!server.boundHostnames.contains("c.example.test"), "still bound on the server")
                // Nothing routed to a hostname nobody serves: the server answers for it.
                try server.inject(
                    Message(
                        type: .chat, from: try JID("alice@\(SDKFixture.domain)/r"), to: try JID("c.example.test"),
                        id: "probe", body: "p"
                    ).element)
                try await answers.wait(for: 1, timeout: .seconds(20))
                #expect(answers.all()["probe"]?["type"] == "error")
                #expect(events.all.filter { $0.kind == .disconnected }.isEmpty)
            }
        }
    }
}
