import NIOCore
import XMPPCore

/// XEP-0198 acknowledgements (no resumption) on one component stream, as the server keeps
/// them: the I/O-free bookkeeping behind ``ComponentRouter``, mirroring the section
/// "XEP-0198 acknowledgements" of the Prosody module (`mod_component_xep0225.lua`).
///
/// From `<enabled/>` on, the server counts the stanzas it writes to the stream and keeps
/// each until the component acknowledges it (`<a h='…'/>`), with the domain whose routing
/// chose this stream (`nil` for the server's own answers and for ``RoutingAlgorithm/all``
/// copies); it counts the stanzas it receives, for its own `<a h='…'/>` answers. It asks
/// for an acknowledgement (`<r/>`) after every ``requestInterval`` unacknowledged stanzas,
/// and once a second after the first one if none was asked for. When the stream ends, the
/// stanzas still unacknowledged (``unacknowledged``) are routed again.
struct StreamAcknowledgements: Sendable {
    /// `urn:xmpp:sm:3`.
    static let namespace = Namespace.streamManagement
    /// Unacknowledged stanzas after which the server sends `<r/>`.
    static let requestInterval = 16
    /// How long after the first unacknowledged stanza the server asks anyway.
    static let requestDelay = TimeAmount.seconds(1)

    /// A stanza written to the stream and not acknowledged yet.
    struct Unacknowledged: Hashable, Sendable {
        /// The stanza as written.
        var element: Element
        /// The domain whose routing chose this stream, or `nil` (the server's own answers,
        /// ``RoutingAlgorithm/all`` copies): only routed stanzas are routed again.
        var routedDomain: String?
    }

    /// What the stream must do after a stanza was counted.
    enum SendAction: Hashable, Sendable {
        /// Nothing.
        case none
        /// Send `<r/>` now.
        case request
        /// Schedule ``timerFired()`` in ``StreamAcknowledgements/requestDelay``.
        case armTimer
        /// Too many unacknowledged stanzas: close the stream with this error.
        case overflow(StreamError)
    }

    /// Unacknowledged stanzas past which the stream is closed (`resource-constraint`).
    let maximumUnacknowledged: Int
    /// Stanzas written since `<enabled/>`.
    private(set) var sent = 0
    /// The component's last acknowledged count.
    private(set) var acknowledged = 0
    /// Stanzas received from the component since `<enabled/>`.
    private(set) var handled = 0
    /// Whether an `<r/>` is out and not answered yet.
    private(set) var requested = false
    /// Whether the one-second request timer is armed.
    private(set) var timerArmed = false
    /// Whether the stream is being closed for overflow (nothing more is requested).
    private(set) var closing = false
    private var queue = CircularBuffer<Unacknowledged>()

    /// Creates the state of a stream that just enabled acknowledgements.
    /// - Parameter maximumUnacknowledged: Unacknowledged stanzas past which the stream is closed.
    init(maximumUnacknowledged: Int) {
        self.maximumUnacknowledged = maximumUnacknowledged
    }

    /// Stanzas written and not acknowledged.
    var unacknowledgedCount: Int { self.sent - self.acknowledged }

    /// The stanzas written and not acknowledged, oldest first.
    var unacknowledged: [Unacknowledged] { Array(self.queue) }

    /// Whether an element counts as a stanza (`message`, `presence`, `iq`).
    static func isStanza(_ element: Element) -> Bool {
        switch element.name.localName {
        case "message", "presence", "iq":
            return element.name.namespace != Self.namespace && element.name.namespace != Namespace.stream
        default:
            return false
        }
    }

    // MARK: Events

    /// The server wrote a stanza to the stream.
    /// - Parameters:
    ///   - element: The stanza.
    ///   - routedDomain: The domain whose routing chose this stream, or `nil`.
    ///   - peerIsReading: Whether the component takes what is written (the stream's write
    ///     buffer is below its high-water mark). A component that stopped reading (its
    ///     handlers are behind and TCP pushes back) cannot acknowledge what it has not read:
    ///     that is backpressure, not a missing acknowledgement, and does not close the stream.
    mutating func sent(_ element: Element, routedDomain: String?, peerIsReading: Bool = true) -> SendAction {
        self.sent += 1
        self.queue.append(Unacknowledged(element: element, routedDomain: routedDomain))
        let unacknowledged = self.unacknowledgedCount
        if unacknowledged > self.maximumUnacknowledged, peerIsReading {
            guard !self.closing else { return .none }
            self.closing = true
            return .overflow(StreamError(.resourceConstraint, text: "Too many unacknowledged stanzas"))
        }
        if unacknowledged % Self.requestInterval == 0 {
            return self.request() ? .request : .none
        }
        if !self.timerArmed {
            self.timerArmed = true
            return .armTimer
        }
        return .none
    }

    /// After a batch was written and flushed: too many unacknowledged stanzas while the
    /// component takes what is written (see ``sent(_:routedDomain:peerIsReading:)``) closes
    /// the stream, once.
    mutating func checkOverflow() -> StreamError? {
        guard self.unacknowledgedCount > self.maximumUnacknowledged, !self.closing else { return nil }
        self.closing = true
        return StreamError(.resourceConstraint, text: "Too many unacknowledged stanzas")
    }

    /// The request timer fired.
    /// - Returns: Whether to send `<r/>` now (stanzas are unacknowledged and none was asked for).
    mutating func timerFired() -> Bool {
        self.timerArmed = false
        guard self.sent > self.acknowledged else { return false }
        return self.request()
    }

    /// The component sent a stanza (or any element other than a XEP-0198 one).
    mutating func received() {
        self.handled += 1
    }

    /// The component acknowledged with `<a h='…'/>`.
    /// - Parameter h: The `h` attribute as received.
    /// - Returns: Whether to send `<r/>` again now (``requestInterval`` or more stanzas are
    ///   still unacknowledged), or the stream error for an `h` below the last one, above the
    ///   count sent, or not a number (`undefined-condition` with `<handled-count-too-high/>`).
    mutating func acknowledge(_ h: String?) -> Result<Bool, StreamError> {
        guard let text = h, let value = Int(text), value >= self.acknowledged, value <= self.sent else {
            let detail = Element(
                "handled-count-too-high", namespace: Self.namespace,
                attributes: ["h": h ?? "", "send-count": String(self.sent)])
            return .failure(
                StreamError(
                    .undefinedCondition, text: "Acknowledged more stanzas than were sent", applicationCondition: detail))
        }
        self.queue.removeFirst(value - self.acknowledged)
        self.acknowledged = value
        self.requested = false
        return .success(self.unacknowledgedCount >= Self.requestInterval ? self.request() : false)
    }

    // MARK: Wire

    /// `<enabled xmlns='urn:xmpp:sm:3'/>` (no `id`, no `resume`: resumption is not offered).
    static var enabled: Element { Element("enabled", namespace: Self.namespace) }

    /// `<failed/>` with `<unexpected-request/>`: acknowledgements are enabled already.
    static var alreadyEnabled: Element {
        Element(
            "failed", namespace: Self.namespace,
            children: [Element("unexpected-request", namespace: Namespace.stanzas)])
    }

    /// `<r xmlns='urn:xmpp:sm:3'/>`.
    static var requestElement: Element { Element("r", namespace: Self.namespace) }

    /// `<a xmlns='urn:xmpp:sm:3' h='…'/>` with the stanzas received so far.
    var answer: Element { Element("a", namespace: Self.namespace, attributes: ["h": String(self.handled)]) }

    private mutating func request() -> Bool {
        guard !self.requested, !self.closing else { return false }
        self.requested = true
        return true
    }
}
