import Foundation
import XMPPCore
import XMPPStream

/// The host's side of a local component's XEP-0114 handshake (`jabber:component:accept`),
/// as an I/O-free state machine: the header's `to` picks the hostname among those served
/// on the listener, the `<handshake/>` is checked with that hostname's secret
/// (``/XMPPStream/ComponentHandshake``), and then the host claims the hostname for the
/// session (``claimed()`` or ``conflicted()``).
///
/// Failures end the stream: wrong namespace `invalid-namespace`; unknown `to`
/// `host-unknown`; wrong digest or anything but `<handshake/>` first `not-authorized`;
/// the hostname held by another session `conflict`.
struct ExternalAcceptStateMachine: Sendable {
    /// What the driver must do next.
    enum Action: Hashable, Sendable {
        /// Nothing.
        case none
        /// Send this header.
        case sendHeader(StreamHeader)
        /// The handshake is right: claim the hostname, then call ``claimed()`` or ``conflicted()``.
        case claim(hostname: String)
        /// Send the header if given, then the stream error, and close.
        case fail(StreamError, header: StreamHeader?)
    }

    private enum State: Hashable, Sendable {
        case awaitingHeader
        case awaitingHandshake(hostname: String, secret: String, streamID: String)
        case claiming(hostname: String)
        case established(hostname: String)
        case closed
    }

    private let secrets: @Sendable (String) -> String?
    private let makeStreamID: @Sendable () -> String
    private var state = State.awaitingHeader

    /// Creates a machine.
    /// - Parameters:
    ///   - secrets: The secret of a hostname served on this listener (by its key), or `nil`.
    ///   - makeStreamID: A new random stream id.
    init(secrets: @escaping @Sendable (String) -> String?, makeStreamID: @escaping @Sendable () -> String = Self.randomStreamID) {
        self.secrets = secrets
        self.makeStreamID = makeStreamID
    }

    /// The hostname once established.
    var hostname: String? {
        if case .established(let hostname) = self.state { return hostname }
        return nil
    }

    /// The component's stream header arrived.
    mutating func streamOpened(_ header: StreamHeader) -> Action {
        guard case .awaitingHeader = self.state else {
            return self.fail(StreamError(.invalidXML, text: "unexpected stream header"), header: nil)
        }
        var reply = StreamHeader(contentNamespace: Namespace.componentAccept, id: self.makeStreamID(), version: nil)
        guard header.contentNamespace == Namespace.componentAccept else {
            return self.fail(
                StreamError(.invalidNamespace, text: "this listener speaks jabber:component:accept (XEP-0114)"), header: reply)
        }
        guard let to = header.to, let secret = self.secrets(hostnameKey(to)) else {
            return self.fail(StreamError(.hostUnknown, text: "no component is configured for this hostname"), header: reply)
        }
        let hostname = hostnameKey(to)
        reply.from = hostname
        self.state = .awaitingHandshake(hostname: hostname, secret: secret, streamID: reply.id ?? "")
        return .sendHeader(reply)
    }

    /// A top-level element arrived before the stream was established.
    mutating func received(_ element: Element) -> Action {
        guard case .awaitingHandshake(let hostname, let secret, let streamID) = self.state else {
            return self.fail(StreamError(.notAuthorized, text: "not authenticated"), header: nil)
        }
        guard element.name.localName == "handshake",
            element.name.namespace == Namespace.client || element.name.namespace == Namespace.componentAccept
        else {
            return self.fail(StreamError(.notAuthorized, text: "<handshake/> expected"), header: nil)
        }
        let expected = ComponentHandshake.digest(streamID: streamID, secret: secret)
        let text = element.text.trimmingCharacters(in: .init(charactersIn: " \t\r\n"))
        guard ComponentHandshake.matches(text, expected: expected) else {
            return self.fail(StreamError(.notAuthorized, text: "handshake mismatch"), header: nil)
        }
        self.state = .claiming(hostname: hostname)
        return .claim(hostname: hostname)
    }

    /// The hostname is this session's: the stream is established.
    mutating func claimed() -> Element? {
        guard case .claiming(let hostname) = self.state else { return nil }
        self.state = .established(hostname: hostname)
        return Element("handshake", namespace: Namespace.client)
    }

    /// Another session holds the hostname.
    mutating func conflicted() -> Action {
        guard case .claiming(let hostname) = self.state else { return .none }
        return self.fail(StreamError(.conflict, text: "\(hostname) is already connected"), header: nil)
    }

    private mutating func fail(_ error: StreamError, header: StreamHeader?) -> Action {
        self.state = .closed
        return .fail(error, header: header)
    }

    /// 16 random hexadecimal digits.
    static func randomStreamID() -> String {
        var generator = SystemRandomNumberGenerator()
        let value = generator.next() as UInt64
        let hex = String(value, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}
