package import NIOCore

/// A `TaskExecutor` that runs jobs on one NIO event loop.
///
/// Each hostname's handler loop runs with this executor as its preference (SE-0417): the
/// handler's `async` code then runs on the thread that reads the stream, so a stanza is
/// routed, handled and answered without waking another thread. NIO 2.101's `EventLoop`
/// is a `SerialExecutor` but not a `TaskExecutor`; this adapter is the missing piece.
///
/// Measured (see Benchmarks/README.md and ../shared/PERFORMANCE.md): a task hop to the
/// global pool per stanza cost ~2.5 context switches and ~50 µs per echo; running on the
/// loop, with a whole read taken per wake-up, costs none. `component-host`'s external
/// listener (another module of this package) runs its sessions on it too.
package final class EventLoopTaskExecutor: TaskExecutor, @unchecked Sendable {
    // @unchecked: `eventLoop` is immutable and event loops are thread-safe.
    package let eventLoop: any EventLoop

    package init(_ eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    package func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        self.eventLoop.execute {
            job.runSynchronously(on: self.asUnownedTaskExecutor())
        }
    }
}
