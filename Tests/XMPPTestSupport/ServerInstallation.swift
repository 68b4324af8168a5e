import Foundation

/// Checks that a server the integration tests need is installed, and says how to install
/// it when it is not. Tests must fail with this message, never skip silently.
public enum ServerInstallation {
    /// How to install both servers without letting Debian start their system services.
    public static let installHint = """
        install it without starting system services: \
        printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && \
        DEBIAN_FRONTEND=noninteractive apt-get install -y prosody ejabberd \
        (or run scripts/setup.sh, which does this)
        """

    /// Throws unless every file exists and is executable.
    /// - Parameters:
    ///   - server: The package name, for the message.
    ///   - executables: The programs the fixture runs.
    ///   - user: The system account the package creates, required when running as root.
    /// - Throws: ``TestSupportError`` naming what is missing and how to install it.
    public static func require(_ server: String, executables: [String], user: String) throws {
        let missing = executables.filter { !FileManager.default.isExecutableFile(atPath: $0) }
        if !missing.isEmpty {
            throw TestSupportError("\(server) is not installed (missing \(missing.joined(separator: ", "))); \(installHint)")
        }
        if SystemUser.isRoot, SystemUser.named(user) == nil {
            throw TestSupportError(
                "\(server) is installed but the system user '\(user)' does not exist; reinstall it: \(installHint)")
        }
        if SystemUser.isRoot, !FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") {
            throw TestSupportError("/usr/bin/setpriv (util-linux) is needed to run \(server) as '\(user)'")
        }
    }
}

/// Waits until every port accepts TCP connections on 127.0.0.1, or the process exits, or
/// the deadline passes.
/// - Parameters:
///   - ports: The ports.
///   - process: The server process; its exit ends the wait early.
///   - timeout: The longest wait.
///   - describe: Builds the failure message's detail (typically the log tail).
/// - Throws: ``TestSupportError`` on exit or timeout.
func waitForPorts(
    _ ports: [Int], process: TestProcess, timeout: Duration, server: String, describe: () -> String
) async throws {
    let deadline = ContinuousClock.now + timeout
    var pending = ports
    while true {
        pending.removeAll(where: FreePort.isAccepting)
        if pending.isEmpty { return }
        if let status = process.terminationStatus {
            throw TestSupportError(
                "\(server) exited with status \(status) before listening on \(pending.map(String.init).joined(separator: ", "))\n"
                    + describe())
        }
        if ContinuousClock.now >= deadline {
            throw TestSupportError(
                "\(server) did not listen on 127.0.0.1:\(pending.map(String.init).joined(separator: ", ")) within \(timeout)\n"
                    + describe())
        }
        try await Task.sleep(for: .milliseconds(25))
    }
}
