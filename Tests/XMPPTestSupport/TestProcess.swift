public import Foundation

/// A server or tool started by a test: a Foundation `Process` whose output goes to a file,
/// with bounded waits, and termination by process ID (SIGTERM, then SIGKILL after a grace
/// period) that always reaps the process.
///
/// Every started process is recorded in ``TestProcessRegistry``, which kills what is left
/// (with its descendants) when the test process exits.
///
/// A runner that dies without exiting (SIGKILL, a crash) leaves nothing behind either:
/// - each process leads a process group of its own (Foundation starts children so), with a
///   parent-death signal (`setpriv --pdeathsig KILL`) set from a thread that lives
///   as long as the runner (the signal follows the thread that spawned the child);
/// - a reaper (``TestProcessReaper``) kills every such group when the runner's end of a
///   pipe closes, which also catches the grandchildren a parent-death signal does not reach
///   (`beam.smp` under `ejabberdctl`).
///
/// Every process carries ``TestProcessRegistry/runMarker`` in its environment, so the end
/// of the run can check that none of them outlived it.
public final class TestProcess: @unchecked Sendable {
    // @unchecked: the mutable state is guarded by `lock`; `process` is only run/killed under it.
    private let process = Process()
    private let lock = NSLock()
    private var started = false
    private var knownDescendants: [ProcessTree.Identity] = []
    private var rootIdentity: ProcessTree.Identity?

    /// The program's path.
    public let executable: String
    /// The program's arguments.
    public let arguments: [String]
    /// The file that receives standard output (and standard error, unless ``errorPath`` is set).
    public let outputPath: String
    /// The file that receives standard error, when it is kept apart.
    public let errorPath: String?

    /// Describes a process; nothing runs until ``start()``.
    /// - Parameters:
    ///   - executable: The program's absolute path.
    ///   - arguments: Its arguments.
    ///   - environment: Its complete environment, or `nil` to inherit this process's.
    ///   - workingDirectory: Its working directory, or `nil`.
    ///   - outputPath: The file for its standard output and standard error (created or truncated).
    ///   - errorPath: A separate file for its standard error, or `nil` to use `outputPath`.
    public init(
        executable: String, arguments: [String], environment: [String: String]? = nil,
        workingDirectory: String? = nil, outputPath: String, errorPath: String? = nil
    ) {
        self.executable = executable
        self.arguments = arguments
        self.outputPath = outputPath
        self.errorPath = errorPath
        // setpriv --pdeathsig: SIGKILL when the spawning thread (the runner) dies. When the
        // command is itself `setpriv --reuid …` (a server run as its own user), the signal
        // goes into that invocation: a change of user clears an earlier one. (Foundation
        // already starts every child as the leader of a process group of its own, which the
        // reaper kills as a whole; `setsid` would fork there and lose the process.)
        self.process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        if executable == "/usr/bin/setpriv" {
            self.process.arguments = ["--pdeathsig", "KILL"] + arguments
        } else {
            self.process.arguments = ["--pdeathsig", "KILL", "--", executable] + arguments
        }
        var environment = environment ?? ProcessInfo.processInfo.environment
        environment[TestProcessRegistry.runMarkerName] = TestProcessRegistry.runMarker
        self.process.environment = environment
        if let workingDirectory { self.process.currentDirectoryURL = URL(fileURLWithPath: workingDirectory) }
    }

    /// The command line, for messages.
    public var commandLine: String { ([self.executable] + self.arguments).joined(separator: " ") }

    /// The process ID, or 0 before ``start()``.
    public var pid: pid_t { self.process.processIdentifier }

    /// Whether the process has been started and has not exited.
    public var isRunning: Bool {
        self.lock.withLock { self.started && self.process.isRunning }
    }

    /// The exit status, or `nil` while running or before ``start()``.
    public var terminationStatus: Int32? {
        self.lock.withLock { self.started && !self.process.isRunning ? self.process.terminationStatus : nil }
    }

    /// Starts the process and registers it for clean-up at exit.
    /// - Throws: ``TestSupportError`` when the output file cannot be opened or the program cannot be run.
    public func start() throws {
        try self.lock.withLock {
            guard !self.started else { throw TestSupportError("\(self.commandLine) was already started") }
            guard FileManager.default.createFile(atPath: self.outputPath, contents: nil),
                let output = FileHandle(forWritingAtPath: self.outputPath)
            else { throw TestSupportError("cannot create \(self.outputPath)") }
            defer { try? output.close() }
            self.process.standardOutput = output
            var error: FileHandle?
            if let errorPath = self.errorPath {
                guard FileManager.default.createFile(atPath: errorPath, contents: nil) else {
                    throw TestSupportError("cannot create \(errorPath)")
                }
                error = FileHandle(forWritingAtPath: errorPath)
            }
            defer { try? error?.close() }
            self.process.standardError = error ?? output
            self.process.standardInput = FileHandle.nullDevice
            // posix_spawn hands the calling thread's signal mask to the child, and the threads
            // tests run on block nearly every signal (SIGTERM included): a server started from
            // one would ignore SIGTERM. Run with an empty mask, then restore it.
            // The spawner thread runs with an empty mask and never exits (see the type's notes).
            let process = self.process
            let result = TestProcessSpawner.shared.run {
                Result { try process.run() }
            }
            if case .failure(let error) = result {
                throw TestSupportError("cannot run \(self.commandLine): \(error)")
            }
            self.started = true
            self.rootIdentity = ProcessTree.identity(of: self.process.processIdentifier)
        }
        TestProcessRegistry.shared.add(self)
        TestProcessReaper.shared.watch(group: self.process.processIdentifier)
    }

    /// The process and its live descendants now, plus the descendants seen before (which
    /// ``terminate(grace:)`` also stops), so a test can later check that none is alive.
    public func processIdentities() -> [ProcessTree.Identity] {
        self.lock.withLock {
            self.refreshDescendantsLocked()
            return (self.rootIdentity.map { [$0] } ?? []) + self.knownDescendants
        }
    }

    /// The captured output so far (standard output and error).
    public var output: String {
        (try? String(contentsOfFile: self.outputPath, encoding: .utf8)) ?? ""
    }

    /// Waits until the process exits on its own.
    /// - Parameter timeout: The longest wait.
    /// - Returns: The exit status.
    /// - Throws: ``TestSupportError`` when it is still running at the deadline (it is then left running).
    @discardableResult
    public func waitForExit(timeout: Duration) async throws -> Int32 {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let status = self.terminationStatus {
                self.process.waitUntilExit()
                self.forget()
                return status
            }
            if ContinuousClock.now >= deadline {
                throw TestSupportError("\(self.commandLine) did not exit within \(timeout); output:\n\(self.output.tail())")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Stops the process: SIGTERM, then SIGKILL after `grace` for it and every descendant
    /// still alive, then reaps it. Returns once it has exited. Safe to call more than once.
    /// - Parameter grace: How long SIGTERM may take.
    public func terminate(grace: Duration = .seconds(5)) {
        let (root, descendants): (ProcessTree.Identity?, [ProcessTree.Identity]) = self.lock.withLock {
            guard self.started else { return (nil, []) }
            self.refreshDescendantsLocked()
            return (self.rootIdentity, self.knownDescendants)
        }
        guard self.lock.withLock({ self.started }) else { return }
        if let root, self.process.isRunning {
            ProcessTree.signal(root, SIGTERM)
        }
        let deadline = ContinuousClock.now + grace
        while ContinuousClock.now < deadline,
            self.process.isRunning || descendants.contains(where: ProcessTree.isAlive)
        {
            usleep(20_000)
        }
        self.kill(descendants: descendants)
        self.process.waitUntilExit()
        self.forget()
    }

    /// Kills the process and every descendant at once with SIGKILL and reaps it.
    public func kill() {
        let descendants: [ProcessTree.Identity] = self.lock.withLock {
            guard self.started else { return [] }
            self.refreshDescendantsLocked()
            return self.knownDescendants
        }
        guard self.lock.withLock({ self.started }) else { return }
        self.kill(descendants: descendants)
        self.process.waitUntilExit()
        self.forget()
    }

    /// After the process was reaped: kill what is left of its group, and stop tracking it.
    private func forget() {
        let group = self.process.processIdentifier
        _ = Glibc.kill(-group, SIGKILL)
        TestProcessReaper.shared.forget(group: group)
        TestProcessRegistry.shared.remove(self)
    }

    private func kill(descendants: [ProcessTree.Identity]) {
        if let root = self.rootIdentity, self.process.isRunning {
            ProcessTree.signal(root, SIGKILL)
        }
        for identity in descendants {
            ProcessTree.signal(identity, SIGKILL)
        }
        // SIGKILL is delivered when the target next runs; on a loaded machine that can be a
        // moment later. Return only once the descendants are really gone (bounded).
        let deadline = ContinuousClock.now + .seconds(5)
        while descendants.contains(where: ProcessTree.isAlive), ContinuousClock.now < deadline {
            usleep(5_000)
        }
    }

    private func refreshDescendantsLocked() {
        guard self.started, self.process.isRunning else { return }
        for identity in ProcessTree.descendants(of: self.process.processIdentifier)
        where !self.knownDescendants.contains(identity) {
            self.knownDescendants.append(identity)
        }
    }

    /// Called at exit by the registry: SIGKILL for the process and its descendants, no waiting.
    fileprivate func killAtExit() {
        let descendants = self.lock.withLock { () -> [ProcessTree.Identity] in
            self.refreshDescendantsLocked()
            return self.knownDescendants
        }
        self.kill(descendants: descendants)
    }
}

/// Every ``TestProcess`` that was started and not yet stopped. When the test process exits
/// (`atexit`), the registry kills each of them and their descendants by process ID, so no
/// server outlives the tests that started it.
public final class TestProcessRegistry: @unchecked Sendable {
    // @unchecked: `processes` is guarded by `lock`.
    /// The registry of this process.
    public static let shared: TestProcessRegistry = {
        let registry = TestProcessRegistry()
        atexit { TestProcessRegistry.shared.checkAtExit() }
        return registry
    }()

    /// At the runner's exit: every process a test started and did not stop is a cleanup that
    /// was skipped; every process of this run still alive after that is one that outlived the
    /// suite. Both are killed, reported on stderr, and fail the run (exit status 1).
    private func checkAtExit() {
        let leaked = self.running.filter(\.isRunning).map(\.commandLine)
        self.killAll()
        // Not registered, yet of this run: a descendant that escaped its process group, or
        // a process whose test forgot it in a way the registry could not see.
        let outlived = Self.survivors()
        outlived.forEach { ProcessTree.signal($0, SIGKILL) }
        guard !leaked.isEmpty || !outlived.isEmpty else { return }
        var report = "XMPPTestSupport: processes started by this test run were not stopped by their tests:\n"
        for command in leaked { report += "  left running (killed at exit): \(command)\n" }
        for identity in outlived { report += "  outlived its test (killed at exit): \(identity)\n" }
        FileHandle.standardError.write(Data(report.utf8))
        _exit(1)
    }

    private let lock = NSLock()
    private var processes: [ObjectIdentifier: TestProcess] = [:]

    fileprivate func add(_ process: TestProcess) {
        self.lock.withLock { self.processes[ObjectIdentifier(process)] = process }
    }

    fileprivate func remove(_ process: TestProcess) {
        _ = self.lock.withLock { self.processes.removeValue(forKey: ObjectIdentifier(process)) }
    }

    /// The processes still registered.
    public var running: [TestProcess] {
        self.lock.withLock { Array(self.processes.values) }
    }

    /// Kills every registered process and its descendants with SIGKILL.
    public func killAll() {
        let all = self.lock.withLock { () -> [TestProcess] in
            defer { self.processes.removeAll() }
            return Array(self.processes.values)
        }
        for process in all {
            process.killAtExit()
        }
    }
}

extension String {
    /// The last `lines` lines, for error messages.
    func tail(_ lines: Int = 40) -> String {
        self.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
    }
}

/// Runs a short command to completion with a deadline and returns its status and output.
/// - Parameters:
///   - executable: The program.
///   - arguments: Its arguments.
///   - environment: Its environment, or `nil` to inherit.
///   - workingDirectory: Its working directory, or `nil`.
///   - timeout: The deadline; the command is killed by PID when it passes.
/// - Returns: The exit status and the combined output.
/// - Throws: ``TestSupportError`` when it cannot run or times out.
public func runCommand(
    _ executable: String, _ arguments: [String], environment: [String: String]? = nil,
    workingDirectory: String? = nil, timeout: Duration = .seconds(30)
) async throws -> (status: Int32, output: String) {
    let directory = try TemporaryDirectory(prefix: "xmpp-test-cmd")
    let process = TestProcess(
        executable: executable, arguments: arguments, environment: environment,
        workingDirectory: workingDirectory, outputPath: directory.path("output"))
    try process.start()
    do {
        let status = try await process.waitForExit(timeout: timeout)
        return (status, process.output)
    } catch {
        process.kill()
        throw error
    }
}
