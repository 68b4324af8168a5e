import Foundation
import Synchronization

/// Where the harness and the components run.
///
/// - `pinned`: the harness (every thread of this process) on core 0, each component
///   started with `taskset -c 1`: the two sides never compete for a core, and the figures
///   are the most repeatable.
/// - `unpinned`: no affinity at all, as users run a component: the harness gets back the
///   CPUs it was started with, the components are started without `taskset`, and the
///   kernel places every thread.
///
/// The placement is process-wide state (it *is* the harness's affinity), so
/// ``ChildProcess`` reads it when it starts a component.
enum Placement: String, Codable, CaseIterable, Sendable {
    case pinned
    case unpinned

    /// `pinned|unpinned|both` → the placements to run, pinned first.
    static func parse(_ text: String) -> [Placement]? {
        switch text {
        case "both": return [.pinned, .unpinned]
        default: return Placement(rawValue: text).map { [$0] }
        }
    }

    var summary: String {
        switch self {
        case .pinned: return "pinned: harness on core 0, component on core 1 (taskset)"
        case .unpinned: return "unpinned: no affinity on the harness nor the component, as users run it"
        }
    }

    private static let state = Mutex<Placement?>(nil)
    /// The CPUs this process was started with (`Cpus_allowed_list`), read before the first
    /// ``apply(_:harnessCore:)`` changes them.
    static let startingCPUs: String =
        Placement.allowedCPUs(pid: getpid()) ?? "0-\(max(0, ProcessInfo.processInfo.activeProcessorCount - 1))"

    /// The placement of the components started from now on; `nil` before the first
    /// ``apply(_:harnessCore:)`` (then ``ChildProcess`` pins, as it always did).
    static var current: Placement? { Self.state.withLock { $0 } }

    /// Sets the affinity of every thread of this process (`taskset -a -p`): the harness
    /// core when pinned, the starting CPUs when unpinned. Threads created later inherit the
    /// affinity of the thread that creates them, so the Swift concurrency pool and NIO
    /// follow. Throws if `taskset` fails.
    static func apply(_ placement: Placement, harnessCore: Int) throws {
        let cpus = Self.startingCPUs
        let list = placement == .pinned ? String(harnessCore) : cpus
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/taskset")
        process.arguments = ["-a", "-p", "-c", list, String(getpid())]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw BenchmarkProcessError("taskset -a -p -c \(list) \(getpid()) failed (\(process.terminationStatus))")
        }
        Self.state.withLock { $0 = placement }
        log("placement \(placement.rawValue): harness threads on CPUs \(Self.threadCPUs(pid: getpid()).joined(separator: " "))")
    }

    /// `Cpus_allowed_list` of a process (its main thread).
    static func allowedCPUs(pid: Int32) -> String? {
        Self.statusField("Cpus_allowed_list", path: "/proc/\(pid)/status")
    }

    /// The distinct `Cpus_allowed_list` values of a process's threads.
    static func threadCPUs(pid: Int32) -> [String] {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        return Array(Set(tasks.compactMap { Self.statusField("Cpus_allowed_list", path: "/proc/\(pid)/task/\($0)/status") }))
            .sorted()
    }

    static func statusField(_ name: String, path: String) -> String? {
        guard let status = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix(name + ":") {
            return line.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces)
        }
        return nil
    }
}
