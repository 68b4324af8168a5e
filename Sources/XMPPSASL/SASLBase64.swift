/// RFC 4648 base64 (standard alphabet, padded), as RFC 6120 §6.4.2 requires for the
/// character data of `<auth/>`, `<challenge/>`, `<response/>` and `<success/>`.
///
/// Pure Swift, so decoding is strict and independent of Cyrus: characters outside the
/// alphabet (including whitespace inside the data), a wrong length, misplaced padding or
/// non-zero padding bits are rejected.
enum SASLBase64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    private static let decodeTable: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (index, character) in alphabet.enumerated() {
            table[Int(character)] = UInt8(index)
        }
        return table
    }()

    /// Encodes bytes; the empty input gives the empty string.
    static func encode(_ bytes: some Collection<UInt8>) -> String {
        let input = Array(bytes)
        var output: [UInt8] = []
        output.reserveCapacity((input.count + 2) / 3 * 4)
        var index = 0
        while index + 3 <= input.count {
            let chunk = UInt32(input[index]) << 16 | UInt32(input[index + 1]) << 8 | UInt32(input[index + 2])
            output.append(alphabet[Int(chunk >> 18 & 0x3F)])
            output.append(alphabet[Int(chunk >> 12 & 0x3F)])
            output.append(alphabet[Int(chunk >> 6 & 0x3F)])
            output.append(alphabet[Int(chunk & 0x3F)])
            index += 3
        }
        let remaining = input.count - index
        if remaining == 1 {
            let chunk = UInt32(input[index]) << 16
            output.append(alphabet[Int(chunk >> 18 & 0x3F)])
            output.append(alphabet[Int(chunk >> 12 & 0x3F)])
            output.append(UInt8(ascii: "="))
            output.append(UInt8(ascii: "="))
        } else if remaining == 2 {
            let chunk = UInt32(input[index]) << 16 | UInt32(input[index + 1]) << 8
            output.append(alphabet[Int(chunk >> 18 & 0x3F)])
            output.append(alphabet[Int(chunk >> 12 & 0x3F)])
            output.append(alphabet[Int(chunk >> 6 & 0x3F)])
            output.append(UInt8(ascii: "="))
        }
        return String(decoding: output, as: UTF8.self)
    }

    /// Decodes strict padded base64; `nil` when the input is malformed.
    static func decode(_ string: String) -> [UInt8]? {
        let input = Array(string.utf8)
        guard input.count % 4 == 0 else { return nil }
        var output: [UInt8] = []
        output.reserveCapacity(input.count / 4 * 3)
        var index = 0
        while index < input.count {
            let isLast = index + 4 == input.count
            var values: [UInt32] = []
            var padding = 0
            for offset in 0..<4 {
                let character = input[index + offset]
                if character == UInt8(ascii: "=") {
                    // Padding only in the last quantum, only in its last two places.
                    guard isLast, offset >= 2 else { return nil }
                    padding += 1
                    values.append(0)
                } else {
                    // No data after padding.
                    guard padding == 0 else { return nil }
                    let value = self.decodeTable[Int(character)]
                    guard value != 0xFF else { return nil }
                    values.append(UInt32(value))
                }
            }
            let chunk = values[0] << 18 | values[1] << 12 | values[2] << 6 | values[3]
            // Canonical encoding: the bits dropped by padding must be zero.
            if padding == 1, chunk & 0xFF != 0 { return nil }
            if padding == 2, chunk & 0xFFFF != 0 { return nil }
            output.append(UInt8(chunk >> 16 & 0xFF))
            if padding < 2 { output.append(UInt8(chunk >> 8 & 0xFF)) }
            if padding < 1 { output.append(UInt8(chunk & 0xFF)) }
            index += 4
        }
        return output
    }

    /// Decodes the character data of an XMPP SASL element.
    ///
    /// - Returns: `nil` for an element without character data (no data at all), `[]` for `=`
    ///   (explicitly empty, RFC 6120 §6.4.2), otherwise the decoded bytes.
    /// - Throws: ``SASLError/Kind/malformedBase64`` when the text is not valid base64.
    static func decodeElementText(_ text: String) throws(SASLError) -> [UInt8]? {
        let trimmed = text.trimmingXMLWhitespace()
        if trimmed.isEmpty { return nil }
        if trimmed == "=" { return [] }
        guard let bytes = self.decode(trimmed) else {
            throw SASLError(.malformedBase64, detail: "character data is not valid base64 (\(trimmed.utf8.count) characters)")
        }
        return bytes
    }
}

extension String {
    /// The string without leading and trailing XML whitespace (space, tab, CR, LF).
    func trimmingXMLWhitespace() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" || $0 == "\r\n" }
        guard let first = self.firstIndex(where: { !isSpace($0) }),
            let last = self.lastIndex(where: { !isSpace($0) })
        else { return "" }
        return String(self[first...last])
    }
}
