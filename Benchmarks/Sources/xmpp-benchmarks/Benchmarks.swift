import Foundation
import XMPPCore
import XMPPStream

/// `xmpp-benchmarks decode [--smoke] [--size MB] [--chunk BYTES] [--runs N]`
/// `xmpp-benchmarks chunked [--smoke] [--chunk BYTES] [--runs N]`
/// `xmpp-benchmarks all [--smoke] [--host PATH] [--peers DIR] [--json PATH] [--stanzas N] [--only a,b]`
@main
enum Benchmarks {
    static let usage = """
        usage: xmpp-benchmarks decode [--smoke] [--size MB] [--chunk BYTES] [--runs N]
               xmpp-benchmarks chunked [--smoke] [--chunk BYTES] [--runs N] [--no-token-limit]
               xmpp-benchmarks all [--smoke] [--host PATH] [--peers DIR] [--json PATH] [--stanzas N] [--only a,b]
                                   [--placement pinned|unpinned|both]   (default both; unpinned with --smoke)
        """

    static func main() async {
        var arguments = Array(CommandLine.arguments.dropFirst())
        switch arguments.first {
        case "decode":
            arguments.removeFirst()
            decode(arguments)
        case "chunked":
            arguments.removeFirst()
            ChunkedParsing.parse(arguments)?.run()
        case "all":
            arguments.removeFirst()
            await all(arguments)
        default:
            print(usage)
        }
    }

    static func all(_ arguments: [String]) async {
        var arguments = arguments
        var options = Suite.Options()
        var placements: [Placement]?
        while let argument = arguments.first {
            arguments.removeFirst()
            switch argument {
            case "--smoke":
                options.smoke = true
                options.stanzas = 2_000
                options.window = 200
                options.bindCount = 100
                options.pluginCount = 10
            case "--host": options.hostBinary = arguments.removeFirst()
            case "--peers": options.peers = arguments.removeFirst()
            case "--json": options.json = arguments.removeFirst()
            case "--logs": options.logs = arguments.removeFirst()
            case "--stanzas": options.stanzas = Int(arguments.removeFirst()) ?? options.stanzas
            case "--window": options.window = Int(arguments.removeFirst()) ?? options.window
            case "--only": options.only = Set(arguments.removeFirst().split(separator: ",").map(String.init))
            case "--placement":
                let value = arguments.first ?? ""
                if !arguments.isEmpty { arguments.removeFirst() }
                guard let parsed = Placement.parse(value) else {
                    print("--placement takes pinned, unpinned or both, not '\(value)'\n\(usage)")
                    exit(2)
                }
                placements = parsed
            default:
                print("unknown argument \(argument)\n\(usage)")
                exit(2)
            }
        }
        // A smoke run proves that everything runs: one placement is enough (and needs no second core).
        options.placements = placements ?? (options.smoke ? [.unpinned] : [.pinned, .unpinned])
        do {
            let report = try await Suite(options: options).run()
            print(Table.render(report))
            try Table.writeJSON(report, to: options.json)
            print("JSON: \(options.json)")
            // Figures never fail the run; a selected target that did not run always does
            // (component-host never bound, a peer crashed, an unknown --only name).
            if !report.notRun.isEmpty {
                for (target, reason) in report.notRun.sorted(by: { $0.key < $1.key }) {
                    print("benchmark suite failed: \(target) did not run: \(reason)")
                }
                exit(1)
            }
        } catch {
            ChildProcess.killAll()
            print("benchmark suite failed: \(error)")
            exit(1)
        }
    }

    static func decode(_ arguments: [String]) {
        var arguments = arguments
        var megabytes = 50
        var chunkSize = 4096
        var runs = 3
        while let argument = arguments.first {
            arguments.removeFirst()
            switch argument {
            case "--smoke":
                megabytes = 2
                runs = 1
            case "--size": megabytes = Int(arguments.removeFirst()) ?? megabytes
            case "--chunk": chunkSize = Int(arguments.removeFirst()) ?? chunkSize
            case "--runs": runs = Int(arguments.removeFirst()) ?? runs
            default:
                print("unknown argument \(argument)")
                return
            }
        }
        Decode(megabytes: megabytes, chunkSize: chunkSize, runs: runs).run()
    }
}

struct Decode {
    let megabytes: Int
    let chunkSize: Int
    let runs: Int

    /// A synthetic component stream: one header, then message stanzas with 150-byte bodies.
    static func makeStream(bytes target: Int) -> (bytes: [UInt8], stanzas: Int) {
        var text =
            "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
            + "xmlns:stream='http://etherx.jabber.org/streams' from='component.example.com' id='bench-1'>"
        let words = ["hello", "world", "quick", "brown", "fox", "jumps", "über", "lazy", "dog", "&amp;", "café", "😀"]
        var bytes = Array(text.utf8)
        bytes.reserveCapacity(target + 1024)
        var stanzas = 0
        while bytes.count < target {
            var body = ""
            var index = stanzas
            while body.utf8.count < 150 {
                body += words[index % words.count] + " "
                index = (index * 7 + 3) % 1009
            }
            text =
                "<message from='user\(stanzas % 977)@example.com/res-\(stanzas % 13)' to='bot@component.example.com' "
                + "type='chat' id='msg-\(stanzas)' xml:lang='en'><body>\(body)</body>"
                + "<active xmlns='http://jabber.org/protocol/chatstates'/></message>\n"
            bytes += text.utf8
            stanzas += 1
        }
        return (bytes, stanzas)
    }

    func run() {
        let figures = self.measure()
        let (megabytes, bareSeconds, streamSeconds) = (figures.megabytes, figures.bareSeconds, figures.streamSeconds)
        let stanzas = figures.stanzas
        func line(_ name: String, _ seconds: Double) -> String {
            "\(name): \(String(format1: megabytes / seconds)) MiB/s, \(Int(Double(stanzas) / seconds)) stanzas/s (\(String(format3: seconds)) s)"
        }
        print(line("bare expat (count only)", bareSeconds))
        print(line("XMLStreamParser (Element trees)", streamSeconds))
        print("ratio XMLStreamParser / bare expat: \(String(format1: 100 * bareSeconds / streamSeconds))%")
    }

    func measure() -> (megabytes: Double, bareSeconds: Double, streamSeconds: Double, stanzas: Int) {
        let (bytes, stanzas) = Self.makeStream(bytes: self.megabytes << 20)
        let megabytes = Double(bytes.count) / 1_048_576
        log(
            "decode: \(String(format1: megabytes)) MiB, \(stanzas) message stanzas, \(self.chunkSize)-byte chunks, best of \(self.runs) runs (release build expected)"
        )
        var bestBare = Duration.seconds(1_000_000)
        var bestStream = Duration.seconds(1_000_000)
        for _ in 0..<self.runs {
            let clock = ContinuousClock()
            var counted = 0
            let bare = clock.measure { counted = BareExpat().run(bytes, chunkSize: self.chunkSize) }
            precondition(counted == stanzas, "bare expat counted \(counted) of \(stanzas)")
            bestBare = min(bestBare, bare)
            let parsed = clock.measure { counted = Self.parseWithStreamParser(bytes, chunkSize: self.chunkSize) }
            precondition(counted == stanzas, "XMLStreamParser produced \(counted) of \(stanzas)")
            bestStream = min(bestStream, parsed)
        }
        return (megabytes, bestBare.seconds, bestStream.seconds, stanzas)
    }

    static func parseWithStreamParser(_ bytes: [UInt8], chunkSize: Int) -> Int {
        let parser = XMLStreamParser()
        var elements = 0
        var bodyBytes = 0
        bytes.withUnsafeBytes { all in
            var offset = 0
            while offset < all.count {
                let count = min(chunkSize, all.count - offset)
                parser.feed(UnsafeRawBufferPointer(rebasing: all[offset..<offset + count]))
                offset += count
                do {
                    while let event = try parser.nextEvent() {
                        if case .element(let element) = event {
                            elements += 1
                            bodyBytes &+= element.children.count
                        }
                    }
                } catch {
                    fatalError("XMLStreamParser: \(error)")
                }
            }
        }
        precondition(bodyBytes > 0)
        return elements
    }
}

extension Duration {
    var seconds: Double {
        let (seconds, attoseconds) = self.components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}

extension String {
    /// Fixed-point formatting without Foundation.
    init(format1 value: Double) { self = Self.fixed(value, digits: 1) }
    init(format3 value: Double) { self = Self.fixed(value, digits: 3) }

    private static func fixed(_ value: Double, digits: Int) -> String {
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let scaled = Int((value * scale).rounded())
        let whole = scaled / Int(scale)
        var fraction = String(abs(scaled) % Int(scale))
        while fraction.count < digits { fraction = "0" + fraction }
        return "\(whole).\(fraction)"
    }
}
