public import Foundation

/// The thread every ``TestProcess`` is spawned from.
///
/// A parent-death signal (`PR_SET_PDEATHSIG`) fires when the *thread* that forked the child
/// ends, not the process. The threads Swift concurrency runs tests on come and go, so a
/// child spawned from one of them could be killed in the middle of a test; this thread
/// lives as long as the runner. It also runs with an empty signal mask, which `posix_spawn`
/// hands to the child (the test threads block SIGTERM, which a server must not ignore).
final class TestProcessSpawner: @unchecked Sendable {
    // @unchecked: `work` and `done` are guarded by `condition`.
    static let shared = TestProcessSpawner()

    private let condition = NSCondition()
    private var work: (@Sendable () -> Void)?
    private var generation = 0
    private var finished = 0

    private init() {
        let thread = Thread { [unowned self] in self.loop() }
        thread.name = "TestProcessSpawner"
        thread.start()
    }

    /// Runs `body` on the spawner thread and returns its result. One at a time.
    func run<T: Sendable>(_ body: @escaping @Sendable () -> T) -> T {
        let box = ResultBox<T>()
        self.condition.lock()
        while self.work != nil { self.condition.wait() }
        self.work = { box.value = body() }
        self.generation += 1
        let mine = self.generation
        self.condition.broadcast()
        while self.finished < mine { self.condition.wait() }
        self.condition.unlock()
        return box.value!
    }

    private func loop() {
        var empty = sigset_t()
        sigemptyset(&empty)
        pthread_sigmask(SIG_SETMASK, &empty, nil)
        while true {
            self.condition.lock()
            while self.work == nil { self.condition.wait() }
            let work = self.work!
            self.condition.unlock()
            work()
            self.condition.lock()
            self.work = nil
            self.finished += 1
            self.condition.broadcast()
            self.condition.unlock()
        }
    }

    private final class ResultBox<T>: @unchecked Sendable {
        // @unchecked: written on the spawner thread before `finished` advances, read after.
        var value: T?
    }
}

/// Kills the process groups of every ``TestProcess`` still alive when the runner goes away,
/// however it goes (a normal exit, a crash, SIGKILL).
///
/// A small shell, in a process group of its own and deaf to SIGINT/SIGTERM/SIGHUP, reads
/// `add PGID` / `remove PGID` lines from a pipe whose only writer is the runner. When the
/// runner dies the pipe reaches end-of-file and the shell sends SIGKILL to every group it
/// still holds, then to every process that carries this run's marker.
public final class TestProcessReaper: @unchecked Sendable {
    // @unchecked: `writer` is guarded by `lock`.
    /// The reaper of this runner (started on first use).
    public static let shared = TestProcessReaper()

    private static let script = """
        trap '' INT TERM HUP PIPE
        groups=' '
        while read -r op group; do
            case "$op" in
                add) groups="$groups$group " ;;
                remove) kept=' '; for g in $groups; do [ "$g" = "$group" ] || kept="$kept$g "; done; groups="$kept" ;;
            esac
        done
        for g in $groups; do kill -KILL "-$g" 2>/dev/null; done
        # Then whatever carries this run's marker and left its group (a daemon's own session).
        sleep 1
        for e in /proc/[0-9]*/environ; do
            if { tr '\\0' '\\n' < "$e"; } 2>/dev/null | grep -qx "XMPP_TEST_STARTED_BY=$0"; then
                p=${e#/proc/}; kill -KILL "${p%/environ}" 2>/dev/null
            fi
        done
        """

    private let lock = NSLock()
    private var writer: Int32 = -1
    /// The reaper's own process ID, or 0 when it could not start.
    public private(set) var pid: pid_t = 0

    private init() {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { return }
        // Close-on-exec: no other child may hold the runner's end (the reaper would then
        // never see end-of-file).
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", Self.script, TestProcessRegistry.runMarker]
        process.standardInput = FileHandle(fileDescriptor: fds[0], closeOnDealloc: false)
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        let started = TestProcessSpawner.shared.run { Result { try process.run() } }
        close(fds[0])
        guard case .success = started else {
            close(fds[1])
            return
        }
        self.writer = fds[1]
        self.pid = process.processIdentifier
    }

    /// Watches a process group (a ``TestProcess``: Foundation makes each child a group leader).
    func watch(group: pid_t) { self.write("add \(group)\n") }

    /// Stops watching a group whose processes are gone.
    func forget(group: pid_t) { self.write("remove \(group)\n") }

    private func write(_ line: String) {
        self.lock.withLock {
            guard self.writer >= 0 else { return }
            let bytes = Array(line.utf8)
            _ = bytes.withUnsafeBytes { Glibc.write(self.writer, $0.baseAddress, $0.count) }
        }
    }
}

extension TestProcessRegistry {
    /// The environment variable every ``TestProcess`` carries (inherited by its descendants),
    /// set to ``runMarker``.
    public static let runMarkerName = "XMPP_TEST_STARTED_BY"

    /// This run's marker: `XMPP_TEST_RUN` from the environment (`scripts/test.sh` sets one
    /// for the whole run and checks at its end that no process carries it), else one made up
    /// for this runner.
    public static let runMarker: String = {
        if let marker = ProcessInfo.processInfo.environment["XMPP_TEST_RUN"], !marker.isEmpty { return marker }
        return "runner-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    }()

    /// Live processes (other than this one and the reaper) whose environment carries `marker`.
    /// Only processes whose environment this runner may read are seen (all of them, as root).
    public static func survivors(marker: String = runMarker) -> [ProcessTree.Identity] {
        let needle = Array("\(runMarkerName)=\(marker)".utf8)
        let me = getpid()
        let reaper = TestProcessReaper.shared.pid
        var found: [ProcessTree.Identity] = []
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = pid_t(entry), pid != me, pid != reaper,
                let data = FileManager.default.contents(atPath: "/proc/\(pid)/environ"),
                let identity = ProcessTree.identity(of: pid)
            else { continue }
            let variables = data.split(separator: 0)
            if variables.contains(where: { Array($0) == needle }) { found.append(identity) }
        }
        return found
    }
}
