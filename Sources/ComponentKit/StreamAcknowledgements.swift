import NIOCore
import Synchronization
import XMPPCore
import XMPPStream

/// The receiving side of XEP-0198 acknowledgements (no resumption) on one XEP-0225 stream,
/// as a value: which stanzas have been handled, and when an `<a h='…'/>` is due.
///
/// Stanzas are numbered in the order they were read, from 1. A stanza is *handled* when
/// its handler is done with it (or the connection answered or dropped it without a
/// handler). Handlers of different hostnames finish out of order, so the count sent to the
/// server is the longest run of handled stanzas from the first: the server may forget
/// exactly those, and routes the rest again if the stream dies.
///
/// An `<r/>` is answered at once when the count moved since the last `<a/>` or nothing is
/// being handled; otherwise the answer waits for the next handled stanza, so a server that
/// asks again at once (after every `<a/>` that leaves stanzas unacknowledged) does not get
/// an `<r/>`/`<a/>` exchange per event-loop turn while a handler is busy.
///
/// One stuck handler must not hold every acknowledgement of the stream: the servers close a
/// stream with too many unacknowledged stanzas (10 000 by default), which would take every
/// other hostname down with it. So a stanza is also acknowledged once ``window`` newer
/// stanzas have been read, handled or not: at most ``window`` stanzas are at risk behind a
/// stuck handler, and the stream lives.
struct AcknowledgementCounter: Sendable, Equatable {
    /// How many of the newest stanzas may stay unacknowledged behind an unfinished one.
    static let defaultWindow: UInt64 = 1000

    /// See ``defaultWindow``.
    let window: UInt64

    init(window: UInt64 = Self.defaultWindow) {
        self.window = max(1, window)
    }

    /// Stanzas read since `<enabled/>`.
    private(set) var received: UInt64 = 0
    /// Every stanza up to this one has been handled (or acknowledged past the window).
    private(set) var handled: UInt64 = 0
    /// Handled stanzas past ``handled`` (their predecessors are still being handled).
    private var handledAhead: Set<UInt64> = []
    /// The `h` of the last `<a/>` sent.
    private(set) var lastAcknowledged: UInt64 = 0
    /// An `<r/>` waits for the next handled stanza.
    private(set) var answerOwed = false

    /// A stanza was read: its number, and the `h` to send now if a waiting `<r/>` can be
    /// answered because the window moved.
    mutating func receive() -> (number: UInt64, answer: UInt64?) {
        self.received += 1
        guard self.answerOwed, self.acknowledgeable > self.lastAcknowledged else { return (self.received, nil) }
        self.answerOwed = false
        return (self.received, self.acknowledge())
    }

    /// What may be acknowledged: the handled run, or everything but the newest ``window``.
    var acknowledgeable: UInt64 {
        max(self.handled, self.received > self.window ? self.received - self.window : 0)
    }

    /// Stanza `number` has been handled. Returns the `h` to send now: an `<r/>` waited, or
    /// enough was handled since the last `<a/>`.
    mutating func markHandled(_ number: UInt64) -> UInt64? {
        guard number > self.handled, number <= self.received else { return nil }
        if number == self.handled + 1 {
            self.handled = number
            while self.handledAhead.remove(self.handled + 1) != nil {
                self.handled += 1
            }
        } else {
            self.handledAhead.insert(number)
            return nil
        }
        if self.answerOwed, self.acknowledgeable > self.lastAcknowledged {
            self.answerOwed = false
            return self.acknowledge()
        }
        // Unasked, every `unsolicitedEvery` handled stanzas (XEP-0198 allows an `<a/>` at any
        // time): the servers ask only once per round trip, so under a burst the count they
        // know lags far behind, and everything handled since is routed again if the stream
        // dies (handled twice).
        if self.acknowledgeable >= self.lastAcknowledged + Self.unsolicitedEvery {
            return self.acknowledge()
        }
        return nil
    }

    /// How many newly handled stanzas make an `<a/>` worth sending unasked.
    static let unsolicitedEvery: UInt64 = 16

    /// The server sent `<r/>`. Returns the `h` to send now, or `nil` when the answer waits.
    mutating func requested() -> UInt64? {
        if self.acknowledgeable > self.lastAcknowledged || self.handled == self.received {
            self.answerOwed = false
            return self.acknowledge()
        }
        self.answerOwed = true
        return nil
    }

    /// The `h` for a last `<a/>` before the stream is closed on purpose, if it says
    /// anything new.
    mutating func final() -> UInt64? {
        guard self.acknowledgeable > self.lastAcknowledged else { return nil }
        return self.acknowledge()
    }

    /// Stanzas read but not yet handled.
    var outstanding: UInt64 { self.received - self.handled }

    /// Whether the server still holds stanza `number` (not acknowledged): once the stream
    /// is gone, it routes it again elsewhere.
    func isUnacknowledged(_ number: UInt64) -> Bool {
        number > self.lastAcknowledged
    }

    private mutating func acknowledge() -> UInt64 {
        self.lastAcknowledged = self.acknowledgeable
        if self.handled < self.lastAcknowledged {
            // Acknowledged past the window: counted as done, so what was handled behind it
            // can follow.
            self.handled = self.lastAcknowledged
            self.handledAhead = self.handledAhead.filter { $0 > self.handled }
            while self.handledAhead.remove(self.handled + 1) != nil {
                self.handled += 1
            }
        }
        return self.lastAcknowledged
    }

    /// XEP-0198's `h` is a 32-bit counter that wraps.
    static func wire(_ count: UInt64) -> String {
        String(UInt32(truncatingIfNeeded: count))
    }
}

/// XEP-0198 acknowledgements on one stream: the counter behind a lock (handlers finish on
/// any thread), and the channel the `<a/>` elements go to.
final class StreamAcknowledgements: Sendable {
    enum Phase: Equatable, Sendable {
        /// Not offered by the server, or turned off in the configuration.
        case off
        /// `<enable/>` sent; on a XEP-0225 stream counting starts at `<enabled/>`, on a
        /// XEP-0114 stream it started with the handshake (``armForLegacyStream()``).
        case requested
        /// Counting.
        case enabled
        /// The server answered `<failed/>`.
        case failed
    }

    private struct State: Sendable {
        var phase: Phase = .off
        /// Whether read stanzas are numbered (from `<enabled/>` on a XEP-0225 stream, from
        /// the handshake on a XEP-0114 stream with acknowledgements).
        var counting = false
        var counter = AcknowledgementCounter()
        var channel: (any Channel)?
        var delivering = true
        /// The stream is gone: no more `<a/>` can be sent.
        var ended = false
    }

    private let state = Mutex(State())

    init() {}

    /// The channel the `<enable/>` and `<a/>` elements go to (set when the pipeline is made).
    func attach(_ channel: any Channel) {
        self.state.withLock { $0.channel = channel }
    }

    var phase: Phase { self.state.withLock { $0.phase } }

    /// Whether the server acknowledged `<enable/>`: stanzas are counted and acknowledged.
    var isEnabled: Bool { self.phase == .enabled }

    /// Sends `<enable/>` (call once, before the first bind).
    func enable() {
        self.state.withLock { $0.phase = .requested }
        self.sendEnable()
    }

    /// A XEP-0114 stream with acknowledgements (this project's extension, for ejabberd's
    /// `ejabberd_service_acks` listener): every stanza the server writes after its
    /// `<handshake/>` counts, so counting is on before anything is read. Call when the
    /// pipeline is made; ``sendEnable()`` follows the handshake. No `<a/>` goes out before
    /// the server answered `<enabled/>`.
    func armForLegacyStream() {
        self.state.withLock { state in
            state.phase = .requested
            state.counting = true
        }
    }

    /// Sends `<enable/>` on a stream armed with ``armForLegacyStream()``.
    func sendEnable() {
        let channel = self.state.withLock { $0.channel }
        channel?.writeAndFlush(XMLStreamFrame.element(Element("enable", namespace: Namespace.streamManagement)), promise: nil)
    }

    /// Handles a `urn:xmpp:sm:3` element the server sent. Returns an error text when the
    /// element breaks the protocol (the stream should end).
    func received(_ element: Element) -> String? {
        switch element.name.localName {
        case "enabled":
            return self.state.withLock { state -> String? in
                guard state.phase == .requested else { return "<enabled/> without <enable/>" }
                state.phase = .enabled
                state.counting = true
                return nil
            }
        case "failed":
            self.state.withLock { state in
                state.phase = .failed
                state.counting = false
            }
            return nil
        case "r":
            let answer = self.state.withLock { state -> UInt64?? in
                guard state.phase == .enabled else { return .none }
                return .some(state.counter.requested())
            }
            switch answer {
            case .none: return "<r/> before stream management was enabled"
            case .some(let h): if let h { self.sendAcknowledgement(h) }
            }
            return nil
        case "a":
            // We never ask (nothing of ours is kept for re-sending): nothing to do.
            return nil
        default:
            return nil
        }
    }

    /// A stanza was read: a token to hand over with it, and whether it may go to a handler
    /// (see ``stopDelivering()``); `nil` when not counting.
    func receive() -> (token: HandledToken, deliver: Bool)? {
        let counted = self.state.withLock { state -> (UInt64, UInt64?, Bool)? in
            guard state.counting else { return nil }
            let (number, answer) = state.counter.receive()
            return (number, answer, state.delivering)
        }
        guard let (number, answer, deliver) = counted else { return nil }
        if let answer { self.sendAcknowledgement(answer) }
        return (HandledToken(number: number, owner: self), deliver)
    }

    /// The stream is gone (closed, killed, failed): what was not acknowledged by now is the
    /// server's to route again.
    func streamEnded() {
        self.state.withLock { $0.ended = true }
    }

    /// Whether stanza `number` is being routed again by the server: the stream ended before
    /// it was acknowledged. Its handler should not see it (the instance that gets it now
    /// answers it).
    fileprivate func isRoutedAgain(_ number: UInt64) -> Bool {
        self.state.withLock { $0.ended && $0.phase == .enabled && $0.counter.isUnacknowledged(number) }
    }

    fileprivate func markHandled(_ number: UInt64) {
        let answer = self.state.withLock { $0.counter.markHandled(number) }
        if let answer { self.sendAcknowledgement(answer) }
    }

    /// Before closing the stream on purpose: tells the server what was handled, so that
    /// only the rest is routed again.
    func acknowledgeBeforeClosing() {
        let answer = self.state.withLock { state -> UInt64? in
            guard state.phase == .enabled else { return nil }
            return state.counter.final()
        }
        if let answer { self.sendAcknowledgement(answer) }
    }

    /// Whether stanzas read now still go to the handlers (false once the stream is being
    /// handed back to the server for a shutdown).
    var isDelivering: Bool { self.state.withLock { $0.delivering } }

    /// A shutdown hands the stream back: stanzas read from now on are not handed to the
    /// handlers and never acknowledged, so the server routes them again when the stream
    /// closes (to another instance, or back as an error).
    func stopDelivering() {
        self.state.withLock { $0.delivering = false }
    }

    /// Counters for status and tests.
    var counter: AcknowledgementCounter { self.state.withLock { $0.counter } }

    private func sendAcknowledgement(_ h: UInt64) {
        let a = Element("a", namespace: Namespace.streamManagement, attributes: ["h": AcknowledgementCounter.wire(h)])
        // Not before <enabled/> (a XEP-0114 stream counts from the handshake): the next
        // <a/> carries the count anyway.
        self.state.withLock { $0.phase == .enabled ? $0.channel : nil }?.writeAndFlush(XMLStreamFrame.element(a), promise: nil)
    }
}

/// One counted stanza on its way through a mailbox and a handler. Handled when
/// ``done()`` is called, or when it is dropped (a stanza thrown away unhandled, e.g. by a
/// cancelled handler loop, must not hold every later acknowledgement back).
final class HandledToken: Sendable {
    private let number: UInt64
    private let owner: StreamAcknowledgements
    private let finished = Atomic<Bool>(false)

    fileprivate init(number: UInt64, owner: StreamAcknowledgements) {
        self.number = number
        self.owner = owner
    }

    /// The stanza will not be handled here and must never be acknowledged (the stream is
    /// closing; the server routes it again).
    func hold() {
        self.finished.store(true, ordering: .releasing)
    }

    /// Whether the stream it came on is gone and the server routes it again elsewhere
    /// (it was never acknowledged): then it must not be handled here as well.
    var isRoutedAgain: Bool {
        self.owner.isRoutedAgain(self.number)
    }

    /// The stanza has been handled.
    func done() {
        guard !self.finished.exchange(true, ordering: .acquiringAndReleasing) else { return }
        self.owner.markHandled(self.number)
    }

    deinit {
        if !self.finished.load(ordering: .acquiring) {
            self.owner.markHandled(self.number)
        }
    }
}
