import ComponentKit
import Foundation
import Logging
import Synchronization
import Testing
import XMPPCore

/// Runs a connection for the duration of `body`, then shuts it down gracefully (bounded).
func withRunningConnection<Result: Sendable>(
    _ connection: ComponentConnection,
    _ body: @escaping @Sendable (ComponentConnection) async throws -> Result
) async throws -> Result {
    try await withThrowingTaskGroup(of: Result?.self) { group in
        group.addTask {
            try await connection.run()
            return nil
        }
        group.addTask {
            defer { connection.shutdown() }
            return try await body(connection)
        }
        var result: Result?
        for try await value in group {
            if let value { result = value }
        }
        return result!
    }
}

/// Collects a connection's events and waits for conditions on them.
final class EventRecorder: Sendable {
    private let task: Task<Void, Never>

    init(_ connection: ComponentConnection) {
        let stream = connection.events()
        let box = EventBox()
        self.task = Task {
            for await event in stream {
                box.append(event)
            }
        }
        self.box = box
    }

    private let box: EventBox

    var all: [ComponentEvent] { self.box.all }

    /// Waits until an event matching `predicate` has been recorded (bounded).
    func wait(
        timeout: Duration = .seconds(20), _ description: String,
        until predicate: @Sendable (ComponentEvent) -> Bool
    ) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if self.box.all.contains(where: predicate) { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw IntegrationTestError("timed out waiting for \(description); events: \(self.box.all)")
    }

    /// Waits until every hostname has a `.bound` event.
    func waitBound(_ hostnames: [String], timeout: Duration = .seconds(20)) async throws {
        for hostname in hostnames {
            try await self.wait(timeout: timeout, "\(hostname) bound") { event in
                if case .bound(let bound) = event { return bound == hostname }
                return false
            }
        }
    }

    /// Forgets the events recorded so far.
    func reset() { self.box.reset() }

    deinit { self.task.cancel() }
}

final class EventBox: Sendable {
    private let events = Mutex<[ComponentEvent]>([])
    func append(_ event: ComponentEvent) { self.events.withLock { $0.append(event) } }
    var all: [ComponentEvent] { self.events.withLock { $0 } }
    func reset() { self.events.withLock { $0.removeAll() } }
}

struct IntegrationTestError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A test logger: warnings and above on stderr, so failures explain themselves.
func testLogger(_ label: String) -> Logger {
    var logger = Logger(label: label)
    let level = ProcessInfo.processInfo.environment["TEST_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:))
    logger.logLevel = level ?? .warning
    return logger
}

/// A handler answering `<query xmlns='urn:example:time'/>` gets with the stanza count so far.
struct CountingService: ComponentHandler {
    static let namespace = "urn:example:count"
    let counter = Counter()

    final class Counter: Sendable {
        private let value = Atomic<Int>(0)
        func next() -> Int { self.value.add(1, ordering: .relaxed).newValue }
    }

    var discoInfo: DiscoInfo {
        DiscoInfo(identities: [.init(category: "component", type: "generic", name: "Counter")], features: [Self.namespace])
    }

    func handle(_ stanza: Stanza, in context: ComponentContext) async throws {
        let count = self.counter.next()
        switch stanza {
        case .iq(let iq) where iq.type == .get && iq.payload?.name.namespace == Self.namespace:
            try await context.reply(to: iq, with: Element("query", namespace: Self.namespace, text: "\(count)"))
        case .message(let message) where message.type != .error && message.body != nil:
            try await context.send(message.reply(body: "count \(count)"))
        default:
            break
        }
    }
}
