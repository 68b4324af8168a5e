import Foundation
import Testing
import XMPPTestSupport

@Suite("Test-support helpers", .timeLimit(.minutes(2)))
struct HelperTests {
    @Test("FreePort gives distinct ports that nothing listens on")
    func freePorts() throws {
        let ports = try FreePort.allocate(count: 5)
        #expect(Set(ports).count == 5)
        for port in ports {
            #expect(port > 0 && port < 65536)
            #expect(!FreePort.isAccepting(port))
        }
    }

    @Test("TemporaryDirectory is removed on deinit and by remove()")
    func temporaryDirectory() throws {
        var path = ""
        do {
            let directory = try TemporaryDirectory(prefix: "helper-test")
            path = directory.path
            try "x".write(toFile: directory.path("file"), atomically: true, encoding: .utf8)
            #expect(FileManager.default.fileExists(atPath: directory.path("file")))
        }
        #expect(!FileManager.default.fileExists(atPath: path))
        let second = try TemporaryDirectory(prefix: "helper-test")
        second.remove()
        #expect(!FileManager.default.fileExists(atPath: second.path))
    }

    @Test("TestProcess terminates by PID, escalates to SIGKILL, and leaves no descendant")
    func processTermination() async throws {
        let directory = try TemporaryDirectory(prefix: "helper-test")
        // The shell ignores SIGTERM and has a child: only SIGKILL after the grace period ends both.
        let process = TestProcess(
            executable: "/bin/sh", arguments: ["-c", "trap '' TERM; echo ready; sleep 300 & wait"],
            outputPath: directory.path("out"))
        try process.start()
        let deadline = ContinuousClock.now + .seconds(30)
        while !process.output.contains("ready") || !process.processIdentities().contains(where: { $0.command == "sleep" }) {
            try #require(ContinuousClock.now < deadline, "the shell did not start its child")
            try await Task.sleep(for: .milliseconds(20))
        }
        let identities = process.processIdentities()
        #expect(identities.contains { $0.command == "sleep" })
        #expect(TestProcessRegistry.shared.running.contains { $0 === process })
        // terminate() returns once everything is gone (checked below), however long that takes.
        process.terminate(grace: .milliseconds(300))
        #expect(!process.isRunning)
        #expect(process.terminationStatus != nil)
        for identity in identities {
            #expect(!ProcessTree.isAlive(identity), "\(identity) survived")
        }
        #expect(!TestProcessRegistry.shared.running.contains { $0 === process })
    }

    @Test("Every TestProcess leads its own process group and carries the run marker; none survives terminate()")
    func processGroupAndRunMarker() async throws {
        let directory = try TemporaryDirectory(prefix: "helper-test")
        let process = TestProcess(
            executable: "/bin/sh", arguments: ["-c", "echo ready; sleep 300 & wait"], outputPath: directory.path("out"))
        try process.start()
        let deadline = ContinuousClock.now + .seconds(30)
        while !process.processIdentities().contains(where: { $0.command == "sleep" }) {
            try #require(ContinuousClock.now < deadline, "the shell did not start its child")
            try await Task.sleep(for: .milliseconds(20))
        }
        // The reaper kills process groups: the child must lead one (its descendants in it).
        #expect(getpgid(process.pid) == process.pid)
        let identities = process.processIdentities()
        for identity in identities {
            #expect(getpgid(identity.pid) == process.pid, "\(identity) is not in the group")
        }
        // The end-of-run check finds the processes by their marker... (A child seen as
        // `sleep` may still be inside execve: the kernel names it before it maps the new
        // environment, and /proc/PID/environ reads empty for that moment.)
        var marked = Set(TestProcessRegistry.survivors().map(\.pid))
        let execDeadline = ContinuousClock.now + .seconds(5)
        while !identities.allSatisfy({ marked.contains($0.pid) }), ContinuousClock.now < execDeadline {
            try await Task.sleep(for: .milliseconds(10))
            marked = Set(TestProcessRegistry.survivors().map(\.pid))
        }
        #expect(identities.allSatisfy { marked.contains($0.pid) }, "\(identities) vs \(marked)")
        process.terminate(grace: .milliseconds(300))
        // ...and after terminate() none of them is left.
        let left = Set(TestProcessRegistry.survivors().map(\.pid))
        #expect(identities.allSatisfy { !left.contains($0.pid) })
        #expect(TestProcessReaper.shared.pid > 0, "the reaper did not start")
        #expect(ProcessTree.isAlive(TestProcessReaper.shared.pid), "the reaper is not running")
    }

    @Test("A missing server fails loudly with what to install")
    func missingServer() {
        #expect {
            try ServerInstallation.require("prosody", executables: ["/nonexistent/prosody"], user: "prosody")
        } throws: { error in
            let text = String(describing: error)
            return text.contains("not installed") && text.contains("apt-get install -y prosody ejabberd")
                && text.contains("policy-rc.d")
        }
    }

    @Test("The test CA issues certificates with the requested names")
    func certificateAuthority() async throws {
        let ca = try await TestCertificateAuthority()
        let leaf = try await ca.issue(commonName: "example.test", dnsNames: ["example.test", "*.example.test"])
        let result = try await runCommand(
            "/usr/bin/openssl", ["verify", "-CAfile", ca.certificatePath, leaf.certificatePath])
        #expect(result.status == 0, "\(result.output)")
        let text = try await runCommand(
            "/usr/bin/openssl", ["x509", "-in", leaf.certificatePath, "-noout", "-ext", "subjectAltName"])
        #expect(text.output.contains("DNS:example.test, DNS:*.example.test"))
        let combined = try String(contentsOfFile: leaf.combinedPath, encoding: .utf8)
        #expect(combined.contains("BEGIN CERTIFICATE") && combined.contains("PRIVATE KEY"))
    }
}
