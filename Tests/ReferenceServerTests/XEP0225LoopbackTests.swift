import ComponentKit
import Foundation
import Logging
import Testing
import XMPPCore
import XMPPStream
import XMPPTLS

@testable import ReferenceServer

/// XEP-0225 end to end with the SDK's own `ComponentConnection` as the client.
@Suite(.timeLimit(.minutes(1))) struct XEP0225LoopbackTests {
    func configuration(port: Int, password: String = Fixture.password) -> ComponentConfiguration {
        var configuration = ComponentConfiguration(
            host: "127.0.0.1", port: port, serverDomain: Fixture.domain, identity: Fixture.identity,
            password: Secret(password))
        configuration.protocolMode = .xep0225
        configuration.trustRoots = .caFile(Fixture.shared.files.caCertificateFile)
        configuration.reconnect.maxAttempts = 1
        configuration.requestTimeout = .seconds(5)
        configuration.connectTimeout = .seconds(10)
        return configuration
    }

    /// Runs a connection while `body` runs, then shuts it down and waits for `run()`.
    func withConnection<T: Sendable>(
        _ configuration: ComponentConfiguration,
        server: ReferenceServer,
        _ body: @escaping @Sendable (ComponentConnection, AsyncStream<ComponentEvent>) async throws -> T
    ) async throws -> T {
        var logger = Logger(label: "component")
        logger.logLevel = ProcessInfo.processInfo.environment["REFSERVER_DEBUG"] != nil ? .trace : .critical
        let connection = ComponentConnection(configuration: configuration, logger: logger)
        let events = connection.events()
        let runner = Task { try await connection.run() }
        let result: Result<T, any Error>
        do {
            result = .success(try await withTimeout(.seconds(30)) { try await body(connection, events) })
        } catch {
            result = .failure(error)
        }
        debugLog("body done: \(result)")
        connection.shutdown()
        // Workaround for a ComponentKit bug (see the report): serve() awaits the stream's
        // closeFuture inside a task group before closing the stream itself, so a graceful
        // shutdown() never completes while the server keeps the stream open. Dropping the
        // connection from the server side lets run() return.
        server.disconnectComponents()
        // run() must end after shutdown(); bounded so that a stuck run() fails the test instead of hanging it.
        let finished = await Self.waitForTask(runner, timeout: .seconds(5))
        debugLog("runner finished: \(finished)")
        if !finished {
            // Known ComponentKit issue (reported, not fixed here): after a server-side close
            // the reconnect back-off can miss shutdown(); cancellation ends it.
            runner.cancel()
            let cancelled = await Self.waitForTask(runner, timeout: .seconds(5))
            if !cancelled { Issue.record("ComponentConnection.run() ended neither on shutdown() nor on cancellation") }
        }
        return try result.get()
    }

    /// Waits for a task without awaiting its (non-cancellable) value past the timeout.
    static func waitForTask(_ task: Task<Void, any Error>, timeout: Duration) async -> Bool {
        let (stream, continuation) = AsyncStream<Bool>.makeStream()
        Task {
            _ = try? await task.value
            continuation.yield(true)
        }
        Task {
            try? await Task.sleep(for: timeout)
            continuation.yield(false)
        }
        for await value in stream { return value }
        return false
    }

    static func connected(_ events: AsyncStream<ComponentEvent>) async throws -> ConnectionInfo {
        for await event in events {
            if event.kind == .connected, let info = event.info { return info }
            if event.kind == .disconnected { throw TestFailure("disconnected: \(event.reason ?? "-")") }
        }
        throw TestFailure("events ended")
    }

    @Test func startTLSAndScramPlusBindAndRoute() async throws {
        try await withServer { server in
            let users = server.userStanzas()
            try await self.withConnection(self.configuration(port: server.port), server: server) { connection, events in
                let info = try await Self.connected(events)
                #expect(info.tlsVersion?.contains("1.3") == true || info.tlsVersion?.contains("1_3") == true)
                #expect(info.saslMechanism == "SCRAM-SHA-256-PLUS")

                let echo = ClosureHandler { stanza, context in
                    guard case .message(let message) = stanza, message.type != .error else { return }
                    try await context.send(message.reply(body: "echo: \(message.body ?? "")"))
                }
                #expect(try await connection.bind("a.example.test", handler: echo) == "a.example.test")
                #expect(try await connection.bind("x.c.example.test/worker1", handler: echo) == "x.c.example.test/worker1")
                #expect(server.boundHostnames == ["a.example.test", "x.c.example.test/worker1"])

                // not-allowed
                let refused = await #expect(throws: ComponentError.self) {
                    try await connection.bind("z.example.test", handler: echo)
                }
                #expect(refused?.kind == .bindRefused(.notAllowed))

                // Injected message reaches the component, its reply reaches the users.
                try server.inject(
                    Message(
                        type: .chat, from: try JID("alice@example.test/phone"), to: try JID("bot@a.example.test"), id: "m1",
                        body: "hi"
                    ).element)
                var iterator = users.makeAsyncIterator()
                let reply = try #require(await iterator.next())
                #expect(Message(reply)?.body == "echo: hi")
                #expect(reply["to"] == "alice@example.test/phone")

                // A stanza for an unbound component hostname bounces to the users.
                try server.inject(Message(from: try JID("alice@example.test"), to: try JID("b.example.test"), body: "x").element)
                let bounce = try #require(await iterator.next())
                #expect(Message(bounce)?.error?.condition == .serviceUnavailable)

                // unbind, then unbind again: item-not-found from the server.
                try await connection.unbind("x.c.example.test/worker1")
                try await server.waitUntilUnbound("x.c.example.test/worker1")
                let again = try await connection.request(
                    IQ(
                        type: .set, from: try JID("a.example.test"), to: try JID("example.test"), id: "u2",
                        payload: Element(
                            "unbind", namespace: Namespace.component,
                            children: [Element("hostname", namespace: Namespace.component, text: "x.c.example.test")])))
                #expect(again.error?.condition == .itemNotFound)
                return ()
            }
            // The stream closed: its hostnames were released.
            try await server.waitUntilUnbound("a.example.test")
        }
    }

    @Test func secondStreamGetsConflict() async throws {
        try await withServer { server in
            let port = server.port
            try await self.withConnection(self.configuration(port: port), server: server) { first, events in
                _ = try await Self.connected(events)
                _ = try await first.bind("a.example.test", handler: ClosureHandler { _, _ in })
                // A second stream with the same identity: conflict for a.example.test.
                let second = ComponentConnection(
                    configuration: self.configuration(port: port),
                    logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
                let secondEvents = second.events()
                let runner = Task { try await second.run() }
                // Ended (cancelled, then awaited with a bound) on every path.
                func endSecond() async {
                    runner.cancel()
                    if !(await Self.waitForTask(runner, timeout: .seconds(5))) {
                        Issue.record("the second connection's run() did not end on cancellation")
                    }
                }
                do {
                    _ = try await Self.connected(secondEvents)
                    let error = await #expect(throws: ComponentError.self) {
                        try await second.bind("a.example.test", handler: ClosureHandler { _, _ in })
                    }
                    #expect(error?.kind == .bindRefused(.conflict))
                    #expect(try await second.bind("b.example.test", handler: ClosureHandler { _, _ in }) == "b.example.test")
                    #expect(server.boundHostnames == ["a.example.test", "b.example.test"])
                } catch {
                    await endSecond()
                    throw error
                }
                await endSecond()
            }
        }
    }

    @Test func wrongPasswordIsNotAuthorized() async throws {
        try await withServer { server in
            let connection = ComponentConnection(
                configuration: self.configuration(port: server.port, password: "wrong"),
                logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
            let error = await #expect(throws: (any Error).self) {
                try await withTimeout(.seconds(20)) { try await connection.run() }
            }
            let text = String(describing: error.map { $0 as Any } ?? "none")
            #expect(text.contains("not-authorized") || text.lowercased().contains("authentication"), "\(text)")
            #expect(server.boundHostnames.isEmpty)
        }
    }

    @Test func disconnectAndStreamErrorReleaseHostnames() async throws {
        try await withServer { server in
            try await self.withConnection(self.configuration(port: server.port), server: server) { connection, events in
                _ = try await Self.connected(events)
                _ = try await connection.bind("a.example.test", handler: ClosureHandler { _, _ in })
                try await server.waitUntilBound("a.example.test")
                server.sendStreamError(StreamError(.systemShutdown))
                try await server.waitUntilUnbound("a.example.test")
                return ()
            }
        }
    }
}
