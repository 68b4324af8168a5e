import XMPPCore

/// Turns the callbacks of ``ExpatParser`` into ``XMLStreamEvent``s: tracks depth,
/// builds the element tree of the current top-level element, checks the stream root
/// and the per-element limits, and records byte offsets for the size limits and restarts.
///
/// It does no I/O and holds no C pointers: each callback returns an ``Action`` that the
/// expat wrapper carries out (keep going, suspend after an event, or abort).
struct XMLStreamBuilder {
    /// What the expat wrapper must do after a callback.
    enum Action: Equatable {
        /// The error of a ``fail(_:)`` action.
        var error: StreamError {
            if case .fail(let error) = self { return error }
            preconditionFailure("not a failure")
        }

        /// Keep parsing.
        case proceed
        /// An event was produced: suspend the parser after the current token.
        case suspend
        /// The input is rejected: stop the parser for good.
        case fail(StreamError)
    }

    /// A partly built element.
    private struct Frame {
        var name: QualifiedName
        var attributes: [Element.Attribute]
        var children: [Element.Node]
    }

    let limits: XMLStreamLimits

    /// Open elements, the stream root included: 0 before the header, 1 between stanzas,
    /// 2 inside a stanza.
    private(set) var depth = 0
    /// Elements under construction; `frames[0]` is the current top-level element.
    private var frames: [Frame] = []
    /// Character data of the innermost open element since the last flush (UTF-8).
    private var text: [UInt8] = []
    /// The default namespace declared on the stream header.
    private var headerNamespace = ""
    /// Events produced since the caller last took them.
    var events: [XMLStreamEvent] = []
    /// Whether the stream header has been read.
    private(set) var headerDone = false
    /// The document byte offset where the current top-level unit began: the start of the
    /// open top-level element, or the end of the last event (for inter-element whitespace).
    private(set) var unitStart = 0
    /// The document byte offset just after the token that produced the last event.
    private(set) var eventEnd = 0
    /// The error that stopped the parser, if any.
    private(set) var failure: StreamError? {
        didSet { self.hasFailed = self.failure != nil }
    }
    /// `failure != nil`, kept as a plain flag: the callbacks test it on every element,
    /// and a `Bool` load is cheaper than inspecting the optional `StreamError`.
    private(set) var hasFailed = false

    /// Whether the stream is authenticated: ``XMLStreamLimits/maxStanzaSize`` applies, else
    /// ``XMLStreamLimits/maxStanzaSizeBeforeAuthentication`` too. Survives ``reset()``.
    var isAuthenticated = true

    /// The stanza size limit in force, and its name.
    var stanzaSizeLimit: (value: Int, name: String) {
        if self.isAuthenticated || self.limits.maxStanzaSizeBeforeAuthentication >= self.limits.maxStanzaSize {
            return (self.limits.maxStanzaSize, "maximum stanza size")
        }
        return (self.limits.maxStanzaSizeBeforeAuthentication, "maximum stanza size before authentication")
    }

    init(limits: XMLStreamLimits) {
        self.limits = limits
        self.text.reserveCapacity(1024)
        self.frames.reserveCapacity(8)
    }

    /// Forgets the document (for a stream restart); keeps allocated capacity.
    mutating func reset() {
        self.depth = 0
        self.frames.removeAll(keepingCapacity: true)
        self.text.removeAll(keepingCapacity: true)
        self.headerNamespace = ""
        self.events.removeAll(keepingCapacity: true)
        self.headerDone = false
        self.unitStart = 0
        self.eventEnd = 0
        self.failure = nil
    }

    /// The size limit that applies to the bytes since ``unitStart``, and its name.
    var currentSizeLimit: (value: Int, name: String) {
        self.headerDone
            ? self.stanzaSizeLimit
            : (self.limits.maxHeaderSize, "maximum stream header size")
    }

    // MARK: Callbacks

    /// Records `failure` and returns the action that aborts parsing.
    mutating func fail(_ error: StreamError) -> Action {
        if self.failure == nil {
            self.failure = error
        }
        return .fail(self.failure!)
    }

    /// Whether ``namespaceDeclaration(prefix:uri:)`` can have an effect (before the
    /// stream header), so the caller may skip converting the declaration otherwise.
    var wantsNamespaceDeclarations: Bool { self.depth == 0 }

    /// A namespace declaration; only the default namespace of the stream header matters.
    mutating func namespaceDeclaration(prefix: String?, uri: String) {
        if self.depth == 0, prefix == nil {
            self.headerNamespace = uri
        }
    }

    /// Whether an element start at the current depth is a top-level element (its start
    /// offset is then needed) or the stream root (its end offset is then needed).
    var nextStartNeedsOffsets: Bool { self.depth <= 1 }

    /// Checks the attribute count before the attributes are converted.
    mutating func checkAttributeCount(_ count: Int) -> Action {
        if count > self.limits.maxAttributes {
            return self.fail(
                StreamError(
                    .policyViolation,
                    text: "too many attributes on one element (maximum attributes per element: \(self.limits.maxAttributes))"
                )
            )
        }
        return .proceed
    }

    /// An element start tag.
    /// - Parameters:
    ///   - start: Document offset of the tag's `<` (used for top-level elements).
    ///   - end: Document offset just after the tag (used for the stream root).
    mutating func startElement(
        _ name: QualifiedName,
        attributes: [Element.Attribute],
        start: Int,
        end: Int
    ) -> Action {
        switch self.depth {
        case 0:
            return self.startRoot(name, attributes: attributes, end: end)
        case 1:
            self.unitStart = start
        default:
            if self.depth > self.limits.maxDepth {
                return self.fail(
                    StreamError(
                        .policyViolation,
                        text: "elements nested too deeply (maximum depth: \(self.limits.maxDepth))"
                    )
                )
            }
            self.flushText()
        }
        self.depth += 1
        self.frames.append(Frame(name: name, attributes: attributes, children: []))
        return .proceed
    }

    private mutating func startRoot(_ name: QualifiedName, attributes: [Element.Attribute], end: Int) -> Action {
        guard name.namespace == Namespace.stream, name.localName == "stream" else {
            let text =
                name.localName == "stream"
                ? "the stream root is in namespace '\(name.namespace)', not '\(Namespace.stream)'"
                : "the stream root is <\(name)>, not <{\(Namespace.stream)}stream>"
            return self.fail(StreamError(.invalidNamespace, text: text))
        }
        if end > self.limits.maxHeaderSize {
            return self.fail(
                StreamError(
                    .policyViolation,
                    text: "stream header too large (maximum stream header size: \(self.limits.maxHeaderSize) bytes)"
                )
            )
        }
        self.depth = 1
        self.headerDone = true
        self.unitStart = end
        self.eventEnd = end
        self.events.append(
            .streamOpened(StreamHeader(contentNamespace: self.headerNamespace, attributes: attributes))
        )
        return .suspend
    }

    /// An element end tag.
    /// - Parameter end: Document offset just after the end tag (needed at depth ≤ 2).
    mutating func endElement(end: Int) -> Action {
        switch self.depth {
        case 1:
            self.depth = 0
            self.unitStart = end
            self.eventEnd = end
            self.events.append(.streamClosed)
            return .suspend
        case 2:
            self.depth = 1
            let size = end - self.unitStart
            if size > self.stanzaSizeLimit.value {
                return self.fail(self.stanzaTooLarge)
            }
            self.flushText()
            let frame = self.frames.removeLast()
            self.unitStart = end
            self.eventEnd = end
            self.events.append(
                .element(Element(name: frame.name, attributes: frame.attributes, children: frame.children))
            )
            return .suspend
        default:
            self.depth -= 1
            self.flushText()
            let frame = self.frames.removeLast()
            self.frames[self.frames.count - 1].children.append(
                .element(Element(name: frame.name, attributes: frame.attributes, children: frame.children))
            )
            return .proceed
        }
    }

    /// Whether character data at the current depth is kept (inside a stanza) or
    /// ignored (whitespace between top-level elements).
    var keepsCharacterData: Bool { self.depth >= 2 }

    /// Appends character data of the innermost open element.
    @inline(__always)
    mutating func characterData(_ bytes: UnsafeBufferPointer<UInt8>) {
        self.text.append(contentsOf: bytes)
    }

    private mutating func flushText() {
        guard !self.text.isEmpty else { return }
        let string = String(decoding: self.text, as: UTF8.self)
        self.text.removeAll(keepingCapacity: true)
        self.frames[self.frames.count - 1].children.append(.text(string))
    }

    /// The error for a top-level element (or whitespace run) over the size limit.
    var stanzaTooLarge: StreamError {
        let (value, name) = self.currentSizeLimit
        let what = self.headerDone ? "stanza" : "stream header"
        return StreamError(.policyViolation, text: "\(what) too large (\(name): \(value) bytes)")
    }
}
