import Foundation
import XMPPCore
import XMPPSASL

/// Runs a program with a deadline; returns its exit status and standard output.
/// The process is terminated by its PID when the deadline passes, so no test can hang.
@discardableResult
func run(_ executable: String, _ arguments: [String], input: String? = nil, timeout: TimeInterval = 10) throws
    -> (status: Int32, output: String)
{
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let stdin = Pipe()
    let stdout = Pipe()
    process.standardInput = stdin
    process.standardOutput = stdout
    process.standardError = FileHandle.nullDevice
    try process.run()
    if let input {
        stdin.fileHandleForWriting.write(Data(input.utf8))
    }
    try stdin.fileHandleForWriting.close()
    let deadline = Date().addingTimeInterval(timeout)
    while process.isRunning, Date() < deadline {
        usleep(10_000)
    }
    if process.isRunning {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        throw TestFailure("\(executable) timed out")
    }
    let output = stdout.fileHandleForReading.readDataToEndOfFile()
    return (process.terminationStatus, String(decoding: output, as: UTF8.self))
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A fresh temporary directory.
func makeTemporaryDirectory() throws -> String {
    let path = NSTemporaryDirectory() + "xmppsasl-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// Creates (or adds to) a sasldb file with `saslpasswd2 -p -f PATH -c -u REALM USER`,
/// the password arriving on standard input.
func createSASLDBEntry(path: String, realm: String, user: String, password: String) throws {
    let result = try run("/usr/sbin/saslpasswd2", ["-p", "-f", path, "-c", "-u", realm, user], input: password)
    guard result.status == 0 else {
        throw TestFailure("saslpasswd2 failed with status \(result.status)")
    }
}

/// The account every test uses, in one sasldb made once per test process.
enum Account {
    static let realm = "example.com"
    static let user = "component.example.com"
    static let password = "s3cret-pässword"
    static let iterations = 256

    /// The shared database path (created once, thread-safely, by `static let`).
    static let sasldbPath: String = {
        do {
            let directory = try makeTemporaryDirectory()
            let path = directory + "/sasldb"
            try createSASLDBEntry(path: path, realm: realm, user: user, password: password)
            return path
        } catch {
            fatalError("cannot create the test sasldb: \(error)")
        }
    }()
}

/// Channel-binding data from a real TLS 1.3 session between `openssl s_server` and
/// `openssl s_client` on a loopback port chosen at run time.
struct TLSSessionBindings: Sendable {
    /// RFC 9266 exporter bytes as printed by the client.
    var clientExporter: [UInt8]
    /// The same, as printed by the server.
    var serverExporter: [UInt8]
    /// RFC 5929 tls-server-end-point: SHA-256 of the server certificate (ecdsa-with-SHA256).
    var serverEndPoint: [UInt8]
}

enum OpenSSLFixture {
    static let openssl = "/usr/bin/openssl"

    /// Produced once per test process.
    static let session: Result<TLSSessionBindings, TestFailure> = {
        do {
            return .success(try makeSession())
        } catch let error as TestFailure {
            return .failure(error)
        } catch {
            return .failure(TestFailure("\(error)"))
        }
    }()

    /// The session bindings; a test that needs them fails (rather than hangs) if openssl did not work.
    static func bindings() throws -> TLSSessionBindings {
        try self.session.get()
    }

    private static func makeSession() throws -> TLSSessionBindings {
        let directory = try makeTemporaryDirectory()
        let key = directory + "/key.pem"
        let certificate = directory + "/cert.pem"
        let made = try run(
            openssl,
            [
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-subj", "/CN=example.com", "-days", "1", "-keyout", key, "-out", certificate,
            ]
        )
        guard made.status == 0 else { throw TestFailure("openssl req failed") }
        let fingerprint = try run(openssl, ["x509", "-in", certificate, "-noout", "-fingerprint", "-sha256"])
        guard let hex = fingerprint.output.split(separator: "=").last else {
            throw TestFailure("no fingerprint")
        }
        let serverEndPoint = try hexBytes(hex.replacingOccurrences(of: ":", with: ""))

        let exporterArguments = ["-keymatexport", "EXPORTER-Channel-Binding", "-keymatexportlen", "32", "-tls1_3"]
        let serverLog = directory + "/server.out"
        _ = FileManager.default.createFile(atPath: serverLog, contents: nil)
        let server = Process()
        server.executableURL = URL(fileURLWithPath: openssl)
        server.arguments =
            ["s_server", "-accept", "127.0.0.1:0", "-cert", certificate, "-key", key, "-naccept", "1"]
            + exporterArguments
        let serverInput = Pipe()  // kept open: s_server quits on end of input
        server.standardInput = serverInput
        server.standardOutput = FileHandle(forWritingAtPath: serverLog)
        server.standardError = FileHandle.nullDevice
        try server.run()
        defer {
            if server.isRunning { kill(server.processIdentifier, SIGKILL) }
            server.waitUntilExit()
            try? serverInput.fileHandleForWriting.close()
        }

        // The port chosen by the kernel, from "ACCEPT 127.0.0.1:PORT".
        var port: String?
        let deadline = Date().addingTimeInterval(10)
        while port == nil, Date() < deadline {
            let log = (try? String(contentsOfFile: serverLog, encoding: .utf8)) ?? ""
            if let line = log.split(separator: "\n").first(where: { $0.hasPrefix("ACCEPT") }),
                let last = line.split(separator: ":").last
            {
                port = String(last)
            } else {
                usleep(20_000)
            }
        }
        guard let port else { throw TestFailure("openssl s_server did not report its port") }

        let clientLog = directory + "/client.out"
        _ = FileManager.default.createFile(atPath: clientLog, contents: nil)
        let client = Process()
        client.executableURL = URL(fileURLWithPath: openssl)
        client.arguments = ["s_client", "-connect", "127.0.0.1:" + port] + exporterArguments
        let clientInput = Pipe()
        client.standardInput = clientInput
        client.standardOutput = FileHandle(forWritingAtPath: clientLog)
        client.standardError = FileHandle.nullDevice
        try client.run()
        // Wait (bounded) until the exporter line is printed, then end the session.
        let clientText = waitForKeyingMaterial(in: clientLog)
        try? clientInput.fileHandleForWriting.close()
        let clientDeadline = Date().addingTimeInterval(5)
        while client.isRunning, Date() < clientDeadline { usleep(10_000) }
        if client.isRunning { kill(client.processIdentifier, SIGKILL) }
        client.waitUntilExit()

        let serverText = waitForKeyingMaterial(in: serverLog)
        guard let clientExporter = keyingMaterial(clientText), let serverExporter = keyingMaterial(serverText) else {
            throw TestFailure("openssl printed no keying material")
        }
        return TLSSessionBindings(
            clientExporter: clientExporter,
            serverExporter: serverExporter,
            serverEndPoint: serverEndPoint
        )
    }

    /// Polls a log file for a complete "Keying material:" line for at most 10 s.
    private static func waitForKeyingMaterial(in path: String) -> String {
        let deadline = Date().addingTimeInterval(10)
        var text = ""
        while Date() < deadline {
            text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
            if let range = text.range(of: "Keying material:"), text[range.upperBound...].contains("\n") {
                break
            }
            usleep(20_000)
        }
        return text
    }

    private static func keyingMaterial(_ text: String) -> [UInt8]? {
        guard let line = text.split(separator: "\n").first(where: { $0.contains("Keying material:") }),
            let hex = line.split(separator: ":").last
        else { return nil }
        return try? hexBytes(hex.trimmingCharacters(in: .whitespaces))
    }
}

func hexBytes(_ hex: some StringProtocol) throws -> [UInt8] {
    let characters = Array(hex.trimmingCharacters(in: .whitespacesAndNewlines))
    guard characters.count % 2 == 0 else { throw TestFailure("odd hex length") }
    return try stride(from: 0, to: characters.count, by: 2).map {
        guard let byte = UInt8(String(characters[$0...$0 + 1]), radix: 16) else { throw TestFailure("bad hex") }
        return byte
    }
}

// MARK: Building blocks for exchanges

extension SASLTransportSecurity {
    /// TLS 1.3 with the given bindings.
    static func tls13(_ bindings: [SASLChannelBindingType: [UInt8]] = [:]) -> SASLTransportSecurity {
        SASLTransportSecurity(isTLSActive: true, isTLS13: true, channelBindings: bindings)
    }

    /// TLS 1.2 with the given bindings.
    static func tls12(_ bindings: [SASLChannelBindingType: [UInt8]] = [:]) -> SASLTransportSecurity {
        SASLTransportSecurity(isTLSActive: true, isTLS13: false, channelBindings: bindings)
    }
}

func makeServer(
    _ transport: SASLTransportSecurity,
    mechanisms: [String] = ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"],
    sasldbPath: String = Account.sasldbPath,
    externalIdentity: String? = nil,
    iterations: Int? = Account.iterations
) throws -> SASLServer {
    try SASLServer(
        configuration: .init(
            sasldbPath: sasldbPath,
            serverFQDN: "example.com",
            realm: Account.realm,
            mechanisms: mechanisms,
            scramIterationCount: iterations,
            externalIdentity: externalIdentity
        ),
        transport: transport
    )
}

func makeClient(
    _ transport: SASLTransportSecurity,
    password: String? = Account.password,
    allowed: [String]? = nil,
    clientCertificate: Bool = false,
    authzid: String? = nil,
    minimumIterations: Int = Account.iterations,
    requireChannelBinding: Bool = false
) throws -> SASLClient {
    var configuration = SASLClient.Configuration(
        authenticationIdentity: Account.user,
        password: password,
        serverFQDN: "example.com",
        authorizationIdentity: authzid,
        allowedMechanisms: allowed,
        hasClientCertificate: clientCertificate
    )
    configuration.minimumIterationCount = minimumIterations
    configuration.requireChannelBinding = requireChannelBinding
    return try SASLClient(configuration: configuration, transport: transport)
}

/// `<stream:features>` as the server would advertise them.
func features(of server: SASLServer) -> Element {
    var children = [server.mechanismsElement]
    if let binding = server.channelBindingElement { children.append(binding) }
    return Element("features", namespace: Namespace.stream, children: children)
}

/// `<stream:features>` with a hand-made offer.
func features(_ mechanisms: [String], bindingTypes: [String]? = nil) -> Element {
    var children = [
        Element(
            "mechanisms",
            namespace: Namespace.sasl,
            children: mechanisms.map { Element("mechanism", namespace: Namespace.sasl, text: $0) }
        )
    ]
    if let bindingTypes {
        children.append(
            Element(
                "sasl-channel-binding",
                namespace: Namespace.saslChannelBinding,
                children: bindingTypes.map {
                    Element("channel-binding", namespace: Namespace.saslChannelBinding, attributes: ["type": $0])
                }
            )
        )
    }
    return Element("features", namespace: Namespace.stream, children: children)
}

/// What an exchange ended with, on both sides.
struct ExchangeResult {
    var auth: Element
    var clientOutcome: Result<SASLOutcome, SASLError>
    var serverIdentity: String?
    var serverError: SASLError?
    var rounds: Int
}

/// Drives a client and a server against each other (at most 10 rounds), optionally letting a
/// "man in the middle" rewrite the features, the `<auth/>` and the server's elements.
func exchange(
    client: SASLClient,
    server: SASLServer,
    features offer: Element? = nil,
    tamperAuth: (Element) -> Element = { $0 },
    tamperServer: (Element) -> Element = { $0 }
) throws -> ExchangeResult {
    let auth = tamperAuth(try client.start(features: offer ?? features(of: server)))
    var serverStep = server.start(auth: auth)
    for round in 1...10 {
        switch serverStep {
        case .challenge(let challenge):
            do {
                switch try client.receive(tamperServer(challenge)) {
                case .send(let response):
                    serverStep = server.receive(response: response)
                case .succeeded(let outcome):
                    return ExchangeResult(auth: auth, clientOutcome: .success(outcome), rounds: round)
                }
            } catch {
                return ExchangeResult(auth: auth, clientOutcome: .failure(error), rounds: round)
            }
        case .success(let success, let identity):
            let outcome: Result<SASLOutcome, SASLError>
            do {
                guard case .succeeded(let value) = try client.receive(tamperServer(success)) else {
                    throw TestFailure("client did not succeed after <success/>")
                }
                outcome = .success(value)
            } catch let error as SASLError {
                outcome = .failure(error)
            }
            return ExchangeResult(auth: auth, clientOutcome: outcome, serverIdentity: identity, rounds: round)
        case .failure(let failure, let error):
            let outcome: Result<SASLOutcome, SASLError>
            do {
                _ = try client.receive(failure)
                throw TestFailure("client accepted a <failure/>")
            } catch let clientError as SASLError {
                outcome = .failure(clientError)
            }
            return ExchangeResult(auth: auth, clientOutcome: outcome, serverError: error, rounds: round)
        }
    }
    throw TestFailure("no result after 10 rounds")
}

/// The decoded initial response of an `<auth/>` as a string.
func initialResponse(_ auth: Element) -> String {
    guard let bytes = SASLTestBase64.decode(auth.text) else { return "<bad base64>" }
    return String(decoding: bytes, as: UTF8.self)
}

/// Base64 helpers for tampering (Foundation's, independent of the module's own).
enum SASLTestBase64 {
    static func decode(_ text: String) -> [UInt8]? {
        Data(base64Encoded: text).map { Array($0) }
    }

    static func encode(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString()
    }
}
