import ComponentKit
import Foundation
import Testing
import XMPPCore
import XMPPTestSupport

/// The kill/restart fault test against a real Prosody 0.12 (XEP-0114 through `auto`), with
/// a c2s user on the other side: a smaller form of
/// ``ResilienceTests/killMidTrafficAndRestartOnTheSamePort()``.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct ProsodyResilienceTests {
    private static let secret = "echo-secret-7"
    private static let echoJID = try? JID("echo.localhost")

    private func alice(_ prosody: ProsodyFixture) async throws -> C2SClient {
        try await C2SClient.connect(
            .init(
                port: prosody.c2sPort, domain: "localhost", username: "alice", password: "alice-pass",
                caFile: prosody.caCertificatePath))
    }

    /// Moves everything `client` receives into `sink` until its stream ends.
    private func follow(_ client: C2SClient, into sink: UserSink) -> Task<Void, Never> {
        Task {
            while !Task.isCancelled {
                guard let element = try? await client.next(timeout: .seconds(120)) else { return }
                sink.append(element)
            }
        }
    }

    @Test func killMidTrafficAndRestart() async throws {
        let prosody = try await ProsodyFixture.start(
            .init(
                domain: "localhost", components: [.init(hostname: "echo.localhost", secret: Self.secret)],
                accounts: [.init(username: "alice", password: "alice-pass")]))
        defer { prosody.stop() }
        var configuration = ComponentConfiguration(
            host: "127.0.0.1", port: prosody.componentPort, serverDomain: "localhost", identity: "echo.localhost",
            password: Secret(Self.secret))
        configuration.protocolMode = .auto
        // XEP-0114 has no STARTTLS: a fallback needs tls none (loopback) or direct, and its own
        // secret (issue #13 item 1).
        configuration.tlsMode = .none
        configuration.legacySecret = Secret(Self.secret)
        configuration.reconnect = ReconnectPolicy(initialDelay: .milliseconds(100), maximumDelay: .seconds(1))
        configuration.requestTimeout = .seconds(10)
        let connection = ComponentConnection(configuration: configuration, logger: testLogger("res-prosody-kill"))
        let events = EventRecorder(connection)
        let echo = EchoRecorder()
        try connection.register("echo.localhost", handler: echo.handler())
        let sink = UserSink()
        let sender = NumberedSender(prefix: "p-")
        let total = 300
        let sentByAlice = Locked<[Int: Bool]>([:])
        // The numbers alice sent successfully from her second session (after the restart and
        // the re-bind): each must be handled once and echoed back to her once, in order.
        let sentAfterRebind = Locked<[Int]>([])
        let currentAlice = Locked<(client: C2SClient, session: Int)?>(nil)

        try await withRunningConnection(connection) { connection in
            try await events.waitBound(["echo.localhost"])
            let first = try await self.alice(prosody)
            let aliceJID = first.jid
            currentAlice.update { $0 = (first, 1) }
            let firstReader = self.follow(first, into: sink)
            events.reset()

            // alice → component (echoed back to her full JID, the same after she reconnects).
            let injector = Task {
                for number in 0..<total {
                    var current = currentAlice.value
                    while current == nil {
                        try? await Task.sleep(for: .milliseconds(5))
                        current = currentAlice.value
                    }
                    guard let (client, session) = current else { return }
                    let message = Message(type: .chat, to: Self.echoJID, id: "in-\(number)", body: "\(number)")
                    do {
                        try await client.send(message.element)
                        sentByAlice.update { $0[number] = true }
                        if session == 2 { sentAfterRebind.update { $0.append(number) } }
                    } catch {
                        sentByAlice.update { $0[number] = false }
                    }
                    try? await Task.sleep(for: .milliseconds(2))
                }
            }
            // component → alice's bare JID.
            let sending = Task {
                await sender.run(
                    0..<total, interval: .milliseconds(2), from: "echo.localhost", to: "alice@localhost", via: connection)
            }
            try await sink.wait("a third of the component's stanzas") {
                $0.count { $0["id"]?.hasPrefix("p-") == true } >= total / 3
            }

            currentAlice.update { $0 = nil }
            let killed = ContinuousClock.now
            prosody.kill()
            try await events.wait("the disconnect") { $0.kind == .unbound }
            let noticed = ContinuousClock.now
            await firstReader.value
            await first.close()
            try await Task.sleep(for: .milliseconds(700))
            let restarted = ContinuousClock.now
            try await prosody.launch()
            let second = try await self.alice(prosody)
            #expect(second.jid == aliceJID)
            let secondReader = self.follow(second, into: sink)
            try await events.waitBound(["echo.localhost"], timeout: .seconds(30))
            let rebound = ContinuousClock.now
            currentAlice.update { $0 = (second, 2) }
            await sending.value
            await injector.value
            // And a batch certainly sent after the re-bind: on a loaded machine the injector
            // can be done before the kill.
            for number in total..<(total + 50) {
                try await second.send(Message(type: .chat, to: Self.echoJID, id: "in-\(number)", body: "\(number)").element)
                sentAfterRebind.update { $0.append(number) }
            }

            // Wait until every successful send is delivered or bounced back, and every stanza
            // alice sent after the re-bind is echoed (bounded).
            let afterRebind = sentAfterRebind.value
            try #require(!afterRebind.isEmpty, "alice sent nothing after the re-bind")
            let deadline = ContinuousClock.now + .seconds(30)
            while ContinuousClock.now < deadline {
                let echoes = Set(sink.ids(withPrefix: "echo-in-"))
                if Self.settled(sender: sender, sink: sink, echo: echo, restarted: restarted),
                    afterRebind.allSatisfy({ echoes.contains("echo-in-\($0)") })
                {
                    break
                }
                try await Task.sleep(for: .milliseconds(50))
            }
            secondReader.cancel()
            Self.check(
                sender: sender, sink: sink, echo: echo, total: total, aliceSent: sentByAlice.value, afterRebind: afterRebind,
                times: (killed: killed, noticed: noticed, restarted: restarted, rebound: rebound),
                startup: prosody.lastStartupDuration)
            await second.close()
        }
    }

    /// Whether every stanza sent successfully after the restart began was delivered or bounced.
    private static func settled(sender: NumberedSender, sink: UserSink, echo: EchoRecorder, restarted: ContinuousClock.Instant)
        -> Bool
    {
        let delivered = DeliveryFigures.counts(sink.ids(withPrefix: "p-"), prefix: "p-")
        let bounced = Set(echo.bounced)
        for (number, record) in sender.all where record.succeeded && record.returned! >= restarted {
            if delivered[number, default: 0] == 0 && !bounced.contains("p-\(number)") { return false }
        }
        return true
    }

    private static func check(
        sender: NumberedSender, sink: UserSink, echo: EchoRecorder, total: Int, aliceSent: [Int: Bool], afterRebind: [Int],
        times: (
            killed: ContinuousClock.Instant, noticed: ContinuousClock.Instant, restarted: ContinuousClock.Instant,
            rebound: ContinuousClock.Instant
        ),
        startup: Duration
    ) {
        let records = sender.all
        let out = DeliveryFigures(sender: sender, sink: sink)
        var bounced = Set<Int>()
        for id in echo.bounced where id.hasPrefix("p-") {
            if let number = Int(id.dropFirst(2)) { bounced.insert(number) }
        }
        var lostSilently: [Int] = []
        var lostBeforeRestart = true
        for number in out.lost where !bounced.contains(number) {
            lostSilently.append(number)
            if records[number]!.returned! >= times.restarted { lostBeforeRestart = false }
        }
        var queued: [Int] = []
        for (number, record) in records where record.started >= times.noticed && record.started < times.rebound {
            queued.append(number)
        }
        queued.sort()
        let queuedSet = Set(queued)
        var queuedArrival: [Int] = []
        for number in DeliveryFigures.arrivalOrder(sink.ids(withPrefix: "p-"), prefix: "p-") where queuedSet.contains(number) {
            queuedArrival.append(number)
        }
        let queuedDelivered = queued.filter { !bounced.contains($0) }
        #expect(out.failed == 0)
        #expect(out.duplicated == 0)
        #expect(lostBeforeRestart, "silently lost after the restart began: \(lostSilently)")
        #expect(queuedArrival == queuedDelivered, "the queued stanzas arrive once each, in order")

        let echoes = DeliveryFigures.counts(sink.ids(withPrefix: "echo-in-"), prefix: "echo-in-")
        var echoDuplicated = 0
        for count in echoes.values { echoDuplicated += max(0, count - 1) }
        var handled = Set<Int>()
        for id in echo.handled {
            if let number = Int(id.dropFirst(3)) { handled.insert(number) }
        }
        var aliceOK = 0
        for ok in aliceSent.values where ok { aliceOK += 1 }
        #expect(echoDuplicated == 0)
        // alice → component → alice after the re-bind: handled once, echoed once, in order.
        let handledCounts = DeliveryFigures.counts(echo.handled, prefix: "in-")
        #expect(
            afterRebind.filter { handledCounts[$0] != 1 }.isEmpty, "sent by alice after the re-bind, not handled exactly once")
        #expect(afterRebind.filter { echoes[$0] != 1 }.isEmpty, "sent by alice after the re-bind, not echoed to her exactly once")
        let afterRebindSet = Set(afterRebind)
        let echoOrder = DeliveryFigures.arrivalOrder(sink.ids(withPrefix: "echo-in-"), prefix: "echo-in-").filter(
            afterRebindSet.contains)
        #expect(echoOrder == afterRebind, "the echoes of what alice sent after the re-bind arrive in her send order")
        report(
            "prosody kill/restart: component→alice \(out); bounced back to the component (alice offline) \(bounced.count); "
                + "silently lost \(lostSilently.count) (all written before the restart: \(lostBeforeRestart)); "
                + "queued while disconnected \(queued.count) (delivered in order: \(queuedArrival == queuedDelivered))")
        report(
            "prosody kill/restart: alice→component sent ok \(aliceOK) of \(total), handled \(handled.count), "
                + "echoes delivered \(echoes.count), duplicated \(echoDuplicated)")
        report(
            "prosody kill/restart: disconnect noticed after \((times.noticed - times.killed).seconds), "
                + "down \((times.restarted - times.killed).seconds), recovery (restart → bound) "
                + "\((times.rebound - times.restarted).seconds) (Prosody start-up \(startup.seconds))")
    }
}
