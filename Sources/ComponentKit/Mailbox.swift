import NIOCore
import Synchronization
import XMPPCore

/// The bounded queue of stanzas waiting for one hostname's handler.
///
/// Built on `NIOAsyncSequenceProducer` with a high/low watermark: when the queue reaches
/// its high mark, the stream that filled it stops reading from the server until the
/// handler has drained it to the low mark (backpressure, not memory growth).
final class Mailbox: Sendable {
    typealias Producer = NIOAsyncSequenceProducer<
        Element, NIOAsyncSequenceProducerBackPressureStrategies.HighLowWatermark, Delegate
    >

    final class Delegate: NIOAsyncSequenceProducerDelegate {
        private struct State {
            var resumer: (@Sendable () -> Void)?
            var drainedEarly = false
        }

        private let state = Mutex(State())

        /// Registers what to run once the queue has drained. `produceMore` can race ahead of
        /// the registration (the handler drains on another thread), so an early drain is
        /// remembered and the closure then runs at once.
        func whenDrained(_ resume: @escaping @Sendable () -> Void) {
            let runNow = self.state.withLock { state -> Bool in
                if state.drainedEarly {
                    state.drainedEarly = false
                    return true
                }
                state.resumer = resume
                return false
            }
            if runNow { resume() }
        }

        func produceMore() {
            let resume = self.state.withLock { state -> (@Sendable () -> Void)? in
                guard let resume = state.resumer else {
                    state.drainedEarly = true
                    return nil
                }
                state.resumer = nil
                return resume
            }
            resume?()
        }

        func didTerminate() {
            self.produceMore()
        }
    }

    let source: Producer.Source
    let sequence: Producer
    let delegate: Delegate

    init(depth: Int) {
        let delegate = Delegate()
        let high = max(depth, 2)
        let result = Producer.makeSequence(
            backPressureStrategy: .init(lowWatermark: max(high / 4, 1), highWatermark: high),
            finishOnDeinit: false,
            delegate: delegate
        )
        self.source = result.source
        self.sequence = result.sequence
        self.delegate = delegate
    }

    enum Offer {
        case accepted
        case acceptedAndFull
        case closed
    }

    /// Queues a stanza. After ``Offer/acceptedAndFull``, call ``whenDrained(_:)``.
    func offer(_ element: Element) -> Offer {
        switch self.source.yield(element) {
        case .produceMore:
            return .accepted
        case .stopProducing:
            return .acceptedAndFull
        case .dropped:
            return .closed
        }
    }

    /// Runs `resume` once the queue has drained to its low watermark.
    func whenDrained(_ resume: @escaping @Sendable () -> Void) {
        self.delegate.whenDrained(resume)
    }

    func finish() {
        self.source.finish()
    }

    deinit {
        // A binding refused before its handler loop started still owns an open source.
        self.source.finish()
    }
}
