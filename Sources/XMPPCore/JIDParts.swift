// Validation and normalisation of the three JID parts (RFC 7622 §3.2–3.4).
//
// Each part has a pure-ASCII fast path (byte loops, no Unicode tables, no
// normalisation) and a general path (scalar mapping, `lowercased()`, NFC,
// Unicode general categories). Both paths apply the same rules in the same
// order, so an ASCII string gets the same result and error from either.

enum JIDParts {
    // MARK: Localpart (PRECIS UsernameCaseMapped, RFC 8265 §3.3; RFC 7622 §3.3)

    static func localpart(_ part: Substring) throws(JIDError) -> String {
        guard !part.isEmpty else { throw JIDError(.emptyLocalpart) }
        if isASCII(part) {
            return try asciiLocalpart(part)
        }
        // Width mapping, case mapping, NFC (RFC 8265 §3.3.2 steps 1, 3, 4).
        let normalized = nfc(String(mapFullwidthASCII(part)).lowercased())
        try checkLength(normalized, .localpart)
        try checkSurroundingWhitespace(normalized.unicodeScalars, .localpart)
        for scalar in normalized.unicodeScalars {
            let allowed =
                scalar.isASCII
                ? isLocalpartASCII(UInt8(scalar.value))
                : isLetterDigit(scalar)
            guard allowed else { throw JIDError(.forbiddenCharacter(.localpart, scalar)) }
        }
        return normalized
    }

    private static func asciiLocalpart(_ part: Substring) throws(JIDError) -> String {
        let result = withBytes(part.utf8) { bytes -> Result<Bool, JIDError> in
            guard bytes.count <= JID.maximumPartLength else {
                return .failure(JIDError(.partTooLong(.localpart, bytes: bytes.count)))
            }
            if isASCIIWhitespace(bytes.first!) || isASCIIWhitespace(bytes.last!) {
                return .failure(JIDError(.surroundingWhitespace(.localpart)))
            }
            var hasUppercase = false
            for byte in bytes {
                guard isLocalpartASCII(byte) else {
                    return .failure(JIDError(.forbiddenCharacter(.localpart, Unicode.Scalar(byte))))
                }
                if isASCIIUppercase(byte) { hasUppercase = true }
            }
            return .success(hasUppercase)
        }
        return try result.get() ? asciiLowercased(part.utf8) : String(part)
    }

    /// Printable ASCII except RFC 7622 §3.3.1's `" & ' / : < > @`
    /// (space and controls are not printable).
    private static func isLocalpartASCII(_ byte: UInt8) -> Bool {
        switch byte {
        case 0x21...0x7E:
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "&"), UInt8(ascii: "'"), UInt8(ascii: "/"),
                UInt8(ascii: ":"), UInt8(ascii: "<"), UInt8(ascii: ">"), UInt8(ascii: "@"):
                return false
            default:
                return true
            }
        default:
            return false
        }
    }

    // MARK: Resourcepart (PRECIS OpaqueString, RFC 8265 §4.2; RFC 7622 §3.4)

    static func resourcepart(_ part: Substring) throws(JIDError) -> String {
        guard !part.isEmpty else { throw JIDError(.emptyResourcepart) }
        if isASCII(part) {
            let result = withBytes(part.utf8) { bytes -> Result<Void, JIDError> in
                guard bytes.count <= JID.maximumPartLength else {
                    return .failure(JIDError(.partTooLong(.resourcepart, bytes: bytes.count)))
                }
                if isASCIIWhitespace(bytes.first!) || isASCIIWhitespace(bytes.last!) {
                    return .failure(JIDError(.surroundingWhitespace(.resourcepart)))
                }
                for byte in bytes where !(0x20...0x7E).contains(byte) {
                    return .failure(JIDError(.forbiddenCharacter(.resourcepart, Unicode.Scalar(byte))))
                }
                return .success(())
            }
            try result.get()
            return String(part)
        }
        // Additional mapping (non-ASCII spaces to U+0020), then NFC.
        var mapped = String.UnicodeScalarView()
        for scalar in part.unicodeScalars {
            mapped.append(scalar.properties.generalCategory == .spaceSeparator ? " " : scalar)
        }
        let normalized = nfc(String(mapped))
        try checkLength(normalized, .resourcepart)
        try checkSurroundingWhitespace(normalized.unicodeScalars, .resourcepart)
        for scalar in normalized.unicodeScalars where !isFreeform(scalar) {
            throw JIDError(.forbiddenCharacter(.resourcepart, scalar))
        }
        return normalized
    }

    // MARK: Domainpart (RFC 7622 §3.2)

    static func domainpart(_ part: Substring) throws(JIDError) -> String {
        guard !part.isEmpty else { throw JIDError(.emptyDomainpart) }
        if isASCII(part) {
            return try asciiDomainpart(part)
        }
        // IDNA2003 label separators and fullwidth ASCII (UTS #46 / RFC 5895
        // mapping) first: the result is often plain ASCII.
        var mapped = String.UnicodeScalarView()
        for scalar in mapFullwidthASCII(part) {
            switch scalar.value {
            case 0x3002, 0xFF61: mapped.append(".")  // ideographic / halfwidth ideographic full stop
            default: mapped.append(scalar)
            }
        }
        if mapped.allSatisfy(\.isASCII) {
            return try asciiDomainpart(Substring(String(mapped)))
        }
        var domain = nfc(String(mapped).lowercased())
        try checkSurroundingWhitespace(domain.unicodeScalars, .domainpart)
        if domain.utf8.last == UInt8(ascii: ".") { domain.removeLast() }
        guard !domain.isEmpty else { throw JIDError(.emptyDomainpart) }
        try checkLength(domain, .domainpart)
        if domain.utf8.first == UInt8(ascii: "[") {
            throw JIDError(.invalidIPv6Address(domain))
        }
        var lastLabel = Substring()
        for label in domain.unicodeScalars.split(separator: ".", omittingEmptySubsequences: false) {
            let labelString = Substring(label)
            if label.allSatisfy(\.isASCII) {
                try checkASCIILabel(labelString.utf8)
            } else {
                try checkUnicodeLabel(label)
            }
            lastLabel = labelString
        }
        try checkIPv4IfNumeric(domain, lastLabel: lastLabel.utf8)
        return domain
    }

    private static func asciiDomainpart(_ part: Substring) throws(JIDError) -> String {
        try withBytes(part.utf8, asciiDomainpart).get()
    }

    /// One pass over the bytes: lowercase, labels, then IPv4 if the last
    /// label is all digits. Within a label the rules are checked in the same
    /// order as ``checkASCIILabel(_:)``.
    private static func asciiDomainpart(_ input: UnsafeBufferPointer<UInt8>) -> Result<String, JIDError> {
        if isASCIIWhitespace(input.first!) || isASCIIWhitespace(input.last!) {
            return .failure(JIDError(.surroundingWhitespace(.domainpart)))
        }
        let bytes = input.last == UInt8(ascii: ".") ? UnsafeBufferPointer(rebasing: input.dropLast()) : input
        guard !bytes.isEmpty else { return .failure(JIDError(.emptyDomainpart)) }
        guard bytes.count <= JID.maximumPartLength else {
            return .failure(JIDError(.partTooLong(.domainpart, bytes: bytes.count)))
        }
        if bytes.first == UInt8(ascii: "[") {
            let domain = asciiLowercased(bytes)
            guard bytes.last == UInt8(ascii: "]"), IPAddress.isIPv6(bytes[1..<(bytes.count - 1)]) else {
                return .failure(JIDError(.invalidIPv6Address(domain)))
            }
            return .success(domain)
        }
        var hasUppercase = false
        var labelStart = 0
        var allDigits = true
        var forbidden: UInt8?
        for index in 0...bytes.count {
            if index < bytes.count, bytes[index] != UInt8(ascii: ".") {
                let byte = bytes[index]
                if isASCIIUppercase(byte) {
                    hasUppercase = true
                    allDigits = false
                } else if !isASCIIDigit(byte) {
                    allDigits = false
                    if forbidden == nil, !isLDH(byte) { forbidden = byte }
                }
                continue
            }
            let label = bytes[labelStart..<index]
            guard !label.isEmpty else { return .failure(JIDError(.emptyDomainLabel)) }
            guard label.count <= JID.maximumLabelLength else {
                return .failure(JIDError(.domainLabelTooLong(label: asciiLowercased(label), bytes: label.count)))
            }
            if let forbidden {
                return .failure(JIDError(.forbiddenCharacter(.domainpart, Unicode.Scalar(forbidden))))
            }
            if label.first == UInt8(ascii: "-") || label.last == UInt8(ascii: "-") {
                return .failure(JIDError(.hyphenAtDomainLabelEdge(label: asciiLowercased(label))))
            }
            if index < bytes.count {
                labelStart = index + 1
                allDigits = true
            }
        }
        let domain = hasUppercase ? asciiLowercased(bytes) : String(decoding: bytes, as: UTF8.self)
        // RFC 1123 §2.1: a top-level label is never all digits, so a domainpart
        // whose last label is all digits must be an IPv4 dotted quad.
        if allDigits, !IPAddress.isIPv4(bytes) {
            return .failure(JIDError(.invalidIPv4Address(domain)))
        }
        return .success(domain)
    }

    /// A host-name label (RFC 1123 §2.1): 1...63 letters, digits and hyphens,
    /// no hyphen at either end. Expects lowercase input.
    private static func checkASCIILabel(_ label: some Collection<UInt8>) throws(JIDError) {
        guard let first = label.first else { throw JIDError(.emptyDomainLabel) }
        guard label.count <= JID.maximumLabelLength else {
            throw JIDError(.domainLabelTooLong(label: String(decoding: label, as: UTF8.self), bytes: label.count))
        }
        var last = first
        for byte in label {
            guard isLDH(byte) else {
                throw JIDError(.forbiddenCharacter(.domainpart, Unicode.Scalar(byte)))
            }
            last = byte
        }
        if first == UInt8(ascii: "-") || last == UInt8(ascii: "-") {
            throw JIDError(.hyphenAtDomainLabelEdge(label: String(decoding: label, as: UTF8.self)))
        }
    }

    /// A non-ASCII label (U-label), already lowercased and NFC: letters,
    /// digits, combining marks and hyphens; no hyphen at either end, no
    /// combining mark first; its A-label `xn--…` fits in 63 bytes.
    private static func checkUnicodeLabel(_ label: Substring.UnicodeScalarView) throws(JIDError) {
        for scalar in label {
            let allowed = scalar.isASCII ? isLDH(UInt8(scalar.value)) : isLetterDigit(scalar)
            guard allowed else { throw JIDError(.forbiddenCharacter(.domainpart, scalar)) }
        }
        let string = String(label)
        if label.first == "-" || label.last == "-" {
            throw JIDError(.hyphenAtDomainLabelEdge(label: string))
        }
        switch label.first!.properties.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark:
            throw JIDError(.combiningMarkAtDomainLabelStart(label: string))
        default:
            break
        }
        let aLabelLength = 4 + Punycode.encode(label).count
        guard aLabelLength <= JID.maximumLabelLength else {
            throw JIDError(.domainLabelTooLong(label: string, bytes: aLabelLength))
        }
    }

    /// RFC 1123 §2.1: a top-level label is never all digits, so a domainpart
    /// whose last label is all digits must be an IPv4 dotted quad.
    private static func checkIPv4IfNumeric(_ domain: String, lastLabel: some Collection<UInt8>) throws(JIDError) {
        guard lastLabel.allSatisfy(isASCIIDigit) else { return }
        guard IPAddress.isIPv4(domain.utf8) else {
            throw JIDError(.invalidIPv4Address(domain))
        }
    }

    // MARK: Shared rules

    private static func checkLength(_ normalized: String, _ part: JIDError.Part) throws(JIDError) {
        let count = normalized.utf8.count
        guard count <= JID.maximumPartLength else {
            throw JIDError(.partTooLong(part, bytes: count))
        }
    }

    private static func checkSurroundingWhitespace(
        _ scalars: String.UnicodeScalarView,
        _ part: JIDError.Part
    ) throws(JIDError) {
        if let first = scalars.first, let last = scalars.last,
            first.properties.isWhitespace || last.properties.isWhitespace
        {
            throw JIDError(.surroundingWhitespace(part))
        }
    }

    /// PRECIS LetterDigits (RFC 8264 §9.1: Ll, Lu, Lo, Nd, Lm, Mn, Mc), less
    /// the categories PRECIS disallows before it: default-ignorable code
    /// points and old Hangul jamo. Unassigned code points are not letters.
    private static func isLetterDigit(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.properties.generalCategory {
        case .lowercaseLetter, .uppercaseLetter, .otherLetter, .decimalNumber, .modifierLetter,
            .nonspacingMark, .spacingMark:
            return !scalar.properties.isDefaultIgnorableCodePoint && !isOldHangulJamo(scalar)
        default:
            return false
        }
    }

    /// PRECIS FreeformClass (RFC 8264 §4.3): letters, marks, numbers,
    /// punctuation, symbols and the space; not controls, format characters,
    /// private use, surrogates, unassigned code points, line/paragraph
    /// separators, default-ignorable code points or old Hangul jamo.
    private static func isFreeform(_ scalar: Unicode.Scalar) -> Bool {
        if scalar.isASCII { return (0x20...0x7E).contains(scalar.value) }
        switch scalar.properties.generalCategory {
        case .control, .format, .surrogate, .privateUse, .unassigned,
            .lineSeparator, .paragraphSeparator:
            return false
        default:
            return !scalar.properties.isDefaultIgnorableCodePoint && !isOldHangulJamo(scalar)
        }
    }

    /// Conjoining jamo (Hangul_Syllable_Type L, V or T), RFC 5892 §2.9.
    private static func isOldHangulJamo(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x1100...0x11FF, 0xA960...0xA97F, 0xD7B0...0xD7FF: return true
        default: return false
        }
    }

    /// Width mapping of fullwidth ASCII variants U+FF01...U+FF5E to
    /// U+0021...U+007E (the part of RFC 8265 §3.3.2 step 1 that matters).
    private static func mapFullwidthASCII(_ part: Substring) -> String.UnicodeScalarView {
        var result = String.UnicodeScalarView()
        for scalar in part.unicodeScalars {
            if (0xFF01...0xFF5E).contains(scalar.value), let narrow = Unicode.Scalar(scalar.value - 0xFEE0) {
                result.append(narrow)
            } else {
                result.append(scalar)
            }
        }
        return result
    }

    /// Unicode Normalization Form C, by the standard library's normaliser.
    ///
    /// `String._nfcCodeUnits` is public but underscored (it is what the
    /// standard library uses for `String` comparison); Foundation's
    /// `precomposedStringWithCanonicalMapping` is avoided because it pulls in
    /// Foundation and, on Linux with Swift 6.3, does not compose a Hangul LV
    /// syllable with a trailing jamo (U+AC00 U+11A8 stays two code points
    /// instead of U+AC01).
    static func nfc(_ string: String) -> String {
        String(decoding: string._nfcCodeUnits, as: UTF8.self)
    }

    // MARK: ASCII helpers

    /// Calls `body` with the part's UTF-8 bytes, in place when the string is
    /// stored contiguously (native Swift strings), else from a copy.
    static func withBytes<R>(_ utf8: Substring.UTF8View, _ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
        if let result = utf8.withContiguousStorageIfAvailable(body) { return result }
        return Array(utf8).withUnsafeBufferPointer(body)
    }

    /// The byte offsets of the first `/` and of the first `@` before it
    /// (RFC 7622 §3.1: a JID is split at the first `/`, then the first `@`).
    static func delimiterOffsets(_ bytes: UnsafeBufferPointer<UInt8>) -> (slash: Int?, at: Int?) {
        var at: Int?
        for index in bytes.indices {
            switch bytes[index] {
            case UInt8(ascii: "/"): return (index, at)
            case UInt8(ascii: "@") where at == nil: at = index
            default: continue
            }
        }
        return (nil, at)
    }

    private static func isASCII(_ part: Substring) -> Bool {
        withBytes(part.utf8) { bytes in bytes.allSatisfy { $0 < 0x80 } }
    }

    private static func isASCIIWhitespace(_ byte: UInt8) -> Bool {
        byte == 0x20 || (0x09...0x0D).contains(byte)
    }

    private static func isASCIIUppercase(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
    }

    private static func isASCIIDigit(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
    }

    /// Letter, digit or hyphen; lowercase letters only.
    private static func isLDH(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || isASCIIDigit(byte) || byte == UInt8(ascii: "-")
    }

    private static func asciiLowercased(_ utf8: some Collection<UInt8>) -> String {
        String(unsafeUninitializedCapacity: utf8.count) { buffer in
            var index = 0
            for byte in utf8 {
                buffer[index] = isASCIIUppercase(byte) ? byte | 0x20 : byte
                index += 1
            }
            return index
        }
    }
}
