import ComponentKit
import Foundation
import ReferenceServer
import Synchronization
import Testing
import XMPPCore

/// What reached the servers' users, across server instances (a killed server and its
/// restart, or the two ends of a transfer), in arrival order.
final class UserSink: Sendable {
    private let elements = Mutex<[Element]>([])
    private let perServer = Mutex<[ObjectIdentifier: [Element]]>([:])
    private let tasks = Mutex<[Task<Void, Never>]>([])

    /// Records everything `server` hands to its users from now on.
    func follow(_ server: ReferenceServer) {
        let stream = server.userStanzas()
        let key = ObjectIdentifier(server)
        let task = Task {
            for await element in stream {
                self.elements.withLock { $0.append(element) }
                self.perServer.withLock { $0[key, default: []].append(element) }
            }
        }
        self.tasks.withLock { $0.append(task) }
    }

    /// Records one element (for user sides that are not a reference server).
    func append(_ element: Element) {
        self.elements.withLock { $0.append(element) }
    }

    var all: [Element] { self.elements.withLock { $0 } }

    /// The ids starting with `prefix`, in arrival order (duplicates kept).
    func ids(withPrefix prefix: String) -> [String] {
        self.all.compactMap { $0["id"] }.filter { $0.hasPrefix(prefix) }
    }

    /// The ids starting with `prefix` that reached one server's users, in arrival order.
    func ids(withPrefix prefix: String, on server: ReferenceServer) -> [String] {
        let elements = self.perServer.withLock { $0[ObjectIdentifier(server)] ?? [] }
        return elements.compactMap { $0["id"] }.filter { $0.hasPrefix(prefix) }
    }

    func first(id: String) -> Element? {
        self.all.first { $0["id"] == id }
    }

    /// Waits (bounded) until an element with this id has arrived, and returns the first one.
    func element(id: String, timeout: Duration = .seconds(10)) async throws -> Element {
        try await self.wait("the stanza \(id)", timeout: timeout) { $0.contains { $0["id"] == id } }
        return self.first(id: id)!
    }

    /// Waits until `predicate` holds over what arrived (bounded).
    func wait(
        _ description: String, timeout: Duration = .seconds(30), until predicate: @Sendable ([Element]) -> Bool
    ) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if predicate(self.all) { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw IntegrationTestError("timed out waiting for \(description); \(self.all.count) stanzas arrived")
    }

    deinit {
        for task in self.tasks.withLock({ $0 }) { task.cancel() }
    }
}

/// Sends numbered messages (`prefix0`, `prefix1`…) through a connection, one every
/// `interval`, and records when each `send` started and returned and how.
///
/// Each send starts with `Task.immediate`, so the SDK sees them in number order even while
/// earlier ones are still waiting in the outgoing queue (a sequential sender would block on
/// the first queued stanza).
final class NumberedSender: Sendable {
    struct Record: Sendable {
        var started: ContinuousClock.Instant
        var returned: ContinuousClock.Instant?
        var error: ComponentError?
        var otherError: String?

        var succeeded: Bool { self.returned != nil && self.error == nil && self.otherError == nil }
    }

    let prefix: String
    private let records = Mutex<[Int: Record]>([:])

    init(prefix: String) {
        self.prefix = prefix
    }

    /// Sends `range`; returns when every send has returned.
    func run(
        _ range: Range<Int>, interval: Duration, from: String, to: String, via connection: ComponentConnection,
        padding: Int = 0
    ) async {
        let pad = String(repeating: "x", count: padding)
        var tasks: [Task<Void, Never>] = []
        for number in range {
            let message: Message
            do {
                message = Message(
                    type: .chat, from: try JID(from), to: try JID(to), id: "\(self.prefix)\(number)", body: "\(number)\(pad)")
            } catch {
                Issue.record("bad address: \(error)")
                return
            }
            self.records.withLock { $0[number] = Record(started: .now) }
            tasks.append(
                Task.immediate {
                    do {
                        try await connection.send(.message(message))
                        self.records.withLock { $0[number]?.returned = .now }
                    } catch let error as ComponentError {
                        self.records.withLock {
                            $0[number]?.returned = .now
                            $0[number]?.error = error
                        }
                    } catch {
                        self.records.withLock {
                            $0[number]?.returned = .now
                            $0[number]?.otherError = "\(error)"
                        }
                    }
                })
            if interval > .zero {
                try? await Task.sleep(for: interval)
            }
        }
        for task in tasks { await task.value }
    }

    var all: [Int: Record] { self.records.withLock { $0 } }

    func record(_ number: Int) -> Record? { self.records.withLock { $0[number] } }
}

/// Sent / delivered / duplicated / lost for one direction of a fault test.
struct DeliveryFigures: CustomStringConvertible {
    var attempted = 0
    var succeeded = 0
    var failed = 0
    var delivered = 0
    var duplicated = 0
    var lost: [Int] = []
    /// Delivered although the send failed (the sender was told it was not sent).
    var deliveredDespiteFailure: [Int] = []

    /// Counts `sender`'s stanzas in what `sink` received.
    init(sender: NumberedSender, sink: UserSink) {
        let counts = Self.counts(sink.ids(withPrefix: sender.prefix), prefix: sender.prefix)
        for (number, record) in sender.all {
            self.attempted += 1
            let count = counts[number, default: 0]
            if count > 0 { self.delivered += 1 }
            self.duplicated += max(0, count - 1)
            if record.succeeded {
                self.succeeded += 1
                if count == 0 { self.lost.append(number) }
            } else {
                self.failed += 1
                if count > 0 { self.deliveredDespiteFailure.append(number) }
            }
        }
        self.lost.sort()
    }

    static func counts(_ ids: [String], prefix: String) -> [Int: Int] {
        var counts: [Int: Int] = [:]
        for id in ids {
            if let number = Int(id.dropFirst(prefix.count)) { counts[number, default: 0] += 1 }
        }
        return counts
    }

    /// The numbers in arrival order, each once (first arrival).
    static func arrivalOrder(_ ids: [String], prefix: String) -> [Int] {
        var seen = Set<Int>()
        var order: [Int] = []
        for id in ids {
            if let number = Int(id.dropFirst(prefix.count)), seen.insert(number).inserted { order.append(number) }
        }
        return order
    }

    var description: String {
        "attempted \(self.attempted), send ok \(self.succeeded), send failed \(self.failed), delivered \(self.delivered), "
            + "duplicated \(self.duplicated), lost \(self.lost.count)\(self.lost.isEmpty ? "" : " \(self.lost.prefix(20))")"
    }
}

/// Whether `numbers` is increasing.
func isIncreasing(_ numbers: [Int]) -> Bool {
    zip(numbers, numbers.dropFirst()).allSatisfy { $0 < $1 }
}

/// A handler that answers every chat message from a user with `echo-<id>`, and records
/// the error messages it gets (bounces of what it sent).
final class EchoRecorder: Sendable {
    private let bouncedIDs = Mutex<[String]>([])
    private let handledIDs = Mutex<[String]>([])

    var bounced: [String] { self.bouncedIDs.withLock { $0 } }
    var handled: [String] { self.handledIDs.withLock { $0 } }

    func handler() -> ClosureHandler {
        ClosureHandler { stanza, context in
            guard case .message(let message) = stanza, let id = message.id else { return }
            if message.type == .error {
                self.bouncedIDs.withLock { $0.append(id) }
                return
            }
            guard let from = message.from else { return }
            self.handledIDs.withLock { $0.append(id) }
            try await context.send(Message(type: .chat, from: message.to, to: from, id: "echo-\(id)", body: message.body))
        }
    }
}

/// The server the test's users are on right now (`nil` while it is down).
final class LiveServer: Sendable {
    private let server = Mutex<ReferenceServer?>(nil)
    init(_ server: ReferenceServer?) { self.server.withLock { $0 = server } }
    var current: ReferenceServer? { self.server.withLock { $0 } }
    func set(_ server: ReferenceServer?) { self.server.withLock { $0 = server } }
}

/// Prints a figure line that survives in the test log (`grep RESILIENCE`).
func report(_ line: String) {
    print("RESILIENCE \(line)")
}

extension Duration {
    /// Seconds with millisecond precision, for reports.
    var seconds: String {
        let milliseconds = self.components.seconds * 1000 + self.components.attoseconds / 1_000_000_000_000_000
        return String(format: "%.3f s", Double(milliseconds) / 1000)
    }
}

/// A value shared between tasks.
final class Locked<Value: Sendable>: Sendable {
    private let storage: Mutex<Value>
    init(_ value: Value) { self.storage = Mutex(value) }
    var value: Value { self.storage.withLock { $0 } }
    func update(_ body: (inout Value) -> Void) { self.storage.withLock { body(&$0) } }
}
