import ComponentKit
import Foundation
import Logging
import NIOCore
import NIOPosix
import ReferenceServer
import StockPlugins
import Synchronization
import Testing
import XMPPCore
import XMPPStream
import XMPPTestSupport

@testable import ComponentHost

/// Out-of-process components through the host's `external` plugin, against the reference
/// server: a ComponentKit XEP-0114 component and raw XEP-0114 streams connect to the
/// host's local listener and are carried upstream on the host's one XEP-0225 stream.
@Suite("External components through the host", .serialized, .timeLimit(.minutes(3)))
struct ExternalLiveTests {
    static let secret = "s3cret-for-the-gateway"

    /// A local component written with ComponentKit (XEP-0114 to the host's listener): echoes
    /// messages and advertises its own disco identity.
    struct LocalEcho: ComponentHandler {
        var discoInfo: DiscoInfo {
            DiscoInfo(identities: [DiscoInfo.Identity(category: "gateway", type: "xmpp", name: "Local gateway")])
        }

        func handle(_ stanza: Stanza, in context: ComponentContext) async throws {
            guard case .message(let message) = stanza, message.type != .error else { return }
            try await context.send(message.reply(body: message.body ?? ""))
        }
    }

    static func localComponent(port: Int, hostname: String, secret: String = Self.secret) -> ComponentConnection {
        var configuration = ComponentConfiguration(
            host: "127.0.0.1", port: port, serverDomain: LiveHostTests.domain, identity: hostname, password: Secret(secret))
        configuration.protocolMode = .xep0114
        configuration.tlsMode = .none
        configuration.reconnectPolicy = ReconnectPolicy(initialDelay: .milliseconds(100), maxAttempts: nil)
        return ComponentConnection(configuration: configuration, logger: Logger(label: "local-\(hostname)"))
    }

    /// Runs a local component while `body` runs.
    static func whileLocalRuns<Result>(
        _ connection: ComponentConnection, hostname: String, _ body: () async throws -> Result
    ) async throws -> Result {
        try connection.register(hostname, handler: LocalEcho())
        let running = Task { try await connection.run() }
        return try await withCleanup(body) {
            connection.shutdown()
            _ = try? await running.value
        }
    }

    static func configuration(_ setup: LiveHostTests.Setup, port: Int, grace: Double = 5) throws -> String {
        let secretFile = try setup.directory.write("gw.secret", Self.secret + "\n")
        let rawSecretFile = try setup.directory.write("raw.secret", "raw-secret\n")
        return setup.configuration(components: [("echo.example.test", "echo")]) + """

            [[component]]
            hostname = "gw.example.test"
            plugin = "external"
            [component.options]
            listen = "127.0.0.1:\(port)"
            secret_file = "\(secretFile)"
            grace_seconds = \(grace)

            [[component]]
            hostname = "raw.example.test"
            plugin = "external"
            [component.options]
            listen = "127.0.0.1:\(port)"
            secret_file = "\(rawSecretFile)"
            grace_seconds = 0

            """
    }

    /// A host with ``configuration(_:port:grace:)`` (not running yet).
    static func host(_ setup: LiveHostTests.Setup, port: Int) throws -> ComponentHost {
        let path = try Fixtures.write(in: setup.directory, try Self.configuration(setup, port: port))
        return try ComponentHost(
            configuration: try HostConfiguration.load(path: path, environment: [:], registry: .stock), registry: .stock,
            logger: Logger(label: "host"))
    }

    @Test func externalComponentsAreBoundWhenTheyConnectAndServeUsers() async throws {
        try await LiveHostTests.Setup.with { setup in try await self.serve(setup) }
    }

    private func serve(_ setup: LiveHostTests.Setup) async throws {
        let port = try FreePort.allocate()
        let host = try Self.host(setup, port: port)
        try await LiveHostTests.whileRunning(host) {
            try await setup.server.waitUntilBound("echo.example.test")
            // Not bound upstream before its component connects.
            #expect(!setup.server.boundHostnames.contains("gw.example.test"))
            let replyWhileAway = try await setup.ask("gw.example.test", "anyone?", id: "away")
            #expect(replyWhileAway["type"] == "error")

            let local = Self.localComponent(port: port, hostname: "gw.example.test")
            try await Self.whileLocalRuns(local, hostname: "gw.example.test") {
                try await setup.server.waitUntilBound("gw.example.test")
                // Messages both ways: alice -> host -> local component -> host -> alice.
                #expect(Message(try await setup.ask("gw.example.test", "hello", id: "m1"))?.body == "hello")
                // Disco of the external hostname is answered by the external component.
                try setup.server.inject(
                    IQ(
                        type: .get, from: try JID("alice@example.test/x"), to: try JID("gw.example.test"), id: "disco1",
                        payload: Element("query", namespace: Namespace.discoInfo)
                    ).element)
                let disco = try #require(try await setup.users.take(id: "disco1", timeout: .seconds(10)))
                #expect(disco["type"] == "result")
                let identity = disco.firstChild("query", namespace: Namespace.discoInfo)?.firstChild(
                    "identity", namespace: Namespace.discoInfo)
                #expect(identity?["name"] == "Local gateway")
                // An IQ the component does not know gets its service-unavailable, once.
                try setup.server.inject(
                    IQ(
                        type: .get, from: try JID("alice@example.test/x"), to: try JID("gw.example.test"), id: "iq2",
                        payload: Element("query", namespace: "urn:example:unknown")
                    ).element)
                let unknown = try #require(try await setup.users.take(id: "iq2", timeout: .seconds(10)))
                #expect(unknown["type"] == "error")
                #expect(try await setup.users.take(id: "iq2", timeout: .milliseconds(300)) == nil)

                // A second component for the connected hostname: conflict; the first keeps it.
                let second = try await RawComponent.connect(port: port)
                let conflict = try await second.authenticate("gw.example.test", secret: Self.secret)
                #expect(conflict?.condition == .conflict)
                await second.close()
                #expect(Message(try await setup.ask("gw.example.test", "still mine", id: "m2"))?.body == "still mine")

                // Wrong secret, unknown hostname.
                let wrong = try await RawComponent.connect(port: port)
                #expect(try await wrong.authenticate("gw.example.test", secret: "nope")?.condition == .notAuthorized)
                await wrong.close()
                let unknownHost = try await RawComponent.connect(port: port)
                #expect(try await unknownHost.authenticate("nosuch.example.test", secret: "x")?.condition == .hostUnknown)
                await unknownHost.close()

                // A raw component on the same listener for the other hostname.
                let raw = try await RawComponent.connect(port: port)
                #expect(try await raw.authenticate("raw.example.test", secret: "raw-secret") == nil)
                try await setup.server.waitUntilBound("raw.example.test")
                try setup.server.inject(
                    Message(
                        type: .chat, from: try JID("alice@example.test/x"), to: try JID("raw.example.test"), id: "r1",
                        body: "to raw"
                    ).element)
                let received = try await raw.nextElement()
                #expect(received?["id"] == "r1")
                #expect(Message(try #require(received))?.body == "to raw")
                // Its own stanza goes upstream unchanged.
                try await raw.send(
                    Message(
                        type: .chat, from: try JID("raw.example.test"), to: try JID("alice@example.test/x"), id: "r2",
                        body: "from raw"
                    ).element)
                #expect(Message(try #require(try await setup.users.take(id: "r2", timeout: .seconds(10))))?.body == "from raw")
                // XEP-0225 binding requests are the host's: refused, never relayed upstream
                // (relayed, this one would unbind the other component's hostname).
                try await raw.send(
                    IQ(
                        type: .set, from: try JID("raw.example.test"), to: try JID("example.test"), id: "b1",
                        payload: Element(
                            "unbind", namespace: Namespace.component,
                            children: [Element("hostname", namespace: Namespace.component, text: "gw.example.test")])
                    ).element)
                let refusal = try #require(try await raw.nextElement())
                #expect(refusal["id"] == "b1" && refusal["type"] == "error")
                #expect(IQ(refusal)?.error?.condition == .featureNotImplemented)
                #expect(setup.server.boundHostnames.contains("gw.example.test"))
                // A spoofed `from` ends that stream only.
                try await raw.send(
                    Message(
                        type: .chat, from: try JID("gw.example.test"), to: try JID("alice@example.test/x"), id: "r3",
                        body: "spoof"
                    ).element)
                #expect(try await raw.nextStreamError()?.condition == .invalidFrom)
                await raw.close()
                try await setup.server.waitUntilUnbound("raw.example.test")
                #expect(try await setup.users.take(id: "r3", timeout: .milliseconds(300)) == nil)
                #expect(Message(try await setup.ask("gw.example.test", "unharmed", id: "m3"))?.body == "unharmed")
            }
            // The local component left: after the grace the hostname is unbound upstream.
            try await setup.server.waitUntilUnbound("gw.example.test", timeout: .seconds(15))
            #expect(setup.server.boundHostnames.contains("echo.example.test"))
        }
    }

    @Test func stanzasWaitDuringTheGraceAndReachTheReturningComponent() async throws {
        try await LiveHostTests.Setup.with { setup in
            let port = try FreePort.allocate()
            let path = try Fixtures.write(in: setup.directory, try Self.configuration(setup, port: port, grace: 20))
            let host = try ComponentHost(
                configuration: try HostConfiguration.load(path: path, environment: [:], registry: .stock), registry: .stock,
                logger: Logger(label: "host"))
            try await LiveHostTests.whileRunning(host) {
                try await Self.whileLocalRuns(
                    Self.localComponent(port: port, hostname: "gw.example.test"), hostname: "gw.example.test"
                ) {
                    try await setup.server.waitUntilBound("gw.example.test")
                    #expect(Message(try await setup.ask("gw.example.test", "first", id: "g1"))?.body == "first")
                }
                // Gone, but within the grace: still bound, and stanzas wait.
                #expect(setup.server.boundHostnames.contains("gw.example.test"))
                for index in 0..<5 {
                    try setup.server.inject(
                        Message(
                            type: .chat, from: try JID("alice@example.test/x"), to: try JID("gw.example.test"), id: "w\(index)",
                            body: "wait \(index)"
                        ).element)
                }
                #expect(try await setup.users.take(id: "w0", timeout: .milliseconds(500)) == nil)
                // The component returns: everything queued arrives, in order, nothing lost.
                try await Self.whileLocalRuns(
                    Self.localComponent(port: port, hostname: "gw.example.test"), hostname: "gw.example.test"
                ) {
                    for index in 0..<5 {
                        let answer = try #require(try await setup.users.take(id: "w\(index)", timeout: .seconds(10)))
                        #expect(Message(answer)?.body == "wait \(index)")
                    }
                }
            }
        }
    }
}

extension ExternalLiveTests {
    @Test func reloadWithChangedOptionsServesTheHostnameAnew() async throws {
        try await LiveHostTests.Setup.with { setup in
            let port = try FreePort.allocate()
            let path = try Fixtures.write(in: setup.directory, try Self.configuration(setup, port: port, grace: 5))
            let host = try ComponentHost(
                configuration: try HostConfiguration.load(path: path, environment: [:], registry: .stock), registry: .stock,
                logger: Logger(label: "host"))
            try await LiveHostTests.whileRunning(host) {
                try await Self.whileLocalRuns(
                    Self.localComponent(port: port, hostname: "gw.example.test"), hostname: "gw.example.test"
                ) {
                    try await setup.server.waitUntilBound("gw.example.test")
                    #expect(Message(try await setup.ask("gw.example.test", "before", id: "rl1"))?.body == "before")
                    // The grace changes: the hostname is served anew (its component is asked to
                    // reconnect, and does); an unchanged file changes nothing.
                    _ = try setup.directory.write("host.toml", try Self.configuration(setup, port: port, grace: 7))
                    let report = try await host.reload()
                    #expect(report.failures.isEmpty)
                    #expect(report.plan.changed == ["gw.example.test"])
                    #expect(
                        await host.status.components.first { $0.hostname == "gw.example.test" }?.options["grace_seconds"]
                            == .double(7))
                    try await setup.server.waitUntilBound("gw.example.test", timeout: .seconds(20))
                    _ = try await ExternalSupervisedTests.waitFor(host, "gw.example.test", "reconnected") { $0.connected }
                    #expect(Message(try await setup.ask("gw.example.test", "after", id: "rl2"))?.body == "after")
                    let again = try await host.reload()
                    #expect(again.plan.isEmpty)
                }
            }
        }
    }

    @Test func aComponentThatStopsReadingHoldsUpOnlyItsOwnHostname() async throws {
        try await LiveHostTests.Setup.with { setup in
            let port = try FreePort.allocate()
            let host = try Self.host(setup, port: port)
            try await LiveHostTests.whileRunning(host) {
                try await Self.whileLocalRuns(
                    Self.localComponent(port: port, hostname: "gw.example.test"), hostname: "gw.example.test"
                ) {
                    try await setup.server.waitUntilBound("gw.example.test")
                    let stuck = try await RawComponent.connect(port: port)
                    #expect(try await stuck.authenticate("raw.example.test", secret: "raw-secret") == nil)
                    try await setup.server.waitUntilBound("raw.example.test")
                    stuck.setReading(false)
                    // 24 MiB for the component that does not read: far past the socket buffers
                    // and its hostname's budget (4 MiB).
                    let body = String(repeating: "x", count: 4096)
                    for index in 0..<6_000 {
                        try setup.server.inject(
                            Message(
                                type: .chat, from: try JID("alice@example.test/x"), to: try JID("raw.example.test"),
                                id: "f\(index)", body: body
                            ).element)
                    }
                    // The other hostname, on the same upstream stream, still answers. Its
                    // messages come behind the 24 MiB on the one upstream TCP stream: the
                    // bound is generous (a loaded CI machine took over 10 s to read through).
                    for index in 0..<5 {
                        #expect(
                            Message(
                                try await setup.ask("gw.example.test", "alive \(index)", id: "a\(index)", timeout: .seconds(90))
                            )?.body == "alive \(index)")
                    }
                    // The excess of the stuck hostname is answered, not silently dropped.
                    let refused = try #require(try await setup.users.take(id: "f5999", timeout: .seconds(90)))
                    #expect(refused["type"] == "error")
                    #expect(Message(refused)?.error?.condition == .resourceConstraint)
                    await stuck.close()
                }
            }
        }
    }

    /// Whether `try? authenticate(…)` succeeded (it returned no stream error).
    private static func succeeded(_ result: StreamError??) -> Bool {
        if case .some(.none) = result { return true }
        return false
    }

    /// A local process that opens connections and sends nothing cannot pile up sessions:
    /// past ``ExternalGateway/maximumPendingHandshakes`` connections waiting for their
    /// handshake, a new one is closed at once; those waiting are still served, and once
    /// they are gone a component connects again.
    ///
    /// On a unix socket of the test's own directory: a TCP port can also be reached by a
    /// stray connection of another test (a port freed by one test and reused by the next),
    /// which would take a place among the 32.
    @Test func connectionsWaitingForTheirHandshakeAreCapped() async throws {
        try await LiveHostTests.Setup.with { setup in
            let socket = setup.directory.path + "/cap.sock"
            let secretFile = try setup.directory.write("raw.secret", "raw-secret\n")
            let text =
                setup.configuration(components: [("echo.example.test", "echo")]) + """

                    [[component]]
                    hostname = "raw.example.test"
                    plugin = "external"
                    [component.options]
                    listen = "unix:\(socket)"
                    secret_file = "\(secretFile)"
                    grace_seconds = 0

                    """
            let host = try ComponentHost(
                configuration: try HostConfiguration.load(
                    path: try Fixtures.write(in: setup.directory, text), environment: [:], registry: .stock),
                registry: .stock, logger: Logger(label: "host"))
            let connect = { try await RawComponent.connect(unixSocket: socket) }
            try await LiveHostTests.whileRunning(host) {
                try await setup.server.waitUntilBound("echo.example.test")
                let deadline = ContinuousClock.now + .seconds(10)
                while SystemCalls.ownerAndMode(of: socket) == nil, ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(20))
                }
                var idle: [RawComponent] = []
                try await withCleanup {
                    // 8 more than the cap, none sending anything: whatever the order the host
                    // accepts them in, 32 get a session (their stream header is answered) and
                    // the others are closed unanswered.
                    for _ in 0..<(ExternalGateway.maximumPendingHandshakes + 8) {
                        idle.append(try await connect())
                    }
                    var answered: [RawComponent] = []
                    for connection in idle {
                        if (try? await connection.opensStream(to: "raw.example.test")) == true {
                            answered.append(connection)
                        } else {
                            await connection.close()
                        }
                    }
                    #expect(answered.count == ExternalGateway.maximumPendingHandshakes, "\(answered.count) of 40 served")
                    idle = answered
                    // One that waited is still served.
                    let last = idle.popLast()
                    let waited = try #require(last)
                    #expect(try await waited.handshake("raw.example.test", secret: "raw-secret") == nil)
                    try await setup.server.waitUntilBound("raw.example.test")
                    await waited.close()
                    try await setup.server.waitUntilUnbound("raw.example.test")
                    // The idle ones leave: a new component is served again (the host sees the
                    // closes a moment later, so a few attempts, bounded).
                    for connection in idle { await connection.close() }
                    idle.removeAll()
                    var served = false
                    for _ in 0..<50 where !served {
                        let again = try await connect()
                        served = Self.succeeded(try? await again.authenticate("raw.example.test", secret: "raw-secret"))
                        await again.close()
                        if !served { try await Task.sleep(for: .milliseconds(100)) }
                    }
                    #expect(served, "no component served after the idle connections left")
                } cleanup: {
                    for connection in idle { await connection.close() }
                }
            }
        }
    }

    @Test func runtimeBindOnAUnixSocketAndUnbindEndTheLocalStream() async throws {
        try await LiveHostTests.Setup.with { setup in
            let path = try Fixtures.write(in: setup.directory, setup.configuration(components: [("echo.example.test", "echo")]))
            let host = try ComponentHost(
                configuration: try HostConfiguration.load(path: path, environment: [:], registry: .stock), registry: .stock,
                logger: Logger(label: "host"))
            let socket = setup.directory.path + "/gw.sock"
            let secretFile = try setup.directory.write("rt.secret", "rt-secret\n")
            try await LiveHostTests.whileRunning(host) {
                try await setup.server.waitUntilBound("echo.example.test")
                // What `component-host bind rt.example.test --plugin external --set …` sends.
                let bound = await AdminServer.respond(
                    to: AdminRequest(
                        command: .bind, hostname: "rt.example.test", plugin: "external",
                        set: ["listen=unix:\(socket)", "secret_file=\(secretFile)", "grace_seconds=0"]),
                    host: host)
                #expect(bound.ok, "\(bound.error ?? "")")
                // A public listen address is refused, with the reason.
                let refused = await AdminServer.respond(
                    to: AdminRequest(
                        command: .bind, hostname: "pub.example.test", plugin: "external",
                        set: ["listen=0.0.0.0:5347", "secret_file=\(secretFile)"]),
                    host: host)
                #expect(!refused.ok)
                #expect(refused.error?.contains("not a loopback address") == true)

                let deadline = ContinuousClock.now + .seconds(10)
                while SystemCalls.ownerAndMode(of: socket) == nil, ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(20))
                }
                #expect(SystemCalls.ownerAndMode(of: socket)?.mode == 0o600)
                #expect(!setup.server.boundHostnames.contains("rt.example.test"))
                let raw = try await RawComponent.connect(unixSocket: socket)
                #expect(try await raw.authenticate("rt.example.test", secret: "rt-secret") == nil)
                try await setup.server.waitUntilBound("rt.example.test")
                #expect(await host.status.components.first { $0.hostname == "rt.example.test" }?.external?.connected == true)

                // Unbind: the local stream is ended, the hostname unbound, the socket removed.
                let unbound = await AdminServer.respond(
                    to: AdminRequest(command: .unbind, hostname: "rt.example.test"), host: host)
                #expect(unbound.ok, "\(unbound.error ?? "")")
                #expect(try await raw.nextStreamError()?.condition == .systemShutdown)
                try await setup.server.waitUntilUnbound("rt.example.test")
                await raw.close()
                let gone = ContinuousClock.now + .seconds(10)
                while SystemCalls.ownerAndMode(of: socket) != nil, ContinuousClock.now < gone {
                    try await Task.sleep(for: .milliseconds(20))
                }
                #expect(SystemCalls.ownerAndMode(of: socket) == nil)
            }
        }
    }
}

/// A raw XEP-0114 component stream, for the cases a well-behaved library never produces.
final class RawComponent: Sendable {
    typealias Channel = NIOAsyncChannel<XMLStreamEvent, XMLStreamFrame>
    let channel: Channel
    let events: AsyncStream<XMLStreamEvent>
    private let task: Task<Void, Never>
    private final class Flag: Sendable {
        let value = Atomic<Bool>(true)
    }

    private let reading = Flag()
    private let streamID = Mutex<String?>(nil)

    private init(channel: Channel) {
        self.channel = channel
        let (events, continuation) = AsyncStream.makeStream(of: XMLStreamEvent.self)
        self.events = events
        let reading = self.reading
        self.task = Task {
            try? await channel.executeThenClose { inbound, _ in
                for try await event in inbound {
                    continuation.yield(event)
                    // A component that stops reading: NIO stops reading the socket once its
                    // buffer is full, the kernel's buffers fill, and the host cannot write.
                    while !reading.value.load(ordering: .relaxed) {
                        try await Task.sleep(for: .milliseconds(20))
                    }
                }
            }
            continuation.finish()
        }
    }

    /// Stops (or resumes) reading from the host.
    func setReading(_ value: Bool) {
        self.reading.value.store(value, ordering: .relaxed)
    }

    static func connect(port: Int) async throws -> RawComponent {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addXMLStreamHandler(contentNamespace: Namespace.componentAccept)
                    return try Channel(wrappingChannelSynchronously: channel)
                }
            }
        return RawComponent(channel: channel)
    }

    static func connect(unixSocket path: String) async throws -> RawComponent {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(unixDomainSocketPath: path) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addXMLStreamHandler(contentNamespace: Namespace.componentAccept)
                    return try Channel(wrappingChannelSynchronously: channel)
                }
            }
        return RawComponent(channel: channel)
    }

    private func write(_ frames: [XMLStreamFrame]) async throws {
        for frame in frames {
            try await self.channel.channel.writeAndFlush(frame)
        }
    }

    /// Sends a stream header for `hostname`; whether the host answered with its own (a
    /// session), rather than closing the connection.
    func opensStream(to hostname: String) async throws -> Bool {
        try await self.write([.header(StreamHeader(contentNamespace: Namespace.componentAccept, to: hostname, version: nil))])
        var iterator = self.events.makeAsyncIterator()
        while let event = await iterator.next() {
            if case .streamOpened(let header) = event {
                self.streamID.withLock { $0 = header.id }
                return true
            }
        }
        return false
    }

    /// The handshake on a stream ``opensStream(to:)`` opened; `nil` on success, else the
    /// stream error.
    func handshake(_ hostname: String, secret: String) async throws -> StreamError? {
        let opened = self.streamID.withLock { $0 }
        let id = try #require(opened, "no stream opened")
        try await self.write([
            .element(
                Element(
                    "handshake", namespace: Namespace.componentAccept,
                    text: ComponentHandshake.digest(streamID: id, secret: secret)))
        ])
        var iterator = self.events.makeAsyncIterator()
        while let event = await iterator.next() {
            guard case .element(let element) = event else { continue }
            if element.name.localName == "handshake" { return nil }
            if let error = StreamError(element: element) { return error }
        }
        return StreamError(.undefinedCondition, text: "connection closed")
    }

    /// Opens the stream and hands shakes; `nil` on success, else the stream error.
    func authenticate(_ hostname: String, secret: String) async throws -> StreamError? {
        try await self.write([.header(StreamHeader(contentNamespace: Namespace.componentAccept, to: hostname, version: nil))])
        var iterator = self.events.makeAsyncIterator()
        var streamID: String?
        while let event = await iterator.next() {
            switch event {
            case .streamOpened(let header):
                streamID = header.id
                if let id = streamID {
                    try? await self.write([
                        .element(
                            Element(
                                "handshake", namespace: Namespace.componentAccept,
                                text: ComponentHandshake.digest(streamID: id, secret: secret)))
                    ])
                }
            case .element(let element):
                if element.name.localName == "handshake" { return nil }
                if let error = StreamError(element: element) { return error }
            case .streamClosed:
                return StreamError(.undefinedCondition, text: "closed")
            }
        }
        return StreamError(.undefinedCondition, text: "connection closed")
    }

    func send(_ element: Element) async throws {
        try await self.write([.element(element)])
    }

    /// The next stanza (not a stream error).
    func nextElement() async throws -> Element? {
        var iterator = self.events.makeAsyncIterator()
        while let event = await iterator.next() {
            if case .element(let element) = event, element.name.namespace == Namespace.client { return element }
        }
        return nil
    }

    /// The next stream error.
    func nextStreamError() async throws -> StreamError? {
        var iterator = self.events.makeAsyncIterator()
        while let event = await iterator.next() {
            if case .element(let element) = event, let error = StreamError(element: element) { return error }
        }
        return nil
    }

    func close() async {
        self.setReading(true)
        self.channel.channel.close(promise: nil)
        await self.task.value
    }
}
