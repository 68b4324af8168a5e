import ComponentKit
import Foundation
import Logging
import ReferenceServer
import Synchronization
import Testing
import XMPPCore
import XMPPTestSupport

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

/// The reference servers a test started, stopped on every path by ``withServers(_:)``.
final class StartedServers: Sendable {
    private let servers = Mutex<[ReferenceServer]>([])

    /// Starts a server that ``withServers(_:)`` stops at the end, whatever happens.
    func start(_ configuration: ReferenceServerConfiguration) async throws -> ReferenceServer {
        let server = try await ReferenceServer.start(configuration: configuration)
        self.servers.withLock { $0.append(server) }
        return server
    }

    fileprivate func stopAll() async {
        for server in self.servers.withLock({ $0 }) {
            await server.stop()
        }
    }
}

/// Runs `body` with a ``StartedServers``, then stops every server it started (also when
/// `body` throws: a failed `#require`, a timeout).
func withServers<Result>(_ body: (StartedServers) async throws -> Result) async throws -> Result {
    let servers = StartedServers()
    return try await withCleanup {
        try await body(servers)
    } cleanup: {
        await servers.stopAll()
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
                if event.kind == .bound { return event.hostname == hostname }
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

/// Log records kept in memory, so that a test can wait for what the SDK logged (warnings
/// and above still go to stderr).
final class CapturedLogs: Sendable {
    struct Entry: Sendable {
        var level: Logger.Level
        var message: String
        var metadata: [String: String]
    }

    private let entries = Mutex<[Entry]>([])

    var all: [Entry] { self.entries.withLock { $0 } }

    /// A logger that records every message at `level` and above here.
    func logger(_ label: String, level: Logger.Level) -> Logger {
        var logger = Logger(label: label) { label in Handler(label: label, logs: self) }
        logger.logLevel = level
        return logger
    }

    /// Waits until an entry matching `predicate` has been logged (bounded).
    func wait(_ description: String, timeout: Duration = .seconds(20), until predicate: @Sendable (Entry) -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if self.all.contains(where: predicate) { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw IntegrationTestError("timed out waiting for \(description) in the log (\(self.all.count) entries)")
    }

    fileprivate func append(_ entry: Entry) { self.entries.withLock { $0.append(entry) } }

    private struct Handler: LogHandler {
        let label: String
        let logs: CapturedLogs
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { self.metadata[key] }
            set { self.metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            var flattened: [String: String] = [:]
            for (key, value) in self.metadata.merging(event.metadata ?? [:], uniquingKeysWith: { $1 }) {
                flattened[key] = "\(value)"
            }
            self.logs.append(Entry(level: event.level, message: "\(event.message)", metadata: flattened))
            if event.level >= .warning {
                FileHandle.standardError.write(Data("\(self.label) \(event.level): \(event.message) \(flattened)\n".utf8))
            }
        }
    }
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
