import ComponentKit
import Foundation
import ReferenceServer
import Synchronization
import Testing
import XMPPCore

/// A slow handler slows reading from the server; it does not grow memory.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct BackpressureTests {
    /// A handler that holds every stanza until the gate opens, recording the order.
    final class GatedHandler: ComponentHandler {
        private let open = Atomic<Bool>(false)
        let seen = Mutex<[String]>([])

        func release() { self.open.store(true, ordering: .relaxed) }

        func handle(_ stanza: Stanza, in context: ComponentContext) async throws {
            while !self.open.load(ordering: .relaxed) {
                try await Task.sleep(for: .milliseconds(10))
            }
            self.seen.withLock { $0.append(stanza.id ?? "") }
        }
    }

    @Test func aBlockedHandlerPausesReadingAndLosesNothing() async throws {
        try await withServers { servers in
            let server = try await servers.start(SDKFixture.shared.serverConfiguration())
            var configuration = SDKFixture.shared.clientConfiguration(port: server.port)
            configuration.handlerQueueDepth = 4
            configuration.keepalive.isEnabled = false
            let connection = ComponentConnection(configuration: configuration, logger: testLogger("backpressure"))
            let handler = GatedHandler()
            try connection.register("a.example.test", handler: handler)
            let events = EventRecorder(connection)

            try await withRunningConnection(connection) { connection in
                try await events.waitBound(["a.example.test"])
                // 10 000 stanzas of ~2 KiB: about 20 MiB, far more than the kernel's socket
                // buffers and one read (64 KiB) together.
                let body = String(repeating: "x", count: 2_000)
                let count = 10_000
                let stanzas = try (0..<count).map { index in
                    Message(type: .chat, from: try JID("alice@example.test/r"), to: try JID("a.example.test"), id: "b\(index)", body: body)
                        .element
                }
                try server.inject(contentsOf: stanzas)
                // Wait for the first stanzas to arrive, then give the SDK ample time to read on
                // if it were going to.
                let arrival = ContinuousClock.now + .seconds(20)
                while (connection.status.hostnames.first?.stanzasIn ?? 0) == 0 && ContinuousClock.now < arrival {
                    try await Task.sleep(for: .milliseconds(20))
                }
                try await Task.sleep(for: .seconds(1))

                // Reading is paused: what reached the SDK is bounded by the queue depth plus what
                // the read cycle in progress had already decoded (NIO reads up to 4 × 64 KiB per
                // readable event before asking the pipeline again; about 30 stanzas each here),
                // not by what the server sent. Measured: 120–190 of 10 000.
                let received = connection.status.hostnames.first?.stanzasIn ?? -1
                #expect(received > 0)
                #expect(received < 1_000, "the SDK kept reading while the handler was blocked: \(received) stanzas taken in")

                // Once the handler moves, everything arrives, in order, exactly once.
                handler.release()
                let deadline = ContinuousClock.now + .seconds(60)
                while handler.seen.withLock({ $0.count }) < count && ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(50))
                }
                let seen = handler.seen.withLock { $0 }
                #expect(seen.count == count)
                #expect(seen == (0..<count).map { "b\($0)" })
                return ()
            }
        }
    }
}
