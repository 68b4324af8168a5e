import XMPPCore
import XMPPStream

/// The result of parsing a whole input.
struct ParseResult {
    var events: [XMLStreamEvent] = []
    var error: StreamError?
}

/// Feeds `chunks` one after the other, draining events after each.
func parse(_ chunks: [[UInt8]], limits: XMLStreamLimits = .default) -> ParseResult {
    let parser = XMLStreamParser(limits: limits)
    var result = ParseResult()
    do {
        for chunk in chunks {
            parser.feed(chunk)
            while let event = try parser.nextEvent() {
                result.events.append(event)
            }
        }
    } catch {
        result.error = error
    }
    return result
}

func parse(_ text: String, limits: XMLStreamLimits = .default) -> ParseResult {
    parse([Array(text.utf8)], limits: limits)
}

/// Splits `bytes` at random points chosen by a seeded generator.
func randomSplit(_ bytes: [UInt8], seed: UInt64, maxChunk: Int = 40) -> [[UInt8]] {
    var generator = SplitMix64(seed: seed)
    var chunks: [[UInt8]] = []
    var index = 0
    while index < bytes.count {
        let length = Int.random(in: 1...maxChunk, using: &generator)
        let end = min(bytes.count, index + length)
        chunks.append(Array(bytes[index..<end]))
        index = end
    }
    return chunks
}

/// A small deterministic generator (SplitMix64), so failures can be replayed by seed.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { self.state = seed }
    mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var z = self.state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

let streamNS = Namespace.stream

/// `<?xml…?><stream:stream xmlns='<namespace>' …>`.
func header(_ namespace: String = Namespace.client, extra: String = "") -> String {
    "<?xml version='1.0'?><stream:stream xmlns='\(namespace)' xmlns:stream='\(Namespace.stream)' to='example.com' version='1.0'\(extra)>"
}
