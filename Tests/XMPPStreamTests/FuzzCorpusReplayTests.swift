import Foundation
import FuzzOracles
import Testing

/// Every committed input of every fuzz target (`Tests/FuzzCorpus/<target>/`: the seeds and
/// the reproducers of past findings), run through that target's properties
/// (`Fuzz/Sources/FuzzOracles`), so that `swift test` catches a regression without
/// libFuzzer. A new finding's minimised reproducer is added to its target's directory.
@Suite("Fuzz corpus replay")
struct FuzzCorpusReplayTests {
    static let corpus = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("FuzzCorpus").path

    /// The files of one target's corpus, by name.
    static func inputs(_ target: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "\(corpus)/\(target)")) ?? []).sorted()
    }

    static let oracles: [String: @Sendable (UnsafeBufferPointer<UInt8>) throws -> Void] = [
        "FuzzXMLStream": checkXMLStream,
        "FuzzNegotiation": checkNegotiation,
        "FuzzJID": JIDOracle.check,
        "FuzzSASLClient": SASLClientOracle.check,
    ]

    @Test(arguments: ["FuzzXMLStream", "FuzzNegotiation", "FuzzJID", "FuzzSASLClient"])
    func everyCommittedInputKeepsItsProperties(target: String) throws {
        let oracle = try #require(Self.oracles[target])
        let inputs = Self.inputs(target)
        // A missing or emptied corpus would make this test pass without checking anything.
        #expect(inputs.count >= 10, "\(target): only \(inputs.count) corpus files in \(Self.corpus)/\(target)")
        for name in inputs {
            let data = try Data(contentsOf: URL(fileURLWithPath: "\(Self.corpus)/\(target)/\(name)"))
            let bytes = [UInt8](data)
            do {
                try bytes.withUnsafeBufferPointer { try oracle($0) }
            } catch {
                Issue.record("\(target)/\(name): \(error)")
            }
        }
    }
}
