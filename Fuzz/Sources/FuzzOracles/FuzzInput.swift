// The input decoding shared by the fuzz targets and the corpus replay tests.

/// Reads a fuzzer input as a few control bytes followed by a payload.
///
/// Control bytes past the end read as 0, so every input is usable and the
/// fuzzer can grow or shrink the control prefix freely.
public struct FuzzInput {
    /// The whole input.
    public let bytes: UnsafeBufferPointer<UInt8>
    private var position = 0

    /// Reads `bytes` from the start.
    public init(_ bytes: UnsafeBufferPointer<UInt8>) {
        self.bytes = bytes
    }

    /// The next control byte (0 once the input is exhausted).
    public mutating func byte() -> UInt8 {
        guard self.position < self.bytes.count else { return 0 }
        defer { self.position += 1 }
        return self.bytes[self.position]
    }

    /// Everything after the control bytes read so far.
    public var rest: [UInt8] {
        self.position < self.bytes.count ? Array(self.bytes[self.position...]) : []
    }
}

/// A tiny deterministic generator (SplitMix64) for chunk sizes.
public struct SplitMix64 {
    private var state: UInt64

    /// A generator that starts from `seed`.
    public init(seed: UInt64) {
        self.state = seed
    }

    /// The next pseudo-random number.
    public mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var z = self.state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Splits `bytes` into chunks following a pattern chosen by `selector`: all at once,
/// one byte at a time, after every `>` (one tag per read, as servers usually write),
/// fixed sizes, or pseudo-random sizes.
public func chunks(of bytes: [UInt8], selector: UInt8, seed: UInt8) -> [ArraySlice<UInt8>] {
    if selector == 2 {
        var result: [ArraySlice<UInt8>] = []
        var start = 0
        for index in bytes.indices where bytes[index] == UInt8(ascii: ">") {
            result.append(bytes[start...index])
            start = index + 1
        }
        if start < bytes.count {
            result.append(bytes[start...])
        }
        return result
    }
    var sizes: () -> Int
    switch selector & 0x3 {
    case 0:
        sizes = { Int.max }  // all at once
    case 1:
        sizes = { 1 }  // byte by byte
    case 2:
        let fixed = Int(selector >> 2) + 1  // 2...64 (selector 2 splits after every `>`)
        sizes = { fixed }
    default:
        var generator = SplitMix64(seed: UInt64(seed) | UInt64(selector) << 8)
        let maximum = Int(selector >> 2) + 1
        sizes = { Int(generator.next() % UInt64(maximum)) + 1 }
    }
    var result: [ArraySlice<UInt8>] = []
    var index = 0
    while index < bytes.count {
        let size = sizes()
        let end = size >= bytes.count - index ? bytes.count : index + size
        result.append(bytes[index..<end])
        index = end
    }
    return result
}

/// A broken property: libFuzzer's targets crash with it (a finding), the corpus replay
/// tests (`Tests/XMPPStreamTests/FuzzCorpusReplayTests.swift`) record it as a failure.
public struct FuzzFinding: Error, CustomStringConvertible {
    /// What is broken, with the input that broke it.
    public let description: String

    /// A finding described by `description`.
    public init(_ description: String) {
        self.description = description
    }
}
