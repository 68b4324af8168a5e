public import Foundation

/// Read-only views of `/proc` for the processes tests start: which ones are alive and
/// which processes they started.
public enum ProcessTree {
    /// A process identified by its ID and its start time (clock ticks since boot), so that a
    /// recycled ID is never mistaken for the process seen earlier.
    public struct Identity: Hashable, Sendable, CustomStringConvertible {
        /// The process ID.
        public var pid: pid_t
        /// The start time from `/proc/PID/stat` (field 22).
        public var startTime: UInt64
        /// The command name from `/proc/PID/stat`.
        public var command: String

        /// `command[pid]`.
        public var description: String { "\(self.command)[\(self.pid)]" }
    }

    /// The identity of a live (non-zombie) process, or `nil`.
    /// - Parameter pid: The process ID.
    public static func identity(of pid: pid_t) -> Identity? {
        guard let stat = self.stat(pid), stat.state != "Z", stat.state != "X" else { return nil }
        return Identity(pid: pid, startTime: stat.startTime, command: stat.command)
    }

    /// Whether a process is alive: it exists and is not a zombie.
    /// - Parameter pid: The process ID.
    public static func isAlive(_ pid: pid_t) -> Bool {
        self.identity(of: pid) != nil
    }

    /// Whether the process seen earlier is still alive (same ID and start time, not a zombie).
    /// - Parameter identity: The identity recorded earlier.
    public static func isAlive(_ identity: Identity) -> Bool {
        self.identity(of: identity.pid)?.startTime == identity.startTime
    }

    /// The live descendants of a process (children first, then theirs), from
    /// `/proc/PID/task/TID/children`.
    /// - Parameter pid: The process ID.
    public static func descendants(of pid: pid_t) -> [Identity] {
        var result: [Identity] = []
        var queue = self.children(of: pid)
        var seen = Set<pid_t>()
        while !queue.isEmpty {
            let child = queue.removeFirst()
            guard seen.insert(child).inserted, let identity = self.identity(of: child) else { continue }
            result.append(identity)
            queue.append(contentsOf: self.children(of: child))
        }
        return result
    }

    /// Sends a signal to the process seen earlier, only if it is still that process.
    /// - Parameters:
    ///   - identity: The identity recorded earlier.
    ///   - signal: The signal.
    public static func signal(_ identity: Identity, _ signal: Int32) {
        if self.isAlive(identity) {
            _ = kill(identity.pid, signal)
        }
    }

    private static func children(of pid: pid_t) -> [pid_t] {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        var result: [pid_t] = []
        for task in tasks {
            guard let text = try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/children", encoding: .utf8) else {
                continue
            }
            result += text.split(separator: " ").compactMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
        return result
    }

    private struct Stat {
        var command: String
        var state: Character
        var startTime: UInt64
    }

    private static func stat(_ pid: pid_t) -> Stat? {
        guard pid > 0, let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let open = text.firstIndex(of: "("), let close = text.lastIndex(of: ")")
        else { return nil }
        let command = String(text[text.index(after: open)..<close])
        // After ") ": state is field 3; starttime is field 22, i.e. index 19 from the state.
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 19, let state = fields[0].first, let start = UInt64(fields[19]) else { return nil }
        return Stat(command: command, state: state, startTime: start)
    }
}
