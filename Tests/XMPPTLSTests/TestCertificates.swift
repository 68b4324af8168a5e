import Foundation

/// Certificates and keys generated once per test run with the `openssl` CLI, in a temporary directory
/// that is removed at process exit. Nothing here is committed.
struct TestCertificates: Sendable {
    let directory: String

    var caCertificate: String { self.path("ca.pem") }
    var otherCACertificate: String { self.path("ca2.pem") }
    /// The key of every leaf certificate below.
    var leafKey: String { self.path("leaf.key") }
    /// `example.test`, signed by the test CA (ECDSA with SHA-256).
    var serverCertificate: String { self.path("server.pem") }
    /// `example.test`, signed by the test CA with SHA-384.
    var serverSHA384Certificate: String { self.path("server384.pem") }
    /// `example.test`, expired in 2020.
    var expiredCertificate: String { self.path("expired.pem") }
    /// `example.test`, valid from 2099.
    var notYetValidCertificate: String { self.path("notyet.pem") }
    /// `example.test`, signed by the second CA, which clients do not trust.
    var untrustedCertificate: String { self.path("untrusted.pem") }
    /// `example.test`, self-signed.
    var selfSignedCertificate: String { self.path("selfsigned.pem") }
    /// `component.example.test`, a client certificate signed by the test CA.
    var clientCertificate: String { self.path("client.pem") }

    func path(_ name: String) -> String { self.directory + "/" + name }

    /// The shared set, generated on first use.
    static let shared: TestCertificates = {
        do {
            return try TestCertificates.generate()
        } catch {
            fatalError("cannot generate test certificates: \(error)")
        }
    }()

    /// The certificate in DER.
    func der(_ pemPath: String) throws -> [UInt8] {
        // A file per call: tests run in parallel and must not read each other's half-written output.
        let out = pemPath + "." + UUID().uuidString + ".der"
        defer { try? FileManager.default.removeItem(atPath: out) }
        try OpenSSLCLI.run(["x509", "-in", pemPath, "-outform", "DER", "-out", out])
        return Array(try Data(contentsOf: URL(fileURLWithPath: out)))
    }

    /// The digest of the certificate's DER with `openssl dgst`, for example `"sha256"`.
    func digest(_ pemPath: String, _ algorithm: String) throws -> [UInt8] {
        let out = pemPath + "." + UUID().uuidString + ".der"
        defer { try? FileManager.default.removeItem(atPath: out) }
        try OpenSSLCLI.run(["x509", "-in", pemPath, "-outform", "DER", "-out", out])
        return Array(try OpenSSLCLI.run(["dgst", "-" + algorithm, "-binary", out]))
    }

    private static func generate() throws -> TestCertificates {
        let directory = testCertificateDirectory()
        try FileManager.default.createDirectory(atPath: directory + "/db", withIntermediateDirectories: true)
        atexit {
            try? FileManager.default.removeItem(atPath: testCertificateDirectory())
        }
        let certs = TestCertificates(directory: directory)
        try Data().write(to: URL(fileURLWithPath: certs.path("db/index.txt")))
        let config = """
            [ ca ]
            default_ca = testca
            [ testca ]
            database = \(directory)/db/index.txt
            new_certs_dir = \(directory)/db
            serial = \(directory)/db/serial
            default_md = sha256
            policy = anything
            unique_subject = no
            copy_extensions = copy
            [ anything ]
            commonName = supplied
            """
        try config.write(toFile: certs.path("ca.cnf"), atomically: true, encoding: .utf8)

        func key(_ name: String) throws {
            try OpenSSLCLI.run([
                "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", certs.path(name),
            ])
        }
        func selfSigned(key: String, subject: String, out: String, extensions: [String]) throws {
            try OpenSSLCLI.run(
                ["req", "-x509", "-new", "-key", certs.path(key), "-subj", subject, "-days", "2", "-out", certs.path(out)]
                    + extensions.flatMap { ["-addext", $0] }
            )
        }
        func leaf(
            cn: String, out: String, ca: String, caKey: String,
            start: String? = nil, end: String? = nil, digest: String = "sha256"
        ) throws {
            let csr = certs.path(out + ".csr")
            try OpenSSLCLI.run([
                "req", "-new", "-key", certs.leafKey, "-subj", "/CN=\(cn)",
                "-addext", "subjectAltName=DNS:\(cn)", "-out", csr,
            ])
            var args = [
                "ca", "-batch", "-config", certs.path("ca.cnf"), "-cert", certs.path(ca), "-keyfile", certs.path(caKey),
                "-in", csr, "-out", certs.path(out), "-rand_serial", "-notext", "-md", digest,
            ]
            if let start { args += ["-startdate", start] }
            if let end { args += ["-enddate", end] } else { args += ["-days", "2"] }
            try OpenSSLCLI.run(args)
        }

        let caExtensions = ["basicConstraints=critical,CA:TRUE", "keyUsage=critical,keyCertSign,cRLSign"]
        try key("ca.key")
        try key("ca2.key")
        try key("leaf.key")
        try selfSigned(key: "ca.key", subject: "/CN=XMPPTLS Test CA", out: "ca.pem", extensions: caExtensions)
        try selfSigned(key: "ca2.key", subject: "/CN=XMPPTLS Other CA", out: "ca2.pem", extensions: caExtensions)
        try selfSigned(
            key: "leaf.key", subject: "/CN=example.test", out: "selfsigned.pem",
            extensions: ["subjectAltName=DNS:example.test", "basicConstraints=critical,CA:FALSE"]
        )
        try leaf(cn: "example.test", out: "server.pem", ca: "ca.pem", caKey: "ca.key")
        try leaf(cn: "example.test", out: "server384.pem", ca: "ca.pem", caKey: "ca.key", digest: "sha384")
        try leaf(
            cn: "example.test", out: "expired.pem", ca: "ca.pem", caKey: "ca.key",
            start: "20200101000000Z", end: "20200102000000Z"
        )
        try leaf(
            cn: "example.test", out: "notyet.pem", ca: "ca.pem", caKey: "ca.key",
            start: "20990101000000Z", end: "20991231000000Z"
        )
        try leaf(cn: "example.test", out: "untrusted.pem", ca: "ca2.pem", caKey: "ca2.key")
        try leaf(cn: "component.example.test", out: "client.pem", ca: "ca.pem", caKey: "ca.key")
        return certs
    }
}

/// The per-process directory for generated certificates.
private func testCertificateDirectory() -> String {
    NSTemporaryDirectory() + "/xmpptls-tests-\(getpid())"
}

/// Runs the `openssl` command-line tool synchronously.
enum OpenSSLCLI {
    struct Failure: Error, CustomStringConvertible {
        var arguments: [String]
        var status: Int32
        var output: String
        var description: String { "openssl \(self.arguments.joined(separator: " ")) exited \(self.status): \(self.output)" }
    }

    static let executable = "/usr/bin/openssl"

    @discardableResult
    static func run(_ arguments: [String]) throws -> Data {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: self.executable)
        process.arguments = arguments
        let stdout = Pipe()
        let stderr = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let output = stdout.fileHandleForReading.readDataToEndOfFile()
        let errors = stderr.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw Failure(
                arguments: arguments, status: process.terminationStatus,
                output: String(decoding: errors, as: UTF8.self)
            )
        }
        return output
    }
}
