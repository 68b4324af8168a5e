/// The XEP-0114 handshake digest: lowercase hex SHA-1 of the stream id followed by the
/// shared secret, both as UTF-8 (XEP-0114 §3).
///
/// ```swift
/// ComponentHandshake.digest(streamID: "3BF96D32", secret: "secret")
/// ```
public enum ComponentHandshake {
    /// Computes the handshake value a component sends in `<handshake/>`.
    /// - Parameters:
    ///   - streamID: The `id` of the server's stream header.
    ///   - secret: The shared secret configured for the component's hostname.
    /// - Returns: 40 lowercase hexadecimal characters.
    public static func digest(streamID: String, secret: String) -> String {
        var sha = SHA1()
        sha.update(Array(streamID.utf8))
        sha.update(Array(secret.utf8))
        let hash = sha.finalize()
        let hexDigits = Array("0123456789abcdef".utf8)
        var hex = [UInt8]()
        hex.reserveCapacity(40)
        for byte in hash {
            hex.append(hexDigits[Int(byte >> 4)])
            hex.append(hexDigits[Int(byte & 0x0F)])
        }
        return String(decoding: hex, as: UTF8.self)
    }

    /// Compares a received handshake value with the expected one, ignoring ASCII case
    /// (as Prosody does) and in time independent of where they differ.
    /// - Parameters:
    ///   - received: The text of the peer's `<handshake/>`.
    ///   - expected: The value from ``digest(streamID:secret:)``.
    public static func matches(_ received: String, expected: String) -> Bool {
        let a = Array(received.lowercased().utf8)
        let b = Array(expected.utf8)
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for index in 0..<a.count {
            difference |= a[index] ^ b[index]
        }
        return difference == 0
    }
}

/// SHA-1 (FIPS 180-4), for the XEP-0114 handshake only. Not for security: the legacy
/// protocol fixes the algorithm.
struct SHA1 {
    private var state: (UInt32, UInt32, UInt32, UInt32, UInt32) =
        (0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476, 0xC3D2_E1F0)
    private var pending: [UInt8] = []
    private var length: UInt64 = 0

    mutating func update(_ bytes: [UInt8]) {
        self.length &+= UInt64(bytes.count)
        self.pending.append(contentsOf: bytes)
        var offset = 0
        while self.pending.count - offset >= 64 {
            self.process(self.pending[offset..<offset + 64])
            offset += 64
        }
        self.pending.removeFirst(offset)
    }

    mutating func finalize() -> [UInt8] {
        let bitLength = self.length &* 8
        var padding: [UInt8] = [0x80]
        let afterMarker = (self.pending.count + 1) % 64
        let zeros = afterMarker <= 56 ? 56 - afterMarker : 120 - afterMarker
        padding.append(contentsOf: repeatElement(0, count: zeros))
        for shift in stride(from: 56, through: 0, by: -8) {
            padding.append(UInt8(truncatingIfNeeded: bitLength >> UInt64(shift)))
        }
        let savedLength = self.length
        self.update(padding)
        self.length = savedLength
        var digest: [UInt8] = []
        for word in [self.state.0, self.state.1, self.state.2, self.state.3, self.state.4] {
            digest.append(UInt8(truncatingIfNeeded: word >> 24))
            digest.append(UInt8(truncatingIfNeeded: word >> 16))
            digest.append(UInt8(truncatingIfNeeded: word >> 8))
            digest.append(UInt8(truncatingIfNeeded: word))
        }
        return digest
    }

    private mutating func process(_ block: ArraySlice<UInt8>) {
        var w = [UInt32](repeating: 0, count: 80)
        let base = block.startIndex
        for i in 0..<16 {
            w[i] =
                UInt32(block[base + 4 * i]) << 24 | UInt32(block[base + 4 * i + 1]) << 16
                | UInt32(block[base + 4 * i + 2]) << 8 | UInt32(block[base + 4 * i + 3])
        }
        for i in 16..<80 {
            let x = w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]
            w[i] = (x << 1) | (x >> 31)
        }
        var (a, b, c, d, e) = self.state
        for i in 0..<80 {
            let f: UInt32
            let k: UInt32
            switch i {
            case 0..<20:
                f = (b & c) | (~b & d)
                k = 0x5A82_7999
            case 20..<40:
                f = b ^ c ^ d
                k = 0x6ED9_EBA1
            case 40..<60:
                f = (b & c) | (b & d) | (c & d)
                k = 0x8F1B_BCDC
            default:
                f = b ^ c ^ d
                k = 0xCA62_C1D6
            }
            let temp = ((a << 5) | (a >> 27)) &+ f &+ e &+ k &+ w[i]
            e = d
            d = c
            c = (b << 30) | (b >> 2)
            b = a
            a = temp
        }
        self.state = (
            self.state.0 &+ a, self.state.1 &+ b, self.state.2 &+ c, self.state.3 &+ d, self.state.4 &+ e
        )
    }
}
