import ComponentKit
import Foundation
import ReferenceServer
import Synchronization
import Testing
import XMPPCore

/// Hostnames sharing a stream are isolated: a slow handler's excess is answered, the
/// others keep flowing; reading pauses only when the connection's own budget is spent.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct BackpressureTests {
    /// Holds every stanza until released (or cancelled), recording the order.
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

    /// Records ids in order.
    final class Recorder: ComponentHandler {
        let seen = Mutex<[String]>([])

        func handle(_ stanza: Stanza, in context: ComponentContext) async throws {
            self.seen.withLock { $0.append(stanza.id ?? "") }
        }
    }

    /// What users received, kept small: id → (type, error condition).
    final class Answers: Sendable {
        private final class Store: Sendable {
            let byID = Mutex<[String: (type: String, condition: String?, errorType: String?)]>([:])
        }

        private let store = Store()

        init(_ server: ReferenceServer) {
            let store = self.store
            server.observeUserStanzas { element in
                guard let id = element["id"] else { return }
                let error = element.firstChild("error", namespace: Namespace.client)
                let condition = error?.children.compactMap { child -> String? in
                    guard case .element(let element) = child, element.name.namespace == Namespace.stanzas else { return nil }
                    return element.name.localName
                }.first
                store.byID.withLock { $0[id] = (element["type"] ?? "", condition, error?["type"]) }
            }
        }

        func count(where predicate: (String, String, String?, String?) -> Bool) -> Int {
            self.store.byID.withLock { answers in
                answers.filter { predicate($0.key, $0.value.type, $0.value.condition, $0.value.errorType) }.count
            }
        }

        func wait(timeout: Duration = .seconds(60), until condition: () -> Bool) async -> Bool {
            let deadline = ContinuousClock.now + timeout
            while !condition() {
                guard ContinuousClock.now < deadline else { return false }
                try? await Task.sleep(for: .milliseconds(10))
            }
            return true
        }
    }

    private func message(to hostname: String, id: String, body: String) throws -> Element {
        Message(type: .chat, from: try JID("alice@example.test/r"), to: try JID(hostname), id: id, body: body).element
    }

    /// The resident set size of this process (the SDK, the server and the test), in bytes.
    private static func residentBytes() -> Int {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let kilobytes = Int(line.split(separator: " ").dropFirst().first ?? "")
        else { return 0 }
        return kilobytes * 1024
    }

    /// A's handler blocked forever, B under load: B delivers 10 000 stanzas in order, A's
    /// excess gets `resource-constraint` (type wait), the keepalive never declares the link
    /// dead, and 1 000 stanzas of 512 KiB sent to A do not grow memory past A's budget.
    @Test func aBlockedHostnameIsAnsweredWhileTheOthersFlow() async throws {
        try await withServers { servers in
            // XEP-0198: the server closes a stream that leaves more than this many stanzas
            // unacknowledged. A's first stanza blocks in its handler while 11 000 pass it, in
            // bursts of 550: an acknowledgement that waited for A would pass the limit; the
            // SDK acknowledges past a window of 1 000 stanzas, so the stream lives. (The
            // server may write a burst before it has read the acknowledgements of the
            // previous one: window + two bursts = 2 100 stays below the limit. With bursts of
            // 1 100, 3 200 did not, once in a few runs on a loaded machine.)
            var serverConfiguration = SDKFixture.shared.serverConfiguration()
            serverConfiguration.maximumUnacknowledgedStanzas = 3_000
            let server = try await servers.start(serverConfiguration)
            let answers = Answers(server)
            var configuration = SDKFixture.shared.clientConfiguration(port: server.port)
            configuration.hostnameBudget = HostnameBudget(maxStanzas: 200, maxBytes: 2 << 20)
            configuration.keepalive = KeepalivePolicy(idleInterval: .seconds(1), pingTimeout: .seconds(5))
            let connection = ComponentConnection(configuration: configuration, logger: testLogger("isolation"))
            let blocked = GatedHandler()
            let busy = Recorder()
            try connection.register("a.example.test", handler: blocked)
            try connection.register("b.example.test", handler: busy)
            let events = EventRecorder(connection)

            try await withRunningConnection(connection) { connection in
                try await events.waitBound(["a.example.test", "b.example.test"])
                let started = ContinuousClock.now
                let kilobyte = String(repeating: "k", count: 1_024)
                // 10 000 to B (1 KiB each: ~60 per read, well within B's budget) with 500
                // messages and 500 IQ gets to A in between (A's budget: 200).
                for chunk in 0..<20 {
                    var stanzas: [Element] = []
                    for index in chunk * 500..<(chunk + 1) * 500 {
                        stanzas.append(try self.message(to: "b.example.test", id: "b\(index)", body: kilobyte))
                        if index % 10 == 0 {
                            let n = index / 10
                            if n % 2 == 0 {
                                stanzas.append(try self.message(to: "a.example.test", id: "a\(n)", body: "x"))
                            } else {
                                stanzas.append(
                                    IQ(
                                        type: .get, from: try JID("alice@example.test/r"), to: try JID("a.example.test"),
                                        id: "a\(n)", payload: Element("query", namespace: Namespace.discoInfo)
                                    ).element)
                            }
                        }
                    }
                    try server.inject(contentsOf: stanzas)
                    // One burst at a time: what the server holds unacknowledged is the burst
                    // plus what the SDK has not acknowledged yet.
                    let burstDelivered = await answers.wait(timeout: .seconds(20)) {
                        busy.seen.withLock { $0.count } >= (chunk + 1) * 500
                    }
                    // (A stream closed for too many unacknowledged stanzas never delivers the rest.)
                    guard burstDelivered else { break }
                }
                let delivered = await answers.wait { busy.seen.withLock { $0.count } >= 10_000 }
                #expect(delivered, "B got \(busy.seen.withLock { $0.count }) of 10 000 while A was blocked")
                let inOrder = busy.seen.withLock { $0 == (0..<10_000).map { "b\($0)" } }
                #expect(inOrder, "B's stanzas out of order or missing")
                let took = ContinuousClock.now - started
                // A holds exactly its budget (200, the one in its handler included); the rest is answered.
                let refused = {
                    answers.count { id, type, condition, errorType in
                        id.hasPrefix("a") && type == "error" && condition == "resource-constraint" && errorType == "wait"
                    }
                }
                let allAnswered = await answers.wait { refused() >= 800 }
                #expect(allAnswered, "A's excess answered: \(refused()) of 800")
                #expect(refused() == 800)
                print("isolation: B delivered 10 000 in order in \(took) while A was blocked; A's excess answered: \(refused())")

                // The keepalive sees a stream that answers (reading never paused): no reconnect
                // within 3 × its idle interval, with A still blocked. (The ping timeout is 5 s so
                // that one scheduling stall of a loaded machine cannot decide the outcome.)
                let connects = events.all.filter { $0.kind == .connected }.count
                try await Task.sleep(for: .seconds(3) + .milliseconds(500))
                let disconnects = events.all.filter { $0.kind == .disconnected }
                #expect(disconnects.isEmpty, "the stream was declared dead: \(disconnects)")
                #expect(connects == 1)

                // 1 000 stanzas of 512 KiB to A, 8 at a time: the SDK holds at most A's budget.
                let big = String(repeating: "y", count: 512 << 10)
                let baseline = Self.residentBytes()
                var peak = baseline
                for chunk in 0..<125 {
                    let stanzas = try (0..<8).map {
                        try self.message(to: "a.example.test", id: "big\(chunk * 8 + $0)", body: big)
                    }
                    try server.inject(contentsOf: stanzas)
                    let answered = await answers.wait(timeout: .seconds(30)) {
                        answers.count { id, type, _, _ in id.hasPrefix("big") && type == "error" } >= chunk * 8 + 8 - 4
                    }
                    #expect(answered, "chunk \(chunk) of big stanzas was not answered")
                    if !answered { break }
                    peak = max(peak, Self.residentBytes())
                }
                let growth = peak - baseline
                print(
                    "isolation: 1 000 × 512 KiB (500 MiB) sent to a blocked hostname: RSS grew by \(growth >> 20) MiB (budget 2 MiB)"
                )
                // The process holds the server's and the test's copies too; 500 MiB of growth would
                // mean the SDK kept them.
                #expect(growth < 96 << 20, "RSS grew by \(growth >> 20) MiB while 500 MiB went to a blocked hostname")
            }
        }
    }

    /// Blocks its thread (synchronous sleep) on every stanza: declared as such, it runs on
    /// the global executor.
    final class BlockingHandler: ComponentHandler {
        let seen = Mutex<Int>(0)
        var execution: HandlerExecution { .globalExecutor }

        func handle(_ stanza: Stanza, in context: ComponentContext) async throws {
            usleep(200_000)
            self.seen.withLock { $0 += 1 }
        }
    }

    /// A handler that blocks its thread, declared `.globalExecutor`, does not stall the
    /// event loop: another hostname on the same stream keeps flowing meanwhile.
    @Test func aBlockingHandlerOnTheGlobalExecutorDoesNotStallTheStream() async throws {
        try await withServers { servers in
            let server = try await servers.start(SDKFixture.shared.serverConfiguration())
            let configuration = SDKFixture.shared.clientConfiguration(port: server.port)
            let connection = ComponentConnection(configuration: configuration, logger: testLogger("blocking"))
            let blocking = BlockingHandler()
            let busy = Recorder()
            try connection.register("a.example.test", handler: blocking)
            try connection.register("b.example.test", handler: busy)
            let events = EventRecorder(connection)
            try await withRunningConnection(connection) { connection in
                try await events.waitBound(["a.example.test", "b.example.test"])
                // A's 20 stanzas keep its handler blocked for ~4 s in all; B's 1 000 arrive
                // while it blocks.
                try server.inject(
                    contentsOf: try (0..<20).map { try self.message(to: "a.example.test", id: "a\($0)", body: "x") })
                try server.inject(
                    contentsOf: try (0..<1_000).map { try self.message(to: "b.example.test", id: "b\($0)", body: "x") })
                let deadline = ContinuousClock.now + .seconds(30)
                while busy.seen.withLock({ $0.count }) < 1_000 && ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(10))
                }
                let blockedSoFar = blocking.seen.withLock { $0 }
                #expect(busy.seen.withLock { $0 } == (0..<1_000).map { "b\($0)" })
                // B was done while A was still working through its stanzas.
                #expect(blockedSoFar < 20, "A had handled all its stanzas before B's 1 000 arrived: \(blockedSoFar)")
                print("blocking handler: B's 1 000 handled while A (blocking 0.2 s per stanza) had done \(blockedSoFar) of 20")
            }
        }
    }

    /// With a small connection budget, a blocked handler pauses reading for the whole
    /// stream (TCP pushes back on the server); nothing is lost or answered, and the
    /// keepalive does not declare the paused stream dead. Released, everything arrives in order.
    @Test func theConnectionBudgetPausesReadingAndLosesNothing() async throws {
        try await withServers { servers in
            let server = try await servers.start(SDKFixture.shared.serverConfiguration())
            let answers = Answers(server)
            var configuration = SDKFixture.shared.clientConfiguration(port: server.port)
            configuration.hostnameBudget = HostnameBudget(maxStanzas: 100_000, maxBytes: 1 << 30)
            configuration.connectionBudget = ConnectionBudgetPolicy(maxBytes: 256 << 10)
            configuration.keepalive = KeepalivePolicy(idleInterval: .seconds(1), pingTimeout: .seconds(5))
            let connection = ComponentConnection(configuration: configuration, logger: testLogger("budget"))
            let handler = GatedHandler()
            try connection.register("a.example.test", handler: handler)
            let events = EventRecorder(connection)

            try await withRunningConnection(connection) { connection in
                try await events.waitBound(["a.example.test"])
                // 10 000 stanzas of ~2 KiB: about 20 MiB, far more than the budget, the kernel's
                // socket buffers and one read together.
                let body = String(repeating: "x", count: 2_000)
                let count = 10_000
                let stanzas = try (0..<count).map { try self.message(to: "a.example.test", id: "b\($0)", body: body) }
                try server.inject(contentsOf: stanzas)
                // Wait until the SDK stops taking stanzas in (the count holds still), then three
                // keepalive intervals more with reading paused.
                var last = -1
                var stable = 0
                let deadline = ContinuousClock.now + .seconds(30)
                while stable < 10 && ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(100))
                    let now = connection.status.hostnames.first?.stanzasIn ?? 0
                    stable = now == last && now > 0 ? stable + 1 : 0
                    last = now
                }
                try await Task.sleep(for: .seconds(3))
                let received = connection.status.hostnames.first?.stanzasIn ?? -1
                let queued = connection.status.hostnames.first?.queuedBytes ?? -1
                print("connection budget: \(received) of \(count) stanzas taken in, \(queued) bytes queued (budget 256 KiB)")
                #expect(received > 0)
                #expect(received < 1_000, "the SDK kept reading past its budget: \(received) stanzas taken in")
                let disconnects = events.all.filter { $0.kind == .disconnected }
                #expect(disconnects.isEmpty, "the paused stream was declared dead: \(disconnects)")

                // Released: everything arrives, in order, exactly once; nothing was refused.
                handler.release()
                let all = await answers.wait { handler.seen.withLock { $0.count } >= count }
                #expect(all)
                let inOrder = handler.seen.withLock { $0 == (0..<count).map { "b\($0)" } }
                #expect(inOrder, "not every stanza arrived exactly once, in order")
                #expect(answers.count { _, type, _, _ in type == "error" } == 0)
            }
        }
    }
}
