import Foundation
import HostFuzzOracles
import Testing

/// Every committed input of the host's fuzz targets (`Tests/FuzzCorpus/FuzzHostConfiguration/`
/// and `FuzzAdminLine/`: seeds and past findings' reproducers) run through their properties
/// (`Fuzz/Sources/HostFuzzOracles`), so that `swift test` catches a regression without
/// libFuzzer (the other targets are replayed by `XMPPStreamTests.FuzzCorpusReplayTests`).
@Suite("Host fuzz corpus replay", .timeLimit(.minutes(1)))
struct HostFuzzCorpusReplayTests {
    static let corpus = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("FuzzCorpus").path

    static let oracles: [String: @Sendable (UnsafeBufferPointer<UInt8>) throws -> Void] = [
        "FuzzHostConfiguration": HostConfigurationOracle.check,
        "FuzzAdminLine": AdminLineOracle.check,
    ]

    @Test(arguments: ["FuzzHostConfiguration", "FuzzAdminLine"])
    func everyCommittedInputKeepsItsProperties(target: String) throws {
        let oracle = try #require(Self.oracles[target])
        let inputs = ((try? FileManager.default.contentsOfDirectory(atPath: "\(Self.corpus)/\(target)")) ?? []).sorted()
        // A missing or emptied corpus would make this test pass without checking anything.
        #expect(inputs.count >= 10, "\(target): only \(inputs.count) corpus files in \(Self.corpus)/\(target)")
        for name in inputs {
            let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: "\(Self.corpus)/\(target)/\(name)")))
            do {
                try bytes.withUnsafeBufferPointer { try oracle($0) }
            } catch {
                Issue.record("\(target)/\(name): \(error)")
            }
        }
    }
}
