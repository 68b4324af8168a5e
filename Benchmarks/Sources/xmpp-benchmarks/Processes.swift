import Foundation
import Synchronization

/// A child process, pinned to one core with `taskset` unless the ``Placement`` is
/// `unpinned`, killed by its PID at the end.
final class ChildProcess: Sendable {
    let name: String
    let pid: Int32
    private let process: Process

    private static let live = Mutex<[Int32]>([])

    /// Starts `executable arguments…` on `core` (anywhere when the ``Placement`` is
    /// `unpinned`: no `taskset`), its output appended to `log`.
    init(name: String, core: Int, executable: String, arguments: [String], log: String) throws {
        let process = Process()
        if Placement.current == .unpinned {
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
        } else {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/taskset")
            process.arguments = ["-c", String(core), executable] + arguments
        }
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

    /// User + system CPU time of the process and its live descendants (the components a
    /// host supervises), in seconds.
    var treeCPUSeconds: Double {
        var total = 0.0
        var pending = [self.pid]
        var seen = Set<Int32>()
        while let pid = pending.popLast(), seen.insert(pid).inserted {
            total += Self.cpuSeconds(pid: pid)
            let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
            for task in tasks {
                let children = (try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/children", encoding: .utf8)) ?? ""
                let pids = children.split(separator: " ").compactMap {
                    Int32($0.trimmingCharacters(in: .whitespacesAndNewlines))
                }
                pending.append(contentsOf: pids)
            }
        }
        return total
    }

    static func cpuSeconds(pid: Int32) -> Double {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return 0 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// Context switches of every live thread, by thread id (`voluntary_ctxt_switches` and
    /// `nonvoluntary_ctxt_switches` of `/proc/PID/task/*/status`).
    var contextSwitches: ContextSwitches {
        var threads: [String: (voluntary: Int, nonvoluntary: Int)] = [:]
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(self.pid)/task")) ?? []
        for task in tasks {
            let path = "/proc/\(self.pid)/task/\(task)/status"
            guard let voluntary = Placement.statusField("voluntary_ctxt_switches", path: path).flatMap({ Int($0) }),
                let nonvoluntary = Placement.statusField("nonvoluntary_ctxt_switches", path: path).flatMap({ Int($0) })
            else { continue }
            threads[task] = (voluntary, nonvoluntary)
        }
        return ContextSwitches(threads: threads)
    }

    /// `Cpus_allowed_list` of the process: what the kernel may schedule it on.
    var allowedCPUs: String? { Placement.allowedCPUs(pid: self.pid) }

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

/// Per-thread context-switch counters of a process at one moment.
struct ContextSwitches: Sendable {
    var threads: [String: (voluntary: Int, nonvoluntary: Int)]

    /// The switches from `before` to `self`, summed over the threads: a thread born in
    /// between counts from zero; a thread that ended in between is lost (the kernel keeps
    /// no per-process total of dead threads' switches in `/proc`), so this is a lower bound
    /// if the process ends threads during the run.
    func since(_ before: ContextSwitches) -> (voluntary: Int, nonvoluntary: Int, threads: Int) {
        var voluntary = 0
        var nonvoluntary = 0
        for (thread, now) in self.threads {
            let then = before.threads[thread] ?? (0, 0)
            voluntary += max(0, now.voluntary - then.voluntary)
            nonvoluntary += max(0, now.nonvoluntary - then.nonvoluntary)
        }
        return (voluntary, nonvoluntary, self.threads.count)
    }

    /// Threads present in `before` and gone now.
    func ended(since before: ContextSwitches) -> Int {
        before.threads.keys.filter { self.threads[$0] == nil }.count
    }
}

/// A benchmark process could not be started.
struct BenchmarkProcessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
