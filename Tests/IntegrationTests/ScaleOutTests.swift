import ComponentKit
import Foundation
import ReferenceServer
import Synchronization
import Testing
import XMPPCore
import XMPPSASL
import XMPPStream
import XMPPTLS

/// Two server domains under one CA: `example.test` (servers A and B of a "cluster") and
/// `other.test` (a server a transfer's `<domain/>` names), each with its own certificate.
struct ScaleFixture: Sendable {
    static let domain = "example.test"
    static let otherDomain = "other.test"
    static let identity = "component.example.test"
    static let password = "scale-pässword"
    static let service = "search.example.test"

    let directory: String
    let files: DevelopmentCertificate.Files
    let otherFiles: DevelopmentCertificate.Files
    let sasldb: String

    static let shared: ScaleFixture = {
        do {
            let directory = NSTemporaryDirectory() + "scale-it-" + UUID().uuidString
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            atexit { try? FileManager.default.removeItem(atPath: ScaleFixture.shared.directory) }
            let authority = try DevelopmentCertificateAuthority()
            let files = try authority.issue(dnsNames: [domain]).write(toDirectory: directory, name: "server")
            let otherFiles = try authority.issue(dnsNames: [otherDomain]).write(toDirectory: directory, name: "other")
            let sasldb = directory + "/sasldb"
            for realm in [domain, otherDomain] {
                try SASLDatabase.setPassword(path: sasldb, user: identity, realm: realm, password: password)
            }
            return ScaleFixture(directory: directory, files: files, otherFiles: otherFiles, sasldb: sasldb)
        } catch {
            fatalError("cannot create the scale-out test fixture: \(error)")
        }
    }()

    func serverConfiguration(
        algorithm: RoutingAlgorithm? = nil, domain: String = ScaleFixture.domain
    ) -> ReferenceServerConfiguration {
        var configuration = ReferenceServerConfiguration(
            domain: domain, tls: domain == Self.domain ? self.files.serverConfiguration : self.otherFiles.serverConfiguration,
            sasl: .init(sasldbPath: self.sasldb))
        configuration.allowedHostnames = [Self.identity: [Self.service]]
        if let algorithm { configuration.routingAlgorithms = [Self.service: algorithm] }
        return configuration
    }

    func clientConfiguration(port: Int) -> ComponentConfiguration {
        var configuration = ComponentConfiguration(
            host: "127.0.0.1", port: port, serverDomain: Self.domain, identity: Self.identity,
            password: Secret(Self.password))
        configuration.protocolMode = .xep0225
        configuration.trustRoots = .caFile(self.files.caCertificateFile)
        configuration.reconnect = ReconnectPolicy(initialDelay: .milliseconds(50), maximumDelay: .milliseconds(500))
        configuration.requestTimeout = .seconds(5)
        return configuration
    }
}

/// What each instance received: message ids and senders, per instance hostname.
final class InstanceTally: Sendable {
    private struct State {
        var ids: [String: [String]] = [:]
        var senders: [String: Set<String>] = [:]
        var contexts: [String: String?] = [:]
    }

    private let state = Mutex(State())

    /// Records messages; answers `urn:example:state` gets for the instance `owner` names,
    /// redirecting them there when it is another.
    func handler(owner: @escaping @Sendable () -> String? = { nil }) -> ClosureHandler {
        ClosureHandler { stanza, context in
            switch stanza {
            case .message(let message) where message.type != .error:
                self.state.withLock { state in
                    state.ids[context.hostname, default: []].append(message.id ?? "")
                    state.senders[context.hostname, default: []].insert(message.from?.description ?? "")
                    state.contexts[context.hostname] = context.instance
                }
            case .iq(let iq) where iq.type == .get && iq.payload?.name.namespace == "urn:example:state":
                if let owner = owner(), owner != context.instance {
                    try await context.redirect(iq, to: try JID("\(ScaleFixture.service)/\(owner)"))
                } else {
                    try await context.reply(
                        to: iq, with: Element("state", namespace: "urn:example:state", text: context.hostname))
                }
            default:
                break
            }
        }
    }

    func count(_ hostname: String) -> Int { self.state.withLock { $0.ids[hostname]?.count ?? 0 } }
    var total: Int { self.state.withLock { $0.ids.values.reduce(0) { $0 + $1.count } } }
    var allIDs: [String] { self.state.withLock { $0.ids.values.flatMap { $0 } } }
    func senders(_ hostname: String) -> Set<String> { self.state.withLock { $0.senders[hostname] ?? [] } }
    func instance(_ hostname: String) -> String?? { self.state.withLock { $0.contexts[hostname] } }

    /// Waits until `total` messages arrived in all (bounded).
    func wait(total expected: Int, timeout: Duration = .seconds(20)) async throws {
        let deadline = ContinuousClock.now + timeout
        while self.total < expected {
            guard ContinuousClock.now < deadline else {
                throw IntegrationTestError("only \(self.total) of \(expected) messages arrived")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }
}

/// Runs three (or `weights.count`) instances `search.example.test/i1…` of one domain, each
/// on its own connection (real TLS and SASL), until `body` returns.
func withInstances(
    server: ReferenceServer, weights: [Int?] = [nil, nil, nil], tally: InstanceTally,
    configure: @escaping @Sendable (Int, inout ComponentConfiguration) -> Void = { _, _ in },
    _ body: @escaping @Sendable ([ComponentConnection]) async throws -> Void
) async throws {
    var connections: [ComponentConnection] = []
    for (index, weight) in weights.enumerated() {
        var configuration = ScaleFixture.shared.clientConfiguration(port: server.port)
        configure(index + 1, &configuration)
        let connection = ComponentConnection(configuration: configuration, logger: testLogger("instance-\(index + 1)"))
        try connection.register("\(ScaleFixture.service)/i\(index + 1)", weight: weight, handler: tally.handler())
        connections.append(connection)
    }
    let all = connections
    try await withThrowingTaskGroup(of: Void.self) { group in
        for connection in all {
            group.addTask { try await connection.run() }
        }
        group.addTask {
            defer { for connection in all { connection.shutdown() } }
            for index in all.indices {
                try await server.waitUntilBound("\(ScaleFixture.service)/i\(index + 1)")
            }
            try await body(all)
        }
        try await group.waitForAll()
    }
}

/// `count` chat messages from `senders` users (`user<n>@example.test/r`), ids `m0`….
func userMessages(_ count: Int, senders: Int, to: String = ScaleFixture.service) -> [Element] {
    (0..<count).map { index in
        Message(
            type: .chat, from: try? JID("user\(index % senders)@example.test/r"), to: try? JID(to), id: "m\(index)",
            body: "n\(index)"
        ).element
    }
}

@Suite(.serialized, .timeLimit(.minutes(2)))
struct ScaleOutTests {
    static let instances = (1...3).map { "\(ScaleFixture.service)/i\($0)" }

    // The distribution checks (roundrobin, weighted, all, affinity, IQ results to the asker)
    // run with real c2s users: ReferenceServerC2SScaleTests.

    @Test func killingAnInstanceMidTrafficMovesItsShareAndLosesNothingSilently() async throws {
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
            let victim = Self.instances[1]
            let atKill = Locked(0)
            let afterKill = Locked([Int]())
            try await withInstances(
                server: server, tally: tally,
                configure: { index, configuration in
                    // The killed instance stays dead (no reconnect within the test).
                    if index == 2 {
                        configuration.reconnect = ReconnectPolicy(initialDelay: .seconds(60), maximumDelay: .seconds(60))
                    }
                }
            ) { _ in
                let messages = userMessages(sent, senders: 1)
                // Users send continuously while, a third of the way in, one instance dies.
                async let injected: Void = {
                    for batch in 0..<(sent / 10) {
                        try server.inject(contentsOf: Array(messages[batch * 10..<(batch + 1) * 10]))
                        await Task.yield()
                    }
                }()
                while tally.total < sent / 3 {
                    try await Task.sleep(for: .milliseconds(1))
                }
                atKill.update { $0 = tally.count(victim) }
                try await server.disconnect(hostname: victim)
                try await injected
                let deadline = ContinuousClock.now + .seconds(20)
                while tally.total + bounced.value.count < sent, ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(10))
                }
                // Afterwards the survivors take the whole domain.
                afterKill.update { $0 = Self.instances.map { tally.count($0) } }
                try server.inject(
                    contentsOf: userMessages(300, senders: 1).map { message in
                        var message = message
                        message["id"] = "after-\(message["id"] ?? "")"
                        return message
                    })
                try await tally.wait(total: afterKill.value.reduce(0, +) + 300)
            }
            let delivered = tally.total - 300
            let distinct = Set(tally.allIDs.filter { !$0.hasPrefix("after-") })
            let lost = sent - distinct.union(bounced.value).count
            let counts = Self.instances.map { tally.count($0) }
            report(
                "scale kill sent=\(sent) delivered=\(delivered) bounced=\(bounced.value.count) lost=\(lost) "
                    + "duplicated=\(delivered - distinct.count) per-instance=\(counts) victim-before-kill=\(atKill.value)")
            #expect(lost == 0, "stanzas neither delivered nor bounced")
            #expect(delivered == distinct.count, "duplicates")
            #expect(!server.boundHostnames.contains(victim))
            // Its share moved: after the kill the survivors took everything, half each.
            let after = zip(counts, afterKill.value).map { $0 - $1 }
            #expect(after == [150, 0, 150], "after the kill: \(after)")
        }
    }

    @Test func twoInstancesOnOneConnectionSplitTheDomain() async throws {
        try await withServers { servers in
            let server = try await servers.start(ScaleFixture.shared.serverConfiguration(algorithm: .roundRobin))
            let tally = InstanceTally()
            let connection = ComponentConnection(
                configuration: ScaleFixture.shared.clientConfiguration(port: server.port), logger: testLogger("two-on-one"))
            for name in ["i1", "i2"] {
                try connection.register("\(ScaleFixture.service)/\(name)", handler: tally.handler())
            }
            try await withRunningConnection(connection) { _ in
                try await server.waitUntilBound("\(ScaleFixture.service)/i1")
                try await server.waitUntilBound("\(ScaleFixture.service)/i2")
                try server.inject(contentsOf: userMessages(600, senders: 20))
                // And one stanza addressed to each instance.
                try server.inject(contentsOf: userMessages(1, senders: 1, to: "\(ScaleFixture.service)/i2"))
                try await tally.wait(total: 601)
            }
            let senders = ["i1", "i2"].map { tally.senders("\(ScaleFixture.service)/\($0)") }
            report("scale two-on-one-connection messages=\(["i1", "i2"].map { tally.count("\(ScaleFixture.service)/\($0)") })")
            #expect(senders.allSatisfy { !$0.isEmpty }, "both instances get users")
            #expect(
                senders[0].subtracting(["user0@example.test/r"]).isDisjoint(with: senders[1]), "a user reached both instances")
        }
    }

    @Test func whenTheLastInstanceDiesTheRestIsBouncedNotLost() async throws {
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
            try await withInstances(
                server: server, tally: tally,
                configure: { _, configuration in
                    configuration.reconnect = ReconnectPolicy(initialDelay: .seconds(60), maximumDelay: .seconds(60))
                }
            ) { _ in
                let messages = userMessages(sent, senders: 7)
                async let injected: Void = {
                    for batch in 0..<(sent / 10) {
                        try server.inject(contentsOf: Array(messages[batch * 10..<(batch + 1) * 10]))
                        await Task.yield()
                    }
                }()
                while tally.total < sent / 4 {
                    try await Task.sleep(for: .milliseconds(1))
                }
                for instance in Self.instances {
                    try await server.disconnect(hostname: instance)
                }
                try await injected
                // With every instance gone the domain bounces, as with none bound.
                try server.inject(
                    contentsOf: userMessages(100, senders: 1).map { message in
                        var message = message
                        message["id"] = "late-\(message["id"] ?? "")"
                        return message
                    })
                let deadline = ContinuousClock.now + .seconds(20)
                while tally.total + bounced.value.count < sent + 100, ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(10))
                }
            }
            let delivered = Set(tally.allIDs)
            let lost = sent + 100 - delivered.union(bounced.value).count
            report("scale kill-all sent=\(sent)+100 delivered=\(delivered.count) bounced=\(bounced.value.count) lost=\(lost)")
            #expect(lost == 0)
            #expect(
                bounced.value.filter { $0.hasPrefix("late-") }.count == 100, "the domain bounces once its last instance is gone")
            #expect(delivered.isDisjoint(with: bounced.value), "a stanza both delivered and bounced")
        }
    }

    @Test func customizableMessageRoutingQueryAndSetOverTheWire() async throws {
        try await withServers { servers in
            let server = try await servers.start(ScaleFixture.shared.serverConfiguration(algorithm: .roundRobin))
            let tally = InstanceTally()
            try await withInstances(server: server, weights: [nil], tally: tally) { connections in
                let from = try JID("\(ScaleFixture.service)/i1")
                let serverJID = try JID(ScaleFixture.domain)
                let info = try await connections[0].request(
                    IQ(
                        type: .get, from: from, to: serverJID, id: "disco",
                        payload: Element("query", namespace: Namespace.discoInfo)))
                #expect(
                    info.payload?.children("feature", namespace: Namespace.discoInfo).contains { $0["var"] == "urn:xmpp:cmr:0" }
                        == true)
                let state = try await connections[0].request(
                    IQ(
                        type: .get, from: from, to: serverJID, id: "cmr1",
                        payload: Element("query", namespace: Namespace.customizableMessageRouting)))
                #expect(
                    state.payload?.firstChild("active", namespace: Namespace.customizableMessageRouting)?["algorithm"]
                        == "urn:xmpp:cmr:roundrobin")
                let change = try await connections[0].request(
                    IQ(
                        type: .set, from: from, to: serverJID, id: "cmr2",
                        payload: Element(
                            "cmr", namespace: Namespace.customizableMessageRouting,
                            attributes: ["algorithm": "urn:xmpp:cmr:weighted"])))
                #expect(change.type == .result)
                #expect(server.routingAlgorithm(for: ScaleFixture.service) == .weighted)
                let refused = try await connections[0].request(
                    IQ(
                        type: .set, from: from, to: serverJID, id: "cmr3",
                        payload: Element(
                            "cmr", namespace: Namespace.customizableMessageRouting,
                            attributes: ["algorithm": "urn:xmpp:cmr:nonsense"])))
                #expect(refused.error?.condition == .badRequest)
            }
        }
    }

    @Test func aRedirectFromAHandlerIsAValid302() async throws {
        try await withServers { servers in
            let server = try await servers.start(ScaleFixture.shared.serverConfiguration())
            let tally = InstanceTally()
            let inbox = UserStanzaInbox(server)
            var connections: [ComponentConnection] = []
            for index in 1...2 {
                let connection = ComponentConnection(
                    configuration: ScaleFixture.shared.clientConfiguration(port: server.port),
                    logger: testLogger("redirect-\(index)"))
                try connection.register("\(ScaleFixture.service)/i\(index)", handler: tally.handler(owner: { "i2" }))
                connections.append(connection)
            }
            let pair = connections
            try await withRunningConnection(pair[0]) { _ in
                try await withRunningConnection(pair[1]) { _ in
                    try await server.waitUntilBound("\(ScaleFixture.service)/i1")
                    try await server.waitUntilBound("\(ScaleFixture.service)/i2")
                    let query = IQ(
                        type: .get, from: try JID("alice@example.test/phone"), to: try JID("\(ScaleFixture.service)/i1"),
                        id: "state-1", payload: Element("query", namespace: "urn:example:state"))
                    try server.inject(query.element)
                    let answer = try #require(try await inbox.take(id: "state-1", timeout: .seconds(10)).flatMap(IQ.init))
                    #expect(answer.type == .error)
                    #expect(answer.error?.condition == .redirect)
                    #expect(answer.error?.legacyCode == 302)
                    let redirected = try #require(IQRedirect.redirectedQuery(in: answer))
                    try IQRedirect.validate(original: query, redirected: redirected)
                    #expect(redirected.element["to"] == "\(ScaleFixture.service)/i2")
                    // The user follows it and gets the owner's answer.
                    try server.inject(redirected.element)
                    let final = try #require(try await inbox.take(id: "state-1", timeout: .seconds(10)).flatMap(IQ.init))
                    #expect(final.type == .result)
                    #expect(final.payload?.text == "\(ScaleFixture.service)/i2")
                }
            }
        }
    }
}
