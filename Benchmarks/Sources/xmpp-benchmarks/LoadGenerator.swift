import Histogram
import NIOCore
import ReferenceServer
import XMPPCore

/// Drives message stanzas at echo components through a ``ReferenceServer`` and times the
/// replies. Everything runs on the server's single event loop: sends go out in batches
/// through ``ReferenceServer/inject(contentsOf:)`` (one flush per batch), replies arrive
/// through ``ReferenceServer/observeUserStanzas(_:)`` (no `AsyncStream` hop).
///
/// Each stanza carries its sequence number as its `id`; the latency of a stanza is the
/// time from just before its batch was written to the moment its echo was routed back.
final class LoadGenerator: @unchecked Sendable {
    struct Result: Sendable {
        var stanzas: Int
        var seconds: Double
        var histogram: Histogram<UInt64>
        var timedOut: Bool
        var stanzasPerSecond: Double { Double(self.stanzas) / self.seconds }
        func percentileMilliseconds(_ percentile: Double) -> Double {
            Double(self.histogram.valueAtPercentile(percentile)) / 1_000_000
        }
    }

    enum Mode: Sendable {
        /// Keep `window` stanzas in flight: a new one for each reply.
        case closedLoop(window: Int)
        /// Send at a fixed rate (stanzas/s), whatever comes back, in 1 ms ticks.
        case openLoop(rate: Double)
    }

    private let server: ReferenceServer
    private let loop: any EventLoop
    private let templates: [Element]
    private let total: Int
    private let mode: Mode
    private let promise: EventLoopPromise<Result>

    private var sent = 0
    private var received = 0
    private var sendTimes: [UInt64]
    private var histogram = Histogram<UInt64>(
        lowestDiscernibleValue: 1_000, highestTrackableValue: 120_000_000_000, numberOfSignificantValueDigits: .three)
    private var start: UInt64 = 0
    private var owed = 0
    private var refillScheduled = false
    private var ticker: RepeatedTask?
    private let idPrefix: String

    /// - Parameters:
    ///   - targets: The component domains; stanza `i` goes to `targets[i % targets.count]`.
    ///   - body: The body text of every stanza.
    private init(
        server: ReferenceServer, loop: any EventLoop, targets: [String], userDomain: String, body: String,
        total: Int, mode: Mode, run: Int
    ) {
        self.server = server
        self.loop = loop
        self.total = total
        self.mode = mode
        self.promise = loop.makePromise()
        self.sendTimes = Array(repeating: 0, count: total)
        self.idPrefix = "r\(run)-"
        self.templates = targets.enumerated().map { index, target in
            Message(
                type: .chat, from: try! JID("user\(index % 97)@\(userDomain)/bench"), to: try! JID("bot@\(target)"),
                body: body
            ).element
        }
    }

    /// Runs `total` stanzas and returns the figures (or what it had at `timeout`).
    static func run(
        server: ReferenceServer, loop: any EventLoop, targets: [String], userDomain: String, body: String, total: Int,
        mode: Mode, timeout: TimeAmount, run: Int
    ) async throws -> Result {
        let generator = LoadGenerator(
            server: server, loop: loop, targets: targets, userDomain: userDomain, body: body, total: total, mode: mode,
            run: run)
        server.observeUserStanzas { element in generator.received(element) }
        defer { server.observeUserStanzas(nil) }
        loop.execute { generator.begin(timeout: timeout) }
        return try await generator.promise.futureResult.get()
    }

    private static func now() -> UInt64 { NIODeadline.now().uptimeNanoseconds }

    private func begin(timeout: TimeAmount) {
        self.start = Self.now()
        self.loop.scheduleTask(in: timeout) { self.finish(timedOut: true) }
        switch self.mode {
        case .closedLoop(let window):
            self.send(min(window, self.total))
        case .openLoop(let rate):
            self.ticker = self.loop.scheduleRepeatedTask(initialDelay: .zero, delay: .milliseconds(1)) { _ in
                let elapsed = Double(Self.now() - self.start) / 1e9
                let due = min(self.total, Int(rate * elapsed) + 1)
                if due > self.sent { self.send(due - self.sent) }
            }
        }
    }

    private func send(_ count: Int) {
        let count = min(count, self.total - self.sent)
        guard count > 0 else { return }
        var batch: [Element] = []
        batch.reserveCapacity(count)
        let now = Self.now()
        for _ in 0..<count {
            var element = self.templates[self.sent % self.templates.count]
            element["id"] = self.idPrefix + String(self.sent)
            self.sendTimes[self.sent] = now
            self.sent += 1
            batch.append(element)
        }
        do {
            try self.server.inject(contentsOf: batch)
        } catch {
            self.promise.fail(error)
        }
    }

    private func received(_ element: Element) {
        guard self.loop.inEventLoop else {
            self.loop.execute { self.received(element) }
            return
        }
        guard let id = element["id"], id.hasPrefix(self.idPrefix), let sequence = Int(id.dropFirst(self.idPrefix.count)),
            sequence < self.sent
        else { return }
        let now = Self.now()
        _ = self.histogram.record(max(1_000, now - self.sendTimes[sequence]))
        self.received += 1
        if self.received == self.total {
            self.finish(timedOut: false)
            return
        }
        if case .closedLoop = self.mode {
            self.owed += 1
            if !self.refillScheduled {
                self.refillScheduled = true
                // Reply batches arrive within one read; refill once after it.
                self.loop.execute {
                    self.refillScheduled = false
                    let owed = self.owed
                    self.owed = 0
                    self.send(owed)
                }
            }
        }
    }

    private var finished = false
    private func finish(timedOut: Bool) {
        guard !self.finished else { return }
        self.finished = true
        self.ticker?.cancel()
        let seconds = Double(Self.now() - self.start) / 1e9
        self.promise.succeed(
            Result(stanzas: self.received, seconds: seconds, histogram: self.histogram, timedOut: timedOut))
    }
}
