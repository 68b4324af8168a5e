public import XMPPCore

/// An incremental, restartable parser for XMPP XML streams (RFC 6120 §4, §11), built on expat.
///
/// Feed it bytes as they arrive, split anywhere (down to one byte at a time), and pull
/// ``XMLStreamEvent``s with ``nextEvent()``: the stream header, each complete top-level
/// element, the end of the stream. It has no dependency on SwiftNIO, so benchmarks and
/// fuzzers can drive it directly.
///
/// ```swift
/// let parser = XMLStreamParser()
/// parser.feed(Array(bytes))
/// while let event = try parser.nextEvent() {
///     if case .element(let element) = event, element.name.localName == "success" {
///         parser.restart()  // the bytes after <success/> start the new stream
///     }
/// }
/// ```
///
/// ## Restarts
///
/// After each event the parser stops right behind the tag that produced it, so bytes
/// that arrived in the same read but belong to a restarted stream are neither lost nor
/// parsed into the old document. Call ``restart()`` (after SASL success) before asking
/// for the next event: it discards the old document and the new one starts with exactly
/// the bytes that followed the element. After STARTTLS (`<proceed/>`), call
/// ``restartRejectingPendingInput()`` instead: any plaintext pipelined behind `<proceed/>`
/// is refused (a command-injection defence), since the new stream must come through TLS.
///
/// ## Errors
///
/// Every rejection is a ``/XMPPCore/StreamError`` to send to the peer before closing:
/// - `restricted-xml`: DOCTYPE (hence entity declarations and "billion laughs"), entity
///   declarations, comments, processing instructions and references to undefined
///   entities — RFC 6120 §11.1 forbids all entity references but the five predefined
///   ones, and lists entity references among the restricted features of §4.9.3.18;
/// - `not-well-formed`: malformed XML, invalid UTF-8 (expat's message, line and column);
/// - `bad-namespace-prefix`: an unbound or reserved prefix;
/// - `invalid-namespace`: a root other than `{http://etherx.jabber.org/streams}stream`;
/// - `unsupported-encoding`: an XML declaration naming an encoding other than UTF-8;
/// - `policy-violation`: a limit of ``XMLStreamLimits`` exceeded (the text names it).
///
/// Once an error is thrown the parser stays failed and throws it again.
///
/// ## Memory
///
/// Expat is given at most 64 KiB at a time and ``XMLStreamLimits/maxStanzaSize`` bounds
/// what it may hold for one element, so its memory stays bounded whatever the peer
/// sends; the bytes queued by ``feed(_:)-(UnsafeRawBufferPointer)`` are bounded by what the caller feeds before
/// draining the events.
public final class XMLStreamParser {
    private enum State {
        /// Expat has consumed everything it was given.
        case idle
        /// Expat stopped after an event inside the current chunk.
        case suspended
        /// The stream was rejected.
        case failed(StreamError)
    }

    /// The largest chunk handed to expat at once.
    static let chunkSize = 64 << 10

    /// The limits in force.
    public let limits: XMLStreamLimits

    private let expat: ExpatParser
    private var state = State.idle
    /// Bytes fed and not yet consumed by expat: `input[readIndex...]`.
    private var input: [UInt8] = []
    private var readIndex = 0
    /// How many bytes from `readIndex` were handed to expat in the current chunk.
    private var inFlight = 0
    /// How many of the builder's events have been returned.
    private var eventIndex = 0

    /// Creates a parser waiting for a stream header.
    /// - Parameters:
    ///   - limits: The limits to enforce.
    ///   - authenticated: Whether the peer is already authenticated; when `false`,
    ///     ``XMLStreamLimits/maxStanzaSizeBeforeAuthentication`` applies until
    ///     ``markAuthenticated()``.
    public init(limits: XMLStreamLimits = .default, authenticated: Bool = true) {
        self.limits = limits
        self.expat = ExpatParser(limits: limits)
        self.expat.builder.isAuthenticated = authenticated
    }

    /// Lifts the pre-authentication stanza limit (after SASL success or the XEP-0114
    /// handshake); ``XMLStreamLimits/maxStanzaSize`` applies from now on, restarts included.
    public func markAuthenticated() {
        self.expat.builder.isAuthenticated = true
    }

    /// Queues bytes for parsing; they are parsed by ``nextEvent()``.
    /// - Parameter bytes: The bytes, in any split.
    public func feed(_ bytes: UnsafeRawBufferPointer) {
        self.input.append(contentsOf: bytes)
    }

    /// Queues bytes for parsing; they are parsed by ``nextEvent()``.
    /// - Parameter bytes: The bytes, in any split.
    public func feed(_ bytes: some Sequence<UInt8>) {
        self.input.append(contentsOf: bytes)
    }

    /// Parses queued bytes up to the next event.
    ///
    /// - Returns: The next event, or `nil` when every queued byte has been parsed without
    ///   completing one (feed more).
    /// - Throws: The ``/XMPPCore/StreamError`` to send to the peer; the parser stays failed.
    public func nextEvent() throws(StreamError) -> XMLStreamEvent? {
        while true {
            if self.eventIndex < self.expat.builder.events.count {
                let event = self.expat.builder.events[self.eventIndex]
                self.eventIndex += 1
                return event
            }
            if self.eventIndex > 0 {
                self.expat.builder.events.removeAll(keepingCapacity: true)
                self.eventIndex = 0
            }
            let status: ExpatParser.Status
            switch self.state {
            case .failed(let error):
                throw error
            case .suspended:
                status = self.expat.resume()
            case .idle:
                let available = self.input.count - self.readIndex
                guard available > 0 else {
                    self.input.removeAll(keepingCapacity: self.input.capacity <= 2 * Self.chunkSize)
                    self.readIndex = 0
                    return nil
                }
                let count = min(available, Self.chunkSize)
                self.inFlight = count
                let start = self.readIndex
                status = self.input.withUnsafeBytes {
                    self.expat.parse(UnsafeRawBufferPointer(rebasing: $0[start..<start + count]))
                }
            }
            switch status {
            case .consumed:
                self.readIndex += self.inFlight
                self.inFlight = 0
                self.state = .idle
                // Bytes since the current element (or whitespace run) began, including
                // whatever expat holds unparsed.
                let held = self.expat.documentBytes - self.expat.builder.unitStart
                if held > self.expat.builder.currentSizeLimit.value {
                    self.state = .failed(self.expat.builder.fail(self.expat.builder.stanzaTooLarge).error)
                } else if self.expat.unfinishedTokenBytes > self.limits.maxTokenSize {
                    // Expat would scan this token again from its start on every read.
                    let error = StreamError(
                        .policyViolation,
                        text: "XML token too large: a tag, name or attribute value over the maximum token size "
                            + "(\(self.limits.maxTokenSize) bytes)")
                    self.state = .failed(self.expat.builder.fail(error).error)
                }
            case .suspended:
                self.state = .suspended
            case .failed(let error):
                self.state = .failed(error)
            }
        }
    }

    /// The number of bytes received after the tag that produced the last event and not
    /// yet parsed into an event: what a restart would carry over to the new stream.
    public var pendingInputCount: Int {
        let start = self.pendingStart
        return self.input.count - start
    }

    /// Where the bytes for a new document start in `input`.
    private var pendingStart: Int {
        guard case .suspended = self.state else { return self.readIndex }
        let remainder = self.expat.documentBytes - self.expat.builder.eventEnd
        // The event's tag ended inside the current chunk, so the remainder is its tail.
        return self.readIndex + self.inFlight - min(max(remainder, 0), self.inFlight)
    }

    /// Restarts the stream (RFC 6120 §4.3.3: after SASL success, or a XEP-0225 restart).
    ///
    /// Discards the old document; the new one begins with the bytes that followed the
    /// tag of the last event returned, so a header pipelined behind `<success/>` is
    /// parsed as the new stream's header. Call it before asking for the next event.
    public func restart() {
        let start = self.pendingStart
        let carried = Array(self.input[start...])
        self.expat.reset()
        self.input = carried
        self.readIndex = 0
        self.inFlight = 0
        self.eventIndex = 0
        self.state = .idle
    }

    /// Restarts the stream after STARTTLS (`<proceed/>`), refusing pipelined plaintext.
    ///
    /// RFC 6120 §5.4.3.3: the new stream must arrive over TLS, so any byte received after
    /// the tag of the last event is an injection attempt. If there is none, this is
    /// ``restart()``.
    /// - Throws: A `policy-violation` ``/XMPPCore/StreamError`` if bytes were pending; the
    ///   parser is then failed and the pending bytes discarded.
    public func restartRejectingPendingInput() throws(StreamError) {
        let pending = self.pendingInputCount
        guard pending == 0 else {
            let error = StreamError(
                .policyViolation,
                text: "\(pending) bytes of plaintext followed the STARTTLS exchange; they are refused"
            )
            self.input.removeAll()
            self.readIndex = 0
            self.inFlight = 0
            self.state = .failed(error)
            throw error
        }
        self.restart()
    }
}
