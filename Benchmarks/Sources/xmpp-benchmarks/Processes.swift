import Foundation
import Synchronization

/// A child process pinned to one core with `taskset`, killed by its PID at the end.
final class ChildProcess: Sendable {
    let name: String
    let pid: Int32
    private let process: Process

    private static let live = Mutex<[Int32]>([])

    /// Starts `executable arguments…` on `core`, its output appended to `log`.
    init(name: String, core: Int, executable: String, arguments: [String], log: String) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/taskset")
        process.arguments = ["-c", String(core), executable] + arguments
        guard FileManager.default.fileExists(atPath: log) || FileManager.default.createFile(atPath: log, contents: nil),
            let handle = FileHandle(forWritingAtPath: log)
        else {
            throw BenchmarkProcessError("cannot open the log file \(log)")
        }
        handle.seekToEndOfFile()
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
        self.name = name
        self.process = process
        self.pid = process.processIdentifier
        Self.live.withLock { $0.append(process.processIdentifier) }
    }

    var isRunning: Bool { self.process.isRunning }

    /// SIGTERM, then SIGKILL after 3 s.
    func stop() {
        guard self.process.isRunning else { return }
        kill(self.pid, SIGTERM)
        let deadline = Date().addingTimeInterval(3)
        while self.process.isRunning && Date() < deadline { usleep(10_000) }
        if self.process.isRunning {
            kill(self.pid, SIGKILL)
            self.process.waitUntilExit()
        }
        Self.live.withLock { $0.removeAll { $0 == self.pid } }
    }

    /// Kills what is still running (at exit, on a failure).
    static func killAll() {
        for pid in Self.live.withLock({ $0 }) { kill(pid, SIGKILL) }
    }

    /// User + system CPU time of the whole process (all threads), in seconds.
    var cpuSeconds: Double {
        guard let stat = try? String(contentsOfFile: "/proc/\(self.pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return .nan }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // After the command: state is field 3, utime 14, stime 15 (1-based over the whole line).
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return .nan }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// Resident set size in MiB (`VmRSS`).
    var residentMiB: Double {
        guard let status = try? String(contentsOfFile: "/proc/\(self.pid)/status", encoding: .utf8) else { return .nan }
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            let kilobytes = line.split(separator: " ").dropFirst().first.flatMap { Double($0) } ?? .nan
            return kilobytes / 1024
        }
        return .nan
    }
}

/// A benchmark process could not be started.
struct BenchmarkProcessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
