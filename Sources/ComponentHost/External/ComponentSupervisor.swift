import Foundation
import Logging
import Synchronization

/// Starts and supervises an external component's `command` (Foundation's `Process`): it
/// starts once the upstream is connected, with the hostname, listen address and secret in
/// its environment; restarts per the restart policy with backoff (0.5 s doubling to 30 s,
/// back to 0.5 s after a run of 30 s); logs each line of its output with its hostname;
/// and stops with SIGTERM, then SIGKILL after the stop grace.
final class ComponentSupervisor: Sendable {
    /// What `component-host status` shows.
    struct Snapshot: Hashable, Sendable {
        /// `waiting` (for the upstream), `running`, `backoff`, `stopping`, `exited` or `stopped`.
        var state: String
        var pid: Int32?
        var restarts: Int
        var startedAt: Date?
        var lastExit: String?
    }

    private struct State {
        var snapshot = Snapshot(state: "waiting", pid: nil, restarts: 0, startedAt: nil, lastExit: nil)
        var process: Process?
        var stopping = false
        var wake: CheckedContinuation<Void, Never>?
    }

    let hostname: String
    let command: [String]
    let environment: [String: String]
    let restart: ExternalOptions.RestartPolicy
    let stopGrace: Duration
    let logger: Logger
    private let state = Mutex(State())

    init(
        hostname: String, command: [String], environment: [String: String], restart: ExternalOptions.RestartPolicy,
        stopGrace: Duration, logger: Logger
    ) {
        self.hostname = hostname
        self.command = command
        self.environment = environment
        self.restart = restart
        self.stopGrace = stopGrace
        self.logger = logger
    }

    var snapshot: Snapshot {
        self.state.withLock { $0.snapshot }
    }

    /// Asks the supervisor to stop its process and return from ``run(isReady:)``.
    func stop() {
        let (process, wake) = self.state.withLock { state -> (Process?, CheckedContinuation<Void, Never>?) in
            state.stopping = true
            if state.process != nil { state.snapshot.state = "stopping" }
            let wake = state.wake
            state.wake = nil
            return (state.process, wake)
        }
        wake?.resume()
        if let process { self.terminate(process) }
    }

    private var isStopping: Bool {
        self.state.withLock { $0.stopping }
    }

    /// Sleeps, unless stopped or cancelled first.
    private func pause(_ duration: Duration) async {
        await withTaskCancellationHandler {
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    await withCheckedContinuation { continuation in
                        let resumeNow = self.state.withLock { state -> Bool in
                            if state.stopping { return true }
                            state.wake = continuation
                            return false
                        }
                        if resumeNow { continuation.resume() }
                    }
                }
                group.addTask { try? await Task.sleep(for: duration) }
                await group.next()
                let wake = self.state.withLock { state in
                    let wake = state.wake
                    state.wake = nil
                    return wake
                }
                wake?.resume()
                group.cancelAll()
            }
        } onCancel: {
            self.stop()
        }
    }

    /// Runs the command until stopped (or cancelled, or the policy says not to restart).
    /// - Parameter isReady: Whether the process may start (the upstream is connected and the
    ///   listener open); polled every 100 ms before each start.
    func run(isReady: @escaping @Sendable () -> Bool) async {
        var delay = Duration.milliseconds(500)
        while !self.isStopping && !Task.isCancelled {
            if !isReady() {
                self.state.withLock { $0.snapshot.state = "waiting" }
                await self.pause(.milliseconds(100))
                continue
            }
            let started = ContinuousClock.now
            guard let exit = await self.runOnce() else { break }
            let ranFor = ContinuousClock.now - started
            let failed = !(exit.reason == .exit && exit.status == 0)
            let description = exit.reason == .exit ? "exit status \(exit.status)" : "signal \(exit.status)"
            self.state.withLock { $0.snapshot.lastExit = description }
            if self.isStopping || Task.isCancelled { break }
            self.logger.log(
                level: failed ? .warning : .info, "external component exited", metadata: ["exit": "\(description)"])
            let again = self.restart == .always || (self.restart == .onFailure && failed)
            guard again else {
                self.state.withLock { $0.snapshot.state = "exited" }
                return
            }
            if ranFor >= .seconds(30) { delay = .milliseconds(500) }
            self.state.withLock {
                $0.snapshot.state = "backoff"
                $0.snapshot.restarts += 1
            }
            await self.pause(delay)
            delay = min(delay * 2, .seconds(30))
        }
        self.state.withLock {
            $0.snapshot.state = "stopped"
            $0.snapshot.pid = nil
        }
    }

    private struct Exit: Sendable {
        var reason: Process.TerminationReason
        var status: Int32
    }

    /// Starts the process and waits for it to end; `nil` when it could not be started.
    private func runOnce() async -> Exit? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: self.command[0])
        process.arguments = Array(self.command.dropFirst())
        var environment = ProcessInfo.processInfo.environment
        for (key, value) in self.environment { environment[key] = value }
        process.environment = environment
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        process.standardInput = FileHandle.nullDevice
        self.forwardLines(of: output, stream: "stdout")
        self.forwardLines(of: errors, stream: "stderr")
        let exit = await withCheckedContinuation { (continuation: CheckedContinuation<Exit?, Never>) in
            process.terminationHandler = { process in
                continuation.resume(returning: Exit(reason: process.terminationReason, status: process.terminationStatus))
            }
            let proceed = self.state.withLock { state -> Bool in
                guard !state.stopping else { return false }
                state.process = process
                return true
            }
            guard proceed else {
                continuation.resume(returning: nil)
                return
            }
            do {
                try process.run()
            } catch {
                self.state.withLock {
                    $0.process = nil
                    $0.snapshot.state = "exited"
                    $0.snapshot.lastExit = "could not start: \(error)"
                }
                self.logger.error(
                    "cannot start the external component", metadata: ["command": "\(self.command[0])", "error": "\(error)"])
                continuation.resume(returning: nil)
                return
            }
            let pid = process.processIdentifier
            let stopNow = self.state.withLock { state -> Bool in
                state.snapshot.pid = pid
                state.snapshot.startedAt = Date()
                state.snapshot.state = state.stopping ? "stopping" : "running"
                return state.stopping
            }
            self.logger.info("external component started", metadata: ["pid": "\(pid)"])
            if stopNow { self.terminate(process) }
        }
        self.state.withLock {
            $0.process = nil
            $0.snapshot.pid = nil
        }
        try? output.fileHandleForWriting.close()
        try? errors.fileHandleForWriting.close()
        return exit
    }

    /// SIGTERM now, SIGKILL after the stop grace if it still runs.
    private func terminate(_ process: Process) {
        guard process.isRunning else { return }
        let pid = process.processIdentifier
        process.terminate()
        let grace = self.stopGrace
        let logger = self.logger
        Task.detached {
            try? await Task.sleep(for: grace)
            if process.isRunning {
                logger.warning("external component ignored SIGTERM; killing it", metadata: ["pid": "\(pid)"])
                kill(pid, SIGKILL)
            }
        }
    }

    /// Logs each line the process writes, with the hostname (from the logger's metadata).
    private func forwardLines(of pipe: Pipe, stream: String) {
        let buffer = Mutex<[UInt8]>([])
        let logger = self.logger
        pipe.fileHandleForReading.readabilityHandler = { handle in
            let data = handle.availableData
            if data.isEmpty {
                handle.readabilityHandler = nil
                let rest = buffer.withLock { bytes in
                    defer { bytes.removeAll() }
                    return bytes
                }
                if !rest.isEmpty {
                    logger.info(
                        "external component output",
                        metadata: ["stream": "\(stream)", "line": "\(String(decoding: rest, as: UTF8.self))"])
                }
                return
            }
            let lines = buffer.withLock { bytes -> [String] in
                bytes.append(contentsOf: data)
                var lines: [String] = []
                while let newline = bytes.firstIndex(of: UInt8(ascii: "\n")) {
                    lines.append(String(decoding: bytes[..<newline], as: UTF8.self))
                    bytes.removeSubrange(...newline)
                }
                if bytes.count > 16_384 {
                    lines.append(String(decoding: bytes, as: UTF8.self))
                    bytes.removeAll()
                }
                return lines
            }
            for line in lines {
                logger.info("external component output", metadata: ["stream": "\(stream)", "line": "\(line)"])
            }
        }
    }
}
