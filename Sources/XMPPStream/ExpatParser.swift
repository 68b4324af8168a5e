import CExpat
import XMPPCore

/// The one owner of an expat parser, and the only file that touches C pointers.
///
/// Expat is created namespace-aware (`XML_ParserCreateNS` with a space separator, so
/// names arrive as `"uri local"`), with UTF-8 forced as the input encoding and reparse
/// deferral switched off (see `cxmpp_expat_disable_reparse_deferral`). The callbacks are
/// non-capturing `@convention(c)` closures that recover `self` from expat's user data;
/// they convert C strings into Swift values and hand them to ``XMLStreamBuilder``, whose
/// returned action they carry out with `XML_StopParser`.
///
/// Input is copied into expat's own buffer (`XML_GetBuffer` + `XML_ParseBuffer`), so expat
/// owns the bytes it holds unparsed between calls.
final class ExpatParser {
    /// The outcome of handing bytes to expat or resuming it.
    enum Status {
        /// Every byte given was consumed (expat may hold a partial token).
        case consumed
        /// Parsing stopped after the token that produced an event; resume later.
        case suspended
        /// The input was rejected.
        case failed(StreamError)
    }

    private var parser: XML_Parser
    /// The tree builder the callbacks feed.
    ///
    /// Dynamic exclusivity checks are off for `builder` and `names` (hot path: several
    /// accesses per element, ~15% of decode time): they are only touched by the callbacks
    /// during one expat call, or by ``XMLStreamParser`` between expat calls, never both.
    @exclusivity(unchecked) var builder: XMLStreamBuilder
    @exclusivity(unchecked) private var names = NameTable()
    /// Bytes handed to expat since the document began.
    private(set) var documentBytes = 0

    /// Creates a parser for a new document.
    init(limits: XMLStreamLimits) {
        guard let parser = XML_ParserCreateNS("UTF-8", 0x20) else {
            fatalError("XML_ParserCreateNS failed: out of memory")
        }
        self.parser = parser
        self.builder = XMLStreamBuilder(limits: limits)
        self.configure()
    }

    deinit {
        XML_ParserFree(self.parser)
    }

    /// Discards the document: expat forgets everything it held (handlers included, so
    /// they are installed again, with user data and the reparse-deferral setting).
    func reset() {
        if XML_ParserReset(self.parser, "UTF-8") == XML_Bool(0) {
            guard let parser = XML_ParserCreateNS("UTF-8", 0x20) else {
                fatalError("XML_ParserCreateNS failed: out of memory")
            }
            XML_ParserFree(self.parser)
            self.parser = parser
        }
        self.builder.reset()
        self.documentBytes = 0
        self.configure()
    }

    /// Copies `bytes` into expat's buffer and parses them.
    func parse(_ bytes: UnsafeRawBufferPointer) -> Status {
        guard let buffer = XML_GetBuffer(self.parser, Int32(bytes.count)) else {
            return self.status(XML_STATUS_ERROR)
        }
        if let base = bytes.baseAddress {
            buffer.copyMemory(from: base, byteCount: bytes.count)
        }
        self.documentBytes += bytes.count
        return self.status(XML_ParseBuffer(self.parser, Int32(bytes.count), 0))
    }

    /// Bytes expat holds unparsed after consuming a chunk: the unfinished token it will scan
    /// again from its start on the next call (0 when it holds none).
    var unfinishedTokenBytes: Int {
        let index = Int(XML_GetCurrentByteIndex(self.parser))
        guard index >= 0 else { return 0 }
        return max(0, self.documentBytes - index)
    }

    /// Resumes a suspended parser.
    func resume() -> Status {
        self.status(XML_ResumeParser(self.parser))
    }

    private func status(_ status: XML_Status) -> Status {
        switch status {
        case XML_STATUS_OK:
            return .consumed
        case XML_STATUS_SUSPENDED:
            return .suspended
        default:
            if let failure = self.builder.failure {
                return .failed(failure)
            }
            let error = self.streamError(for: XML_GetErrorCode(self.parser))
            _ = self.builder.fail(error)
            return .failed(error)
        }
    }

    /// Maps an expat error to the RFC 6120 §4.9.3 condition, with expat's message and position.
    private func streamError(for code: XML_Error) -> StreamError {
        let condition: StreamError.Condition
        switch code {
        case XML_ERROR_UNDEFINED_ENTITY, XML_ERROR_AMPLIFICATION_LIMIT_BREACH,
            XML_ERROR_RECURSIVE_ENTITY_REF, XML_ERROR_EXTERNAL_ENTITY_HANDLING:
            // RFC 6120 §11.1: no entity references but the five predefined ones.
            condition = .restrictedXML
        case XML_ERROR_UNBOUND_PREFIX, XML_ERROR_UNDECLARING_PREFIX, XML_ERROR_RESERVED_PREFIX_XML,
            XML_ERROR_RESERVED_PREFIX_XMLNS, XML_ERROR_RESERVED_NAMESPACE_URI:
            condition = .badNamespacePrefix
        case XML_ERROR_UNKNOWN_ENCODING, XML_ERROR_INCORRECT_ENCODING:
            condition = .unsupportedEncoding
        case XML_ERROR_NO_MEMORY:
            condition = .resourceConstraint
        default:
            condition = .notWellFormed
        }
        let message = XML_ErrorString(code).map { String(cString: $0) } ?? "expat error"
        let line = XML_GetCurrentLineNumber(self.parser)
        let column = XML_GetCurrentColumnNumber(self.parser)
        return StreamError(
            condition,
            text: "\(message) (expat error \(code.rawValue)) at line \(line), column \(column)"
        )
    }

    // MARK: Callbacks

    private func configure() {
        let parser = self.parser
        XML_SetUserData(parser, Unmanaged.passUnretained(self).toOpaque())
        _ = cxmpp_expat_disable_reparse_deferral(parser)
        XML_SetElementHandler(
            parser,
            { userData, name, attributes in
                ExpatParser.with(userData) { $0.startElement(name!, attributes!) }
            },
            { userData, _ in
                ExpatParser.with(userData) { $0.endElement() }
            }
        )
        XML_SetCharacterDataHandler(parser) { userData, bytes, length in
            ExpatParser.with(userData) { $0.characterData(bytes!, Int(length)) }
        }
        XML_SetStartNamespaceDeclHandler(parser) { userData, prefix, uri in
            ExpatParser.with(userData) { this in
                // Only the stream header's declarations matter (see the builder): skip
                // the two `String` conversions for the `xmlns` of every payload element.
                guard this.builder.wantsNamespaceDeclarations else { return }
                this.builder.namespaceDeclaration(
                    prefix: prefix.map { String(cString: $0) },
                    uri: uri.map { String(cString: $0) } ?? ""
                )
            }
        }
        XML_SetXmlDeclHandler(parser) { userData, _, encoding, _ in
            guard let encoding else { return }
            let name = String(cString: encoding)
            if name.lowercased() != "utf-8" {
                ExpatParser.from(userData).reject(
                    StreamError(.unsupportedEncoding, text: "encoding '\(name)' declared; XMPP is UTF-8 only")
                )
            }
        }
        // RFC 6120 §11.1: no DTD (so no entity declarations), comments or processing instructions.
        XML_SetStartDoctypeDeclHandler(parser) { userData, _, _, _, _ in
            ExpatParser.from(userData).reject(
                StreamError(.restrictedXML, text: "document type declarations (DOCTYPE) are not allowed in XMPP")
            )
        }
        XML_SetEntityDeclHandler(parser) { userData, _, _, _, _, _, _, _, _ in
            ExpatParser.from(userData).reject(
                StreamError(.restrictedXML, text: "entity declarations are not allowed in XMPP")
            )
        }
        XML_SetCommentHandler(parser) { userData, _ in
            ExpatParser.from(userData).reject(StreamError(.restrictedXML, text: "comments are not allowed in XMPP"))
        }
        XML_SetProcessingInstructionHandler(parser) { userData, _, _ in
            ExpatParser.from(userData).reject(
                StreamError(.restrictedXML, text: "processing instructions are not allowed in XMPP")
            )
        }
    }

    @inline(__always)
    private static func from(_ userData: UnsafeMutableRawPointer?) -> ExpatParser {
        Unmanaged<ExpatParser>.fromOpaque(userData!).takeUnretainedValue()
    }

    /// Runs `body` on the parser behind expat's user data without retaining it.
    ///
    /// `takeUnretainedValue()` yields a +0 reference that the compiler retains and
    /// releases around the call (a measurable share of every callback). The parser is
    /// alive for the whole expat call (expat only runs inside `parse`/`resume`, methods
    /// of this very object), so `_withUnsafeGuaranteedRef` may vouch for it instead.
    @inline(__always)
    private static func with(_ userData: UnsafeMutableRawPointer?, _ body: (ExpatParser) -> Void) {
        Unmanaged<ExpatParser>.fromOpaque(userData!)._withUnsafeGuaranteedRef(body)
    }

    private func reject(_ error: StreamError) {
        self.apply(self.builder.fail(error))
    }

    @inline(__always)
    private func apply(_ action: XMLStreamBuilder.Action) {
        switch action {
        case .proceed:
            break
        case .suspend:
            XML_StopParser(self.parser, XML_Bool(1))
        case .fail:
            XML_StopParser(self.parser, XML_Bool(0))
        }
    }

    /// Offset just after the current token (the tag being reported).
    @inline(__always)
    private var currentTokenEnd: Int {
        Int(XML_GetCurrentByteIndex(self.parser)) + Int(XML_GetCurrentByteCount(self.parser))
    }

    private func startElement(
        _ name: UnsafePointer<CChar>,
        _ attributes: UnsafeMutablePointer<UnsafePointer<CChar>?>
    ) {
        guard !self.builder.hasFailed else { return }
        var count = 0
        while attributes[2 * count] != nil {
            count += 1
        }
        if count > 0 {
            let check = self.builder.checkAttributeCount(count)
            guard check == .proceed else { return self.apply(check) }
        }
        var list: [Element.Attribute] = []
        if count > 0 {
            list.reserveCapacity(count)
            for index in 0..<count {
                let attributeName = self.names.name(attributes[2 * index]!)
                let value = attributes[2 * index + 1]!
                list.append(Element.Attribute(attributeName, ExpatParser.string(value)))
            }
        }
        let qualifiedName = self.names.name(name)
        var start = 0
        var end = 0
        if self.builder.nextStartNeedsOffsets {
            start = Int(XML_GetCurrentByteIndex(self.parser))
            end = self.currentTokenEnd
        }
        self.apply(self.builder.startElement(qualifiedName, attributes: list, start: start, end: end))
    }

    private func endElement() {
        guard !self.builder.hasFailed else { return }
        let end = self.builder.depth <= 2 ? self.currentTokenEnd : 0
        self.apply(self.builder.endElement(end: end))
    }

    @inline(__always)
    private func characterData(_ bytes: UnsafePointer<CChar>, _ length: Int) {
        guard self.builder.keepsCharacterData, !self.builder.hasFailed else { return }
        bytes.withMemoryRebound(to: UInt8.self, capacity: length) {
            self.builder.characterData(UnsafeBufferPointer(start: $0, count: length))
        }
    }

    /// A NUL-terminated UTF-8 string (expat has already validated it).
    @inline(__always)
    private static func string(_ cString: UnsafePointer<CChar>) -> String {
        cString.withMemoryRebound(to: UInt8.self, capacity: 1) { bytes in
            var length = 0
            while bytes[length] != 0 {
                length += 1
            }
            return String(decoding: UnsafeBufferPointer(start: bytes, count: length), as: UTF8.self)
        }
    }
}

/// A cache of qualified names keyed by expat's `"uri local"` strings, so that common
/// names (`jabber:client message`, `to`, `urn:ietf:params:xml:ns:xmpp-stanzas text`…)
/// are split and converted once instead of once per element.
///
/// Direct-mapped: a hash picks one slot; a miss overwrites it. Keys longer than
/// ``maxKeyLength`` are not cached. Names in `jabber:component:accept` are mapped to the
/// canonical `jabber:client` here (see ``/XMPPCore/Element``).
///
/// Every element and attribute name goes through ``name(_:)``, so the lookup is kept
/// cheap: the hash reads three 8-byte words (start, middle, end) and the length instead
/// of every byte, and the key comparison goes a word at a time. A weaker hash only
/// costs extra misses (two names sharing a slot evict each other); a hit still requires
/// the full key to match, so the names returned are exactly those of the input.
private struct NameTable {
    static let slotBits = 9
    static let slotCount = 1 << slotBits
    static let maxKeyLength = 96

    private var keys: [UInt8]
    private var keyLengths: [Int]
    private var names: [QualifiedName]

    init() {
        self.keys = [UInt8](repeating: 0, count: Self.slotCount * Self.maxKeyLength)
        self.keyLengths = [Int](repeating: -1, count: Self.slotCount)
        self.names = [QualifiedName](repeating: QualifiedName(unqualified: ""), count: Self.slotCount)
    }

    @inline(__always)
    mutating func name(_ cString: UnsafePointer<CChar>) -> QualifiedName {
        let bytes = UnsafeRawPointer(cString)
        var length = 0
        while bytes.load(fromByteOffset: length, as: UInt8.self) != 0 {
            length += 1
        }
        let key = UnsafeRawBufferPointer(start: bytes, count: length)
        guard length <= Self.maxKeyLength else {
            return Self.makeName(key)
        }
        let slot = Self.slot(bytes, length)
        if self.keyLengths[slot] == length {
            let equal = self.keys.withUnsafeBytes {
                Self.equal($0.baseAddress! + slot * Self.maxKeyLength, bytes, length)
            }
            if equal {
                return self.names[slot]
            }
        }
        let name = Self.makeName(key)
        self.keys.withUnsafeMutableBytes {
            ($0.baseAddress! + slot * Self.maxKeyLength).copyMemory(from: bytes, byteCount: length)
        }
        self.keyLengths[slot] = length
        self.names[slot] = name
        return name
    }

    /// The slot of a key: a multiplicative hash of its length and of the 8-byte words at
    /// its start, middle and end (overlapping for short keys; bytes for keys under 8).
    @inline(__always)
    private static func slot(_ bytes: UnsafeRawPointer, _ length: Int) -> Int {
        var head: UInt64 = 0
        var middle: UInt64 = 0
        var tail: UInt64 = 0
        if length >= 8 {
            // Unaligned loads inside [0, length): never past the key.
            head = bytes.loadUnaligned(as: UInt64.self)
            middle = bytes.loadUnaligned(fromByteOffset: (length - 8) / 2, as: UInt64.self)
            tail = bytes.loadUnaligned(fromByteOffset: length - 8, as: UInt64.self)
        } else {
            for index in 0..<length {
                head |= UInt64(bytes.load(fromByteOffset: index, as: UInt8.self)) << (8 * UInt64(index))
            }
        }
        var hash = head &* 0x9E37_79B9_7F4A_7C15
        hash = (hash ^ (hash >> 29) ^ middle) &* 0xBF58_476D_1CE4_E5B9
        hash = (hash ^ (hash >> 31) ^ tail ^ UInt64(length)) &* 0x94D0_49BB_1331_11EB
        // The top bits of a product depend on all the bits below them.
        return Int(truncatingIfNeeded: hash >> UInt64(64 - Self.slotBits))
    }

    /// Whether `length` bytes at `a` and `b` are equal, compared a word at a time.
    @inline(__always)
    private static func equal(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, _ length: Int) -> Bool {
        var offset = 0
        while offset + 8 <= length {
            if a.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
                != b.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
            {
                return false
            }
            offset += 8
        }
        while offset < length {
            if a.load(fromByteOffset: offset, as: UInt8.self) != b.load(fromByteOffset: offset, as: UInt8.self) {
                return false
            }
            offset += 1
        }
        return true
    }

    /// Splits `"uri local"` (or a bare `"local"`) into a ``QualifiedName``.
    private static func makeName(_ key: UnsafeRawBufferPointer) -> QualifiedName {
        guard let space = key.firstIndex(of: 0x20) else {
            return QualifiedName(unqualified: String(decoding: key, as: UTF8.self))
        }
        var namespace = String(decoding: UnsafeRawBufferPointer(rebasing: key[..<space]), as: UTF8.self)
        let localName = String(decoding: UnsafeRawBufferPointer(rebasing: key[(space + 1)...]), as: UTF8.self)
        switch namespace {
        case Namespace.client, Namespace.componentAccept:
            namespace = Namespace.client  // shares the constant's storage
        case Namespace.stream:
            namespace = Namespace.stream
        case Namespace.xml:
            namespace = Namespace.xml
        default:
            break
        }
        return QualifiedName(namespace, localName)
    }
}
