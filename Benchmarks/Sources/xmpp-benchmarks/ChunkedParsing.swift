import XMPPCore
import XMPPStream

/// `xmpp-benchmarks chunked [--smoke] [--chunk BYTES] [--runs N] [--no-token-limit]`: parse time against input
/// size when every read is small (issue #13 item 3).
///
/// Expat rescans an unfinished token from its start on every read (reparse deferral is
/// off, so that small reads deliver their events); an unbounded token fed in 100-byte
/// segments therefore costs time quadratic in its size. `XMLStreamLimits.maxTokenSize`
/// bounds that work. Three shapes, each at growing sizes:
///
/// - `text`: one stanza whose body is N bytes of character data (not a token: linear);
/// - `attributes`: one stanza whose children each carry a 1 KiB attribute (many small
///   tokens: linear);
/// - `one attribute`: one start tag with an N-byte attribute value, the attack: refused
///   once the token passes the limit, so the work stops growing there.
///
/// It prints nanoseconds per byte for each size; a linear parser keeps that figure flat.
/// `--no-token-limit` lifts `maxTokenSize` to show what the bound prevents (the huge
/// attribute's ns/byte then grows with its size).
/// The figures are for reading, never judged (CI runs `--smoke` only to prove it runs).
struct ChunkedParsing {
    let chunkSize: Int
    let runs: Int
    let sizes: [Int]
    var tokenLimit = true

    static func parse(_ arguments: [String]) -> ChunkedParsing? {
        var arguments = arguments
        var chunkSize = 100
        var runs = 3
        var sizes = [64 << 10, 128 << 10, 256 << 10, 512 << 10, 1 << 20]
        var tokenLimit = true
        while let argument = arguments.first {
            arguments.removeFirst()
            switch argument {
            case "--smoke":
                runs = 1
                sizes = [16 << 10, 64 << 10, 128 << 10]
            case "--chunk": chunkSize = Int(arguments.removeFirst()) ?? chunkSize
            case "--runs": runs = Int(arguments.removeFirst()) ?? runs
            case "--no-token-limit": tokenLimit = false
            default:
                print("unknown argument \(argument)")
                return nil
            }
        }
        return ChunkedParsing(chunkSize: chunkSize, runs: runs, sizes: sizes, tokenLimit: tokenLimit)
    }

    enum Shape: String, CaseIterable {
        case text
        case attributes
        case oneAttribute = "one attribute"

        func stanza(bytes: Int) -> String {
            switch self {
            case .text:
                return "<message to='a@example.com'><body>" + String(repeating: "x", count: bytes) + "</body></message>"
            case .attributes:
                let child = "<item v='" + String(repeating: "y", count: 1024) + "'/>"
                return "<message to='a@example.com'>" + String(repeating: child, count: max(1, bytes / child.utf8.count))
                    + "</message>"
            case .oneAttribute:
                return "<message to='" + String(repeating: "z", count: bytes) + "'/>"
            }
        }
    }

    static let header =
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
        + "xmlns:stream='http://etherx.jabber.org/streams' from='example.com' id='chunked-1' version='1.0'>"

    func run() {
        log(
            "chunked: \(self.chunkSize)-byte reads, best of \(self.runs) runs, token limit "
                + "\(self.tokenLimit ? "\(XMLStreamLimits.default.maxTokenSize) bytes" : "off") (release build expected)")
        print("shape          | input bytes | parsed bytes | time (ms) | ns/byte | outcome")
        for shape in Shape.allCases {
            for size in self.sizes {
                let input = Array((Self.header + shape.stanza(bytes: size)).utf8)
                var best = Duration.seconds(1_000_000)
                var consumed = 0
                var outcome = ""
                for _ in 0..<self.runs {
                    let clock = ContinuousClock()
                    let elapsed = clock.measure { (consumed, outcome) = self.feed(input) }
                    best = min(best, elapsed)
                }
                let nanoseconds = best.seconds * 1e9
                let perByte = nanoseconds / Double(max(consumed, 1))
                let name = shape.rawValue.padding(14)
                print(
                    "\(name) | \(String(input.count).padding(11)) | \(String(consumed).padding(12)) | "
                        + "\(String(format3: nanoseconds / 1e6).padding(9)) | \(String(format1: perByte).padding(7)) | \(outcome)"
                )
            }
        }
    }

    /// Feeds `input` in small reads until it is parsed or refused; returns the bytes fed.
    private func feed(_ input: [UInt8]) -> (Int, String) {
        var limits = XMLStreamLimits()
        limits.maxStanzaSize = 2 << 20
        if !self.tokenLimit { limits.maxTokenSize = .max }
        let parser = XMLStreamParser(limits: limits)
        var offset = 0
        var elements = 0
        while offset < input.count {
            let end = min(offset + self.chunkSize, input.count)
            parser.feed(input[offset..<end])
            offset = end
            do {
                while let event = try parser.nextEvent() {
                    if case .element = event { elements += 1 }
                }
            } catch {
                return (offset, "refused: \(error.text ?? "\(error.condition)")")
            }
        }
        return (offset, "parsed \(elements) stanza")
    }
}

extension String {
    fileprivate func padding(_ width: Int) -> String {
        self.count >= width ? self : self + String(repeating: " ", count: width - self.count)
    }
}
