import Foundation

/// An `openssl s_server` or `openssl s_client` subprocess with captured output and a writable stdin.
///
/// Always call ``terminate()`` (in a `defer`): it kills the process by PID and waits for it, bounded.
final class OpenSSLPeer: @unchecked Sendable {
    // @unchecked: `output` is guarded by `lock`; the other properties are set in init.
    struct Timeout: Error, CustomStringConvertible {
        var waitingFor: String
        var output: String
        var description: String { "timed out waiting for \(self.waitingFor); openssl output so far:\n\(self.output)" }
    }

    private let process = Process()
    private let stdin = Pipe()
    private let stdout = Pipe()
    private let lock = NSLock()
    private var output = Data()

    /// The process ID, for diagnostics.
    var pid: Int32 { self.process.processIdentifier }

    private init(arguments: [String]) throws {
        self.process.executableURL = URL(fileURLWithPath: OpenSSLCLI.executable)
        self.process.arguments = arguments
        self.process.standardInput = self.stdin
        self.process.standardOutput = self.stdout
        self.process.standardError = self.stdout
        self.stdout.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let data = handle.availableData
            if data.isEmpty {
                handle.readabilityHandler = nil
            } else if let self {
                self.lock.withLock { self.output.append(data) }
            }
        }
        try self.process.run()
    }

    /// Starts `openssl s_server` on a free loopback port and returns once it accepts connections.
    static func server(_ extraArguments: [String]) async throws -> (peer: OpenSSLPeer, port: Int) {
        let peer = try OpenSSLPeer(arguments: ["s_server", "-accept", "127.0.0.1:0", "-naccept", "1"] + extraArguments)
        do {
            let line = try await peer.waitForMatch(#"ACCEPT 127\.0\.0\.1:([0-9]+)"#)
            guard let port = Int(line) else { throw Timeout(waitingFor: "a port number", output: peer.text) }
            return (peer, port)
        } catch {
            peer.terminate()
            throw error
        }
    }

    /// Starts `openssl s_client` connecting to a loopback port.
    static func client(port: Int, _ extraArguments: [String]) throws -> OpenSSLPeer {
        try OpenSSLPeer(arguments: ["s_client", "-connect", "127.0.0.1:\(port)"] + extraArguments)
    }

    /// Everything the process printed so far (stdout and stderr).
    var text: String {
        self.lock.withLock { String(decoding: self.output, as: UTF8.self) }
    }

    /// Waits until the output contains `needle`.
    func waitFor(_ needle: String, timeout: Duration = .seconds(10)) async throws {
        let deadline = ContinuousClock.now + timeout
        while !self.text.contains(needle) {
            if ContinuousClock.now > deadline { throw Timeout(waitingFor: needle, output: self.text) }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Waits until the output matches `pattern` and returns its first capture group.
    func waitForMatch(_ pattern: String, timeout: Duration = .seconds(10)) async throws -> String {
        let regex = try NSRegularExpression(pattern: pattern)
        let deadline = ContinuousClock.now + timeout
        while true {
            let text = self.text
            if let match = regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)),
                let range = Range(match.range(at: 1), in: text)
            {
                return String(text[range])
            }
            if ContinuousClock.now > deadline { throw Timeout(waitingFor: pattern, output: text) }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// The keying material printed for `-keymatexport`, decoded from hex.
    func keyingMaterial() async throws -> [UInt8] {
        let hex = try await self.waitForMatch(#"Keying material: ([0-9A-Fa-f]+)"#)
        return hexBytes(hex)
    }

    /// Writes to the process's stdin.
    func send(_ string: String) {
        self.stdin.fileHandleForWriting.write(Data(string.utf8))
    }

    /// Waits for the process to exit on its own, bounded.
    func waitForExit(timeout: Duration = .seconds(10)) async throws {
        let deadline = ContinuousClock.now + timeout
        while self.process.isRunning {
            if ContinuousClock.now > deadline { throw Timeout(waitingFor: "process exit", output: self.text) }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Kills the process by PID (SIGTERM, then SIGKILL) and reaps it.
    func terminate() {
        let pid = self.process.processIdentifier
        if self.process.isRunning, pid > 0 {
            kill(pid, SIGTERM)
            let deadline = Date().addingTimeInterval(2)
            while self.process.isRunning, Date() < deadline { usleep(10_000) }
            if self.process.isRunning { kill(pid, SIGKILL) }
        }
        self.process.waitUntilExit()
        try? self.stdin.fileHandleForWriting.close()
    }
}

func hexBytes(_ hex: String) -> [UInt8] {
    var bytes: [UInt8] = []
    var index = hex.startIndex
    while index < hex.endIndex, let next = hex.index(index, offsetBy: 2, limitedBy: hex.endIndex) {
        if let byte = UInt8(hex[index..<next], radix: 16) { bytes.append(byte) }
        index = next
    }
    return bytes
}
