// Syntax checks for IP-address domainparts (RFC 7622 §3.2, RFC 3986 §3.2.2).

enum IPAddress {
    /// RFC 3986 `IPv4address`: four `dec-octet`s (0...255, no leading zeros)
    /// separated by dots.
    static func isIPv4(_ bytes: some Collection<UInt8>) -> Bool {
        var octets = 0
        var value = 0
        var digits = 0
        var leadingZero = false
        for byte in bytes {
            if byte == UInt8(ascii: ".") {
                guard digits > 0, octets < 3 else { return false }
                octets += 1
                value = 0
                digits = 0
                continue
            }
            guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { return false }
            if digits == 0 {
                leadingZero = byte == UInt8(ascii: "0")
            } else if leadingZero {
                return false
            }
            digits += 1
            value = value * 10 + Int(byte - UInt8(ascii: "0"))
            guard digits <= 3, value <= 255 else { return false }
        }
        return octets == 3 && digits > 0
    }

    /// RFC 3986 `IPv6address` (the part between the brackets): eight groups
    /// of 1...4 hex digits separated by colons, or fewer with exactly one
    /// `::` standing for at least one zero group; the last two groups may be
    /// an IPv4 address. Zone identifiers (`%eth0`) are not accepted.
    static func isIPv6(_ input: some Collection<UInt8>) -> Bool {
        let bytes = Array(input)
        let count = bytes.count
        guard count >= 2 else { return false }
        var groups = 0
        var compressed = false
        var index = 0
        if bytes[0] == UInt8(ascii: ":") {
            guard bytes[1] == UInt8(ascii: ":") else { return false }
            compressed = true
            index = 2
        }
        while index < count {
            let start = index
            while index < count, isHexDigit(bytes[index]), index - start < 5 {
                index += 1
            }
            if index < count, bytes[index] == UInt8(ascii: ".") {
                // Embedded IPv4 address: must be the last two groups.
                guard isIPv4(bytes[start...]) else { return false }
                groups += 2
                index = count
                break
            }
            let length = index - start
            guard (1...4).contains(length) else { return false }
            groups += 1
            guard index < count else { break }
            guard bytes[index] == UInt8(ascii: ":") else { return false }
            index += 1
            guard index < count else { return false }  // single trailing colon
            if bytes[index] == UInt8(ascii: ":") {
                guard !compressed else { return false }
                compressed = true
                index += 1
            }
        }
        return compressed ? groups <= 7 : groups == 8
    }

    private static func isHexDigit(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "a")...UInt8(ascii: "f"),
            UInt8(ascii: "A")...UInt8(ascii: "F"):
            return true
        default:
            return false
        }
    }
}
