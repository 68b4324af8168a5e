import Testing
import XMPPCore

@testable import ReferenceServer

/// XEP-0198 bookkeeping of one component stream, with no socket (``StreamAcknowledgements``).
@Suite(.timeLimit(.minutes(1))) struct StreamAcknowledgementsTests {
    static func message(_ id: Int) -> Element {
        Element(
            "message", namespace: Namespace.client,
            attributes: ["from": "alice@example.test/r", "to": "search.example.test", "id": "m\(id)"])
    }

    @Test func asksAfterEverySixteenAndArmsTheTimerOnceBetween() {
        var acks = StreamAcknowledgements(maximumUnacknowledged: 10_000)
        var actions: [StreamAcknowledgements.SendAction] = []
        for index in 1...40 { actions.append(acks.sent(Self.message(index), routedDomain: "search.example.test")) }
        #expect(actions[0] == .armTimer)
        #expect(actions[15] == .request)
        #expect(actions.filter { $0 == .request }.count == 1, "no second <r/> while the first is unanswered")
        #expect(actions.filter { $0 == .armTimer }.count == 1)
        #expect(acks.unacknowledgedCount == 40)
        #expect(acks.requested)

        // The answer frees what it covers, oldest first; 24 left: ask again at once.
        #expect(acks.acknowledge("16") == .success(true))
        #expect(acks.unacknowledged.first?.element["id"] == "m17")
        #expect(acks.acknowledge("40") == .success(false))
        #expect(acks.unacknowledgedCount == 0 && !acks.requested)
        #expect(acks.unacknowledged.isEmpty)
    }

    @Test func theTimerAsksOnlyWhenSomethingIsUnacknowledged() {
        var acks = StreamAcknowledgements(maximumUnacknowledged: 10_000)
        #expect(acks.sent(Self.message(1), routedDomain: nil) == .armTimer)
        #expect(acks.sent(Self.message(2), routedDomain: nil) == .none)
        #expect(acks.timerFired() == true)
        #expect(acks.timerFired() == false, "asked already")
        #expect(acks.acknowledge("2") == .success(false))
        #expect(acks.timerFired() == false, "nothing unacknowledged")
        #expect(acks.sent(Self.message(3), routedDomain: nil) == .armTimer, "re-armed after it fired")
    }

    @Test func answersWithTheCountReceived() {
        var acks = StreamAcknowledgements(maximumUnacknowledged: 10_000)
        #expect(acks.answer == Element("a", namespace: "urn:xmpp:sm:3", attributes: ["h": "0"]))
        for _ in 0..<5 { acks.received() }
        #expect(acks.answer["h"] == "5")
    }

    @Test(arguments: ["3", "-1", "x", nil, "1.5"])
    func anAcknowledgementOutOfRangeIsHandledCountTooHigh(_ h: String?) {
        var acks = StreamAcknowledgements(maximumUnacknowledged: 10_000)
        _ = acks.sent(Self.message(1), routedDomain: nil)
        _ = acks.sent(Self.message(2), routedDomain: nil)
        guard case .failure(let error) = acks.acknowledge(h) else {
            Issue.record("h=\(h ?? "none") accepted")
            return
        }
        #expect(error.condition == .undefinedCondition)
        let detail = error.applicationCondition
        #expect(detail?.name == QualifiedName("urn:xmpp:sm:3", "handled-count-too-high"))
        #expect(detail?["h"] == (h ?? ""))
        #expect(detail?["send-count"] == "2")
    }

    @Test func anAcknowledgementBelowTheLastOneIsRefused() {
        var acks = StreamAcknowledgements(maximumUnacknowledged: 10_000)
        for index in 1...3 { _ = acks.sent(Self.message(index), routedDomain: nil) }
        #expect(acks.acknowledge("2") == .success(false))
        #expect(acks.acknowledge("2") == .success(false), "the same count again is fine")
        guard case .failure = acks.acknowledge("1") else {
            Issue.record("h went backwards")
            return
        }
    }

    @Test func pastTheMaximumTheStreamIsClosedOnce() {
        var acks = StreamAcknowledgements(maximumUnacknowledged: 3)
        for index in 1...3 { _ = acks.sent(Self.message(index), routedDomain: nil) }
        #expect(
            acks.sent(Self.message(4), routedDomain: nil)
                == .overflow(StreamError(.resourceConstraint, text: "Too many unacknowledged stanzas")))
        #expect(acks.sent(Self.message(5), routedDomain: nil) == .none)
        #expect(acks.unacknowledgedCount == 5, "still kept: routed again when the stream is gone")
        #expect(acks.timerFired() == false, "nothing asked while closing")
    }

    /// A component that stopped reading (TCP pushes back) cannot acknowledge what it has not
    /// read: past the maximum the stream lives while it is not reading, and is closed when
    /// it reads again without acknowledging.
    @Test func pastTheMaximumAComponentThatIsNotReadingIsNotClosed() {
        var acks = StreamAcknowledgements(maximumUnacknowledged: 3)
        for index in 1...6 {
            #expect(
                acks.sent(Self.message(index), routedDomain: nil, peerIsReading: false)
                    != .overflow(
                        StreamError(.resourceConstraint, text: "Too many unacknowledged stanzas")))
        }
        #expect(
            acks.sent(Self.message(7), routedDomain: nil, peerIsReading: true)
                == .overflow(StreamError(.resourceConstraint, text: "Too many unacknowledged stanzas")))
    }

    @Test func theUnacknowledgedAreKeptInOrderWithTheirDomain() {
        var acks = StreamAcknowledgements(maximumUnacknowledged: 10_000)
        _ = acks.sent(Self.message(1), routedDomain: "search.example.test")
        _ = acks.sent(Self.message(2), routedDomain: nil)
        _ = acks.sent(Self.message(3), routedDomain: "search.example.test")
        #expect(acks.acknowledge("1") == .success(false))
        let left = acks.unacknowledged
        #expect(left.map { $0.element["id"] } == ["m2", "m3"])
        #expect(left.map(\.routedDomain) == [nil, "search.example.test"])
    }

    @Test func onlyStanzasCount() {
        #expect(StreamAcknowledgements.isStanza(Self.message(1)))
        #expect(StreamAcknowledgements.isStanza(Element("iq", namespace: Namespace.client)))
        #expect(!StreamAcknowledgements.isStanza(Element("r", namespace: "urn:xmpp:sm:3")))
        #expect(!StreamAcknowledgements.isStanza(Element("enabled", namespace: "urn:xmpp:sm:3")))
        #expect(!StreamAcknowledgements.isStanza(Element("error", namespace: Namespace.stream)))
    }
}

@Suite(.timeLimit(.minutes(1))) struct StreamAcknowledgementsConfigurationTests {
    @Test func aMaximumBelowOneIsRefusedAtStart() async throws {
        var configuration = Fixture.shared.configuration
        configuration.maximumUnacknowledgedStanzas = 0
        let error = await #expect(throws: ReferenceServerError.self) {
            let server = try await ReferenceServer.start(configuration: configuration)
            await server.stop()
        }
        #expect(error?.kind == .configuration)
        #expect(error?.description.contains("maximumUnacknowledgedStanzas") == true)
    }
}
