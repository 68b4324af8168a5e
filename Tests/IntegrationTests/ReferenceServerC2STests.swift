import ComponentKit
import Foundation
import ReferenceServer
import Synchronization
import Testing
import XMPPCore
import XMPPSASL
import XMPPStream
import XMPPTLS
import XMPPTestSupport

/// Real client (c2s) users of the reference server: `user<n>@example.test`, password
/// `pw-<n>`, over real STARTTLS and Cyrus SASL on loopback.
enum C2SUsers {
    static func password(_ index: Int) -> String { "pw-\(index)-pässword" }

    /// The configuration of ``ScaleFixture`` with the client port on a free port and
    /// `count` users.
    static func serverConfiguration(algorithm: RoutingAlgorithm? = nil, users count: Int) -> ReferenceServerConfiguration {
        var configuration = ScaleFixture.shared.serverConfiguration(algorithm: algorithm)
        configuration.c2sPort = 0
        configuration.users = Dictionary(
            uniqueKeysWithValues: (0..<count).map { ("user\($0)@\(ScaleFixture.domain)", self.password($0)) })
        return configuration
    }

    static func clientConfiguration(
        server: ReferenceServer, user index: Int, password: String? = nil, resource: String? = "r",
        mechanisms: [String]? = nil
    ) throws -> C2SClient.Configuration {
        C2SClient.Configuration(
            port: try #require(server.c2sPort), domain: ScaleFixture.domain, username: "user\(index)",
            password: password ?? self.password(index), resource: resource,
            caFile: ScaleFixture.shared.files.caCertificateFile, allowedMechanisms: mechanisms)
    }

    /// Connects users `0..<count` (one session each, resource `r`).
    static func connect(_ count: Int, to server: ReferenceServer) async throws -> [C2SClient] {
        var clients: [C2SClient] = []
        for index in 0..<count {
            clients.append(try await C2SClient.connect(self.clientConfiguration(server: server, user: index)))
        }
        return clients
    }

    /// Each client sends `perUser` chat messages to `to` (ids `u<user>-<n>`), all users at once.
    static func send(_ clients: [C2SClient], perUser: Int, to: String = ScaleFixture.service) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (user, client) in clients.enumerated() {
                group.addTask {
                    for index in 0..<perUser {
                        try await client.send(
                            Message(type: .chat, to: try JID(to), id: "u\(user)-\(index)", body: "n\(index)").element)
                    }
                }
            }
            try await group.waitForAll()
        }
    }
}

/// What the client port does: negotiation, authentication, addressing, delivery.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct ReferenceServerC2STests {
    @Test func aRealClientNegotiatesTLSAndSCRAMAndBinds() async throws {
        try await withServers { servers in
            let server = try await servers.start(C2SUsers.serverConfiguration(users: 2))
            let alice = try await C2SClient.connect(C2SUsers.clientConfiguration(server: server, user: 0, resource: "phone"))
            #expect(alice.jid.description == "user0@example.test/phone")
            #expect(alice.session.mechanism.hasPrefix("SCRAM-SHA-256"), "\(alice.session.mechanism)")
            // A server-generated resource when none is asked for.
            let generated = try await C2SClient.connect(C2SUsers.clientConfiguration(server: server, user: 1, resource: nil))
            #expect(generated.jid.bare.description == "user1@example.test")
            #expect((generated.jid.resourcepart ?? "").count >= 8)
            // The same resource twice: the second session gets another one.
            let again = try await C2SClient.connect(C2SUsers.clientConfiguration(server: server, user: 0, resource: "phone"))
            #expect(again.jid != alice.jid)
            #expect(again.jid.bare == alice.jid.bare)
            #expect(server.clientSessions.count == 3)
            // The server answers for itself: ping and an empty roster.
            let ping = try await alice.request(
                IQ(type: .get, to: try JID(ScaleFixture.domain), id: "", payload: Element("ping", namespace: Namespace.ping)))
            #expect(ping.type == .result)
            let roster = try await alice.request(
                IQ(type: .get, id: "", payload: Element("query", namespace: "jabber:iq:roster")))
            #expect(roster.type == .result)
            for client in [alice, generated, again] { await client.close() }
        }
    }

    @Test(arguments: ["SCRAM-SHA-1", "SCRAM-SHA-256", "PLAIN"])
    func eachMechanismAuthenticates(mechanism: String) async throws {
        try await withServers { servers in
            let server = try await servers.start(C2SUsers.serverConfiguration(users: 1))
            let client = try await C2SClient.connect(
                C2SUsers.clientConfiguration(server: server, user: 0, mechanisms: [mechanism]))
            #expect(client.session.mechanism == mechanism)
            await client.close()
        }
    }

    @Test func aWrongPasswordIsNotAuthorized() async throws {
        try await withServers { servers in
            let server = try await servers.start(C2SUsers.serverConfiguration(users: 1))
            for mechanism in ["SCRAM-SHA-256", "PLAIN"] {
                let error = await #expect(throws: C2SClientError.self) {
                    try await C2SClient.connect(
                        C2SUsers.clientConfiguration(server: server, user: 0, password: "wrong", mechanisms: [mechanism]))
                }
                #expect(error?.kind == .authenticationFailed)
                #expect("\(error.map { "\($0)" } ?? "")".contains("not-authorized"), "\(String(describing: error))")
            }
            // A component identity is no user, even with its right password.
            var component = try C2SUsers.clientConfiguration(server: server, user: 0, password: ScaleFixture.password)
            component.username = ScaleFixture.identity
            await #expect(throws: C2SClientError.self) { try await C2SClient.connect(component) }
            #expect(server.clientSessions.isEmpty)
        }
    }

    @Test func messagesGoBothWaysBetweenAUserAndAComponent() async throws {
        try await withServers { servers in
            var serverConfiguration = C2SUsers.serverConfiguration(users: 3)
            serverConfiguration.allowedHostnames[ScaleFixture.identity, default: []].append("idle.example.test")
            let server = try await servers.start(serverConfiguration)
            let received = Locked([Message]())
            var configuration = ScaleFixture.shared.clientConfiguration(port: server.port)
            configuration.requestTimeout = .seconds(5)
            let connection = ComponentConnection(configuration: configuration, logger: testLogger("c2s-echo"))
            try connection.register(
                ScaleFixture.service,
                handler: ClosureHandler { stanza, context in
                    guard case .message(let message) = stanza, message.type != .error, let from = message.from else { return }
                    received.update { $0.append(message) }
                    // Answer the full JID, then the bare JID.
                    for to in [from, from.bare] {
                        try await context.send(
                            Message(type: .chat, from: try JID(ScaleFixture.service), to: to, body: "echo to \(to)"))
                    }
                })
            try await withRunningConnection(connection) { connection in
                try await server.waitUntilBound(ScaleFixture.service)
                let users = try await C2SUsers.connect(2, to: server)
                try await users[0].send(
                    Message(type: .chat, to: try JID(ScaleFixture.service), id: "hello", body: "hi").element)
                for to in [users[0].jid, users[0].jid.bare] {
                    let echo = try await users[0].next(timeout: .seconds(10)) {
                        $0.name.localName == "message"
                            && $0.firstChild("body", namespace: Namespace.client)?.text == "echo to \(to)"
                    }
                    #expect(echo["from"] == ScaleFixture.service)
                }
                // The server stamped the sender's full JID.
                #expect(received.value.map { $0.from?.description } == [users[0].jid.description])
                // User to user.
                try await users[0].send(Message(type: .chat, to: users[1].jid.bare, id: "u2u", body: "hey").element)
                let direct = try await users[1].next(timeout: .seconds(10)) { $0["id"] == "u2u" }
                #expect(direct["from"] == users[0].jid.description)
                // A configured user who is offline: the component's IQ bounces, its message too.
                let offline = try JID("user2@example.test/r")
                let answer = try await connection.request(
                    IQ(
                        type: .get, from: try JID(ScaleFixture.service), to: offline, id: "off-1",
                        payload: Element("ping", namespace: Namespace.ping)))
                #expect(answer.error?.condition == .serviceUnavailable)
                // A user writing to an unbound component hostname gets an error back.
                try await users[1].send(Message(type: .chat, to: try JID("idle.example.test"), id: "none", body: "?").element)
                let bounce = try await users[1].next(timeout: .seconds(10)) { $0["id"] == "none" }
                #expect(bounce["type"] == "error")
                #expect(Message(bounce)?.error?.condition == .serviceUnavailable)
                #expect(bounce["to"] == users[1].jid.description)
                for user in users { await user.close() }
            }
        }
    }

    @Test func slixmppConnectsAndReachesAComponent() async throws {
        let python = "/usr/bin/python3"
        let probe = try await runCommand(python, ["-c", "import slixmpp"], timeout: .seconds(30))
        try #require(probe.status == 0, "python3-slixmpp is not installed (scripts/setup.sh): \(probe.output)")
        try await withServers { servers in
            var configuration = C2SUsers.serverConfiguration(users: 1)
            // slixmpp 1.8 binds channels with tls-unique only (none on TLS 1.3): no -PLUS.
            configuration.sasl.mechanisms = ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]
            let server = try await servers.start(configuration)
            let connection = ComponentConnection(
                configuration: ScaleFixture.shared.clientConfiguration(port: server.port), logger: testLogger("c2s-slixmpp"))
            try connection.register(
                ScaleFixture.service,
                handler: ClosureHandler { stanza, context in
                    guard case .message(let message) = stanza, message.type != .error, let from = message.from else { return }
                    try await context.send(
                        Message(type: .chat, from: try JID(ScaleFixture.service), to: from, body: "echo: \(message.body ?? "")"))
                })
            try await withRunningConnection(connection) { _ in
                try await server.waitUntilBound(ScaleFixture.service)
                let script =
                    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().path
                    + "/ExternalPeers/slixmpp_c2s.py"
                var environment = ProcessInfo.processInfo.environment
                environment["C2S_JID"] = "user0@\(ScaleFixture.domain)"
                environment["C2S_PASSWORD"] = C2SUsers.password(0)
                environment["C2S_PORT"] = "\(try #require(server.c2sPort))"
                environment["C2S_CA"] = ScaleFixture.shared.files.caCertificateFile
                environment["C2S_TO"] = ScaleFixture.service
                let run = try await runCommand(python, [script], environment: environment, timeout: .seconds(40))
                report("c2s slixmpp: \(run.output.split(separator: "\n").joined(separator: " | "))")
                #expect(run.status == 0, "\(run.output)")
                #expect(run.output.contains("slixmpp-c2s: bound user0@example.test/"))
                #expect(run.output.contains("got \(ScaleFixture.service) chat echo: hello from slixmpp"), "\(run.output)")
            }
        }
    }

    @Test func anOversizedStanzaEndsTheStreamWithPolicyViolation() async throws {
        try await withServers { servers in
            var configuration = C2SUsers.serverConfiguration(users: 2)
            configuration.streamLimits.maxStanzaSize = 16 * 1024
            let server = try await servers.start(configuration)
            let users = try await C2SUsers.connect(2, to: server)
            let big = String(repeating: "x", count: 32 * 1024)
            try await users[0].send(Message(type: .chat, to: users[1].jid, id: "big", body: big).element)
            let error = await #expect(throws: C2SClientError.self) { try await users[0].next(timeout: .seconds(10)) }
            #expect(error?.streamError?.condition == .policyViolation, "\(String(describing: error))")
            #expect(await users[1].drain().isEmpty, "the oversized stanza was delivered")
            // The other session is unaffected.
            try await users[1].send(Message(type: .chat, to: users[1].jid, id: "small", body: "ok").element)
            _ = try await users[1].next(timeout: .seconds(10)) { $0["id"] == "small" }
            for user in users { await user.close() }
        }
    }

    @Test func aForeignFromEndsTheStreamWithInvalidFrom() async throws {
        try await withServers { servers in
            let server = try await servers.start(C2SUsers.serverConfiguration(users: 2))
            let users = try await C2SUsers.connect(2, to: server)
            // Its own bare JID is accepted (and stamped with the full JID).
            try await users[0].send(
                Message(type: .chat, from: users[0].jid.bare, to: users[1].jid, id: "own", body: "ok").element)
            let stamped = try await users[1].next(timeout: .seconds(10)) { $0["id"] == "own" }
            #expect(stamped["from"] == users[0].jid.description)
            // Another user's JID is not.
            try await users[0].send(
                Message(type: .chat, from: users[1].jid, to: users[1].jid, id: "spoof", body: "x").element)
            let error = await #expect(throws: C2SClientError.self) { try await users[0].next(timeout: .seconds(10)) }
            #expect(error?.streamError?.condition == .invalidFrom, "\(String(describing: error))")
            #expect(await users[1].drain().allSatisfy { $0["id"] != "spoof" }, "the spoofed stanza was delivered")
            for user in users { await user.close() }
        }
    }
}

/// The balancing checks of issue 15 with real c2s users: three instances of one domain,
/// 3 000 messages from several users over the client port.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct ReferenceServerC2SScaleTests {
    static let instances = (1...3).map { "\(ScaleFixture.service)/i\($0)" }

    @Test func roundRobinSharesWithinTenPercent() async throws {
        try await withServers { servers in
            let server = try await servers.start(C2SUsers.serverConfiguration(algorithm: .roundRobin, users: 6))
            let tally = InstanceTally()
            try await withInstances(server: server, tally: tally) { _ in
                let users = try await C2SUsers.connect(6, to: server)
                try await C2SUsers.send(users, perUser: 500)
                try await tally.wait(total: 3000)
                for user in users { await user.close() }
            }
            let counts = Self.instances.map { tally.count($0) }
            report("scale c2s roundrobin users=6 sent=3000 per-instance=\(counts)")
            for count in counts { #expect((900...1100).contains(count), "\(counts)") }
            #expect(Set(tally.allIDs).count == 3000, "no duplicates")
            let senders = Self.instances.map { tally.senders($0) }
            #expect(senders.allSatisfy { $0 == Set((0..<6).map { "user\($0)@example.test/r" }) }, "\(senders)")
        }
    }

    @Test func weightedSharesInProportion() async throws {
        try await withServers { servers in
            let server = try await servers.start(C2SUsers.serverConfiguration(algorithm: .weighted, users: 6))
            let tally = InstanceTally()
            try await withInstances(server: server, weights: [1, 2, 3], tally: tally) { _ in
                #expect(server.instances.map(\.weight) == [1, 2, 3], "the weights went over the wire")
                let users = try await C2SUsers.connect(6, to: server)
                try await C2SUsers.send(users, perUser: 500)
                try await tally.wait(total: 3000)
                for user in users { await user.close() }
            }
            let counts = Self.instances.map { tally.count($0) }
            report("scale c2s weighted 1:2:3 users=6 sent=3000 per-instance=\(counts)")
            for (count, expected) in zip(counts, [500, 1000, 1500]) {
                #expect(abs(count - expected) <= expected / 10, "\(counts)")
            }
        }
    }

    @Test func allDeliversToEveryInstance() async throws {
        try await withServers { servers in
            let server = try await servers.start(C2SUsers.serverConfiguration(algorithm: .all, users: 6))
            let tally = InstanceTally()
            try await withInstances(server: server, tally: tally) { _ in
                let users = try await C2SUsers.connect(6, to: server)
                try await C2SUsers.send(users, perUser: 500)
                try await tally.wait(total: 9000)
                for user in users { await user.close() }
            }
            let counts = Self.instances.map { tally.count($0) }
            report("scale c2s all users=6 sent=3000 per-instance=\(counts)")
            #expect(counts == [3000, 3000, 3000])
        }
    }

    @Test func affinityHoldsEachUserOnOneInstance() async throws {
        try await withServers { servers in
            // No algorithm configured: affinity is the default for several instances.
            let server = try await servers.start(C2SUsers.serverConfiguration(users: 30))
            let tally = InstanceTally()
            try await withInstances(server: server, tally: tally) { _ in
                #expect(server.routingAlgorithm(for: ScaleFixture.service) == .affinity)
                let users = try await C2SUsers.connect(30, to: server)
                try await C2SUsers.send(users, perUser: 100)
                try await tally.wait(total: 3000)
                for user in users { await user.close() }
            }
            let senders = Self.instances.map { tally.senders($0) }
            report(
                "scale c2s affinity users=30 users-per-instance=\(senders.map(\.count)) "
                    + "messages=\(Self.instances.map { tally.count($0) })")
            #expect(senders.map(\.count) == [10, 10, 10], "new users spread round-robin")
            for (first, second) in [(0, 1), (0, 2), (1, 2)] {
                #expect(senders[first].isDisjoint(with: senders[second]), "a user reached two instances")
            }
            #expect(Set(senders.flatMap { $0 }).count == 30)
        }
    }

    @Test func anIQResultReachesTheInstanceThatAsked() async throws {
        try await withServers { servers in
            let server = try await servers.start(C2SUsers.serverConfiguration(users: 3))
            let tally = InstanceTally()
            let answered = Locked(0)
            try await withInstances(server: server, tally: tally) { connections in
                let users = try await C2SUsers.connect(3, to: server)
                // Each user answers every ping it gets, as a client does.
                let responders = users.map { user in
                    Task {
                        while !Task.isCancelled {
                            guard
                                let request = try? await user.next(timeout: .seconds(30), where: { $0["type"] == "get" }),
                                let iq = IQ(request)
                            else { return }
                            try? await user.send(iq.result().element)
                        }
                    }
                }
                defer { responders.forEach { $0.cancel() } }
                // Every instance asks every user, so each user's answers must go to three
                // instances: affinity by sender alone would send them all to one.
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for (index, connection) in connections.enumerated() {
                        group.addTask {
                            for request in 0..<50 {
                                let iq = IQ(
                                    type: .get, from: try JID("\(ScaleFixture.service)/i\(index + 1)"),
                                    to: users[request % users.count].jid, id: "i\(index)-\(request)",
                                    payload: Element("ping", namespace: Namespace.ping))
                                let answer = try await connection.request(iq)
                                #expect(answer.type == .result)
                                answered.update { $0 += 1 }
                            }
                        }
                    }
                    try await group.waitForAll()
                }
                for user in users { await user.close() }
            }
            report("scale c2s iq-results asked=150 answered=\(answered.value)")
            #expect(answered.value == 150)
        }
    }
}
