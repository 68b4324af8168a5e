import Testing

@testable import ComponentKit

/// The XEP-0198 count a component sends: the run of handled stanzas from the first, never
/// a stanza whose predecessor is still with its handler.
@Suite struct AcknowledgementCounterTests {
    @Test func countsOnlyTheContiguousRunOfHandledStanzas() {
        var counter = AcknowledgementCounter()
        let numbers = (0..<5).map { _ in counter.receive().number }
        #expect(numbers == [1, 2, 3, 4, 5])
        // Stanzas 2 and 3 (another hostname's handler) finish before 1.
        _ = counter.markHandled(2)
        _ = counter.markHandled(3)
        #expect(counter.handled == 0)
        #expect(counter.requested() == nil, "nothing handled in order yet: the answer waits")
        #expect(counter.answerOwed)
        // Stanza 1 finishes: the run is 1…3 at once, and the waiting <r/> is answered.
        #expect(counter.markHandled(1) == 3)
        #expect(!counter.answerOwed)
        #expect(counter.outstanding == 2)
        _ = counter.markHandled(5)
        #expect(counter.handled == 3)
        _ = counter.markHandled(4)
        #expect(counter.handled == 5)
        #expect(counter.outstanding == 0)
    }

    @Test func answersARequestAtOnceWhenTheCountMovedOrNothingIsPending() {
        var counter = AcknowledgementCounter()
        // Nothing received: h = 0 at once (a request is always answered when nothing waits).
        #expect(counter.requested() == 0)
        _ = counter.receive()
        _ = counter.receive()
        _ = counter.markHandled(1)
        // Moved since the last <a/>: answered at once, though stanza 2 is still handled.
        #expect(counter.requested() == 1)
        // Asked again at once, nothing moved, something pending: the answer waits.
        #expect(counter.requested() == nil)
        #expect(counter.markHandled(2) == 2)
        // Nothing pending: answered at once even though nothing moved.
        #expect(counter.requested() == 2)
    }

    @Test func ignoresNumbersItNeverGaveOrAlreadyCounted() {
        var counter = AcknowledgementCounter()
        _ = counter.receive()
        #expect(counter.markHandled(7) == nil)
        #expect(counter.handled == 0)
        _ = counter.markHandled(1)
        _ = counter.markHandled(1)
        #expect(counter.handled == 1)
        #expect(counter.outstanding == 0)
    }

    @Test func aLastAcknowledgementOnlyWhenItSaysSomethingNew() {
        var counter = AcknowledgementCounter()
        #expect(counter.final() == nil)
        _ = counter.receive()
        _ = counter.receive()
        _ = counter.markHandled(1)
        #expect(counter.final() == 1)
        #expect(counter.final() == nil)
    }

    @Test func aStuckStanzaIsAcknowledgedOnceTheWindowHasPassedIt() {
        var counter = AcknowledgementCounter(window: 4)
        // Stanza 1's handler is stuck; 2…4 are handled.
        _ = counter.receive()
        for number in 2...4 {
            _ = counter.receive()
            _ = counter.markHandled(UInt64(number))
        }
        #expect(counter.requested() == nil, "within the window: nothing moves past the stuck stanza")
        // The fifth stanza pushes stanza 1 out of the window: the waiting <r/> is answered.
        let fifth = counter.receive()
        #expect(fifth.number == 5)
        #expect(fifth.answer == 1)
        // Once 1 is acknowledged, the handled 2…4 follow with the next answer.
        _ = counter.markHandled(5)
        #expect(counter.requested() == 5)
        // A stanza handled after its acknowledgement changes nothing.
        _ = counter.markHandled(1)
        #expect(counter.handled == 5)
    }

    @Test func afterTheStreamEndsOnlyWhatWasAcknowledgedIsOurs() {
        var counter = AcknowledgementCounter()
        for _ in 0..<3 { _ = counter.receive() }
        _ = counter.markHandled(1)
        #expect(counter.requested() == 1)
        #expect(!counter.isUnacknowledged(1))
        #expect(counter.isUnacknowledged(2))
        #expect(counter.isUnacknowledged(3))
    }

    @Test func theWireCountWrapsAt32Bits() {
        #expect(AcknowledgementCounter.wire(5) == "5")
        #expect(AcknowledgementCounter.wire(UInt64(UInt32.max)) == "4294967295")
        #expect(AcknowledgementCounter.wire(UInt64(UInt32.max) + 3) == "2")
    }
}

extension AcknowledgementCounterTests {
    /// Unasked, every 16 handled stanzas: under a burst the count the server knows does not
    /// lag a whole round trip behind.
    @Test func acknowledgesUnaskedEverySixteenHandledStanzas() {
        var counter = AcknowledgementCounter()
        var sent: [UInt64] = []
        for _ in 0..<40 {
            let number = counter.receive().number
            if let h = counter.markHandled(number) { sent.append(h) }
        }
        #expect(sent == [16, 32])
    }
}
