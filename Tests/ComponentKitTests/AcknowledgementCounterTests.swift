import Testing

@testable import ComponentKit

/// The XEP-0198 count a component sends: the run of handled stanzas from the first, never
/// a stanza whose predecessor is still with its handler.
@Suite struct AcknowledgementCounterTests {
    @Test func countsOnlyTheContiguousRunOfHandledStanzas() {
        var counter = AcknowledgementCounter()
        let numbers = (0..<5).map { _ in counter.receive() }
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

    @Test func theWireCountWrapsAt32Bits() {
        #expect(AcknowledgementCounter.wire(5) == "5")
        #expect(AcknowledgementCounter.wire(UInt64(UInt32.max)) == "4294967295")
        #expect(AcknowledgementCounter.wire(UInt64(UInt32.max) + 3) == "2")
    }
}
