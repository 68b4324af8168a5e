import ComponentKit
import Foundation
import Synchronization
import Testing
import XMPPCore
import XMPPTLS
import XMPPTestSupport

/// A graceful shutdown over XEP-0114 (what `component-host` does on SIGTERM, in a rolling
/// restart) against a real ejabberd 23.01: what the component had received before it
/// closed its stream is answered, on that stream, before the close.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct EjabberdShutdownTests {
    private static let secret = "drain-secret"

    @Test func shutdownAnswersWhatWasReceivedBeforeClosing() async throws {
        let ejabberd = try await EjabberdFixture.start(
            .init(
                services: [.init(hostname: "echo.localhost", password: Self.secret)],
                serviceListenerOptions: ["global_routes: false"],
                accounts: [.init(username: "alice", password: "alice-pass")]))
        defer { ejabberd.stop() }
        var configuration = ComponentConfiguration(
            host: "127.0.0.1", port: ejabberd.componentTLSPort, serverDomain: "localhost", identity: "echo.localhost",
            password: Secret(Self.secret))
        configuration.protocolMode = .xep0114
        configuration.tlsMode = .direct
        configuration.trustRoots = .caFile(ejabberd.caCertificatePath)
        configuration.tlsServerName = "localhost"
        let connection = ComponentConnection(configuration: configuration, logger: testLogger("ejabberd-drain"))
        let events = EventRecorder(connection)
        let handled = Atomic<Int>(0)
        let failedSends = Mutex<[String]>([])
        // The handler holds its first stanza until the shutdown has begun, so that the others
        // wait in its mailbox when it comes.
        let gate = Gate()
        try connection.register(
            "echo.localhost",
            handler: ClosureHandler { stanza, context in
                guard case .message(let message) = stanza, message.type != .error else { return }
                await gate.wait()
                do {
                    try await context.send(message.reply(body: message.body ?? ""))
                    handled.add(1, ordering: .relaxed)
                } catch {
                    failedSends.withLock { $0.append("\(message.id ?? "?"): \(error)") }
                }
            })
        let running = Task { try await connection.run() }
        try await withCleanup {
            try await events.waitBound(["echo.localhost"])
            let alice = try await C2SClient.connect(
                .init(
                    port: ejabberd.c2sPort, domain: "localhost", username: "alice", password: "alice-pass",
                    caFile: ejabberd.caCertificatePath, allowsChannelBinding: false))
            defer { Task { await alice.close() } }
            let total = 100
            for number in 0..<total {
                try await alice.send(
                    Message(type: .chat, to: try JID("echo.localhost"), id: "d\(number)", body: "\(number)").element)
            }
            // Every message has reached the component (most still wait for the slow handler)
            // before the shutdown starts: nothing is in flight in ejabberd.
            let deadline = ContinuousClock.now + .seconds(20)
            while connection.status.hostnames.first?.stanzasIn ?? 0 < total, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(5))
            }
            try #require(connection.status.hostnames.first?.stanzasIn == total, "\(connection.status)")
            let waitingAtShutdown = total - handled.load(ordering: .relaxed)
            #expect(waitingAtShutdown == total)
            connection.shutdown()
            // The shutdown has begun (the connection no longer accepts binds); let the handler go.
            try await Task.sleep(for: .milliseconds(50))
            gate.open()
            try await running.value
            var echoes = Set<String>()
            var bounces = 0
            while let element = try? await alice.next(timeout: .seconds(2)) {
                guard element.name.localName == "message", let id = element["id"] else { continue }
                if element["type"] == "error" { bounces += 1 } else { echoes.insert(id) }
            }
            report(
                "ejabberd XEP-0114 shutdown: \(total) received, \(waitingAtShutdown) still waiting for the handler at shutdown; "
                    + "echoes delivered \(echoes.count), sends that failed \(failedSends.withLock { $0.count }), bounced \(bounces)"
            )
            #expect(echoes.count == total, "lost: \((0..<total).map { "d\($0)" }.filter { !echoes.contains($0) }.prefix(20))")
            #expect(failedSends.withLock { $0 }.isEmpty, "\(failedSends.withLock { $0.prefix(5) })")
        } cleanup: {
            gate.open()
            connection.shutdown()
            _ = try? await running.value
        }
    }
}

/// Holds tasks until opened.
private final class Gate: Sendable {
    private let state = Mutex<(open: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func wait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resume = self.state.withLock { state -> Bool in
                if state.open { return true }
                state.waiters.append(continuation)
                return false
            }
            if resume { continuation.resume() }
        }
    }

    func open() {
        let waiters = self.state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.open = true
            defer { state.waiters.removeAll() }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }
}
