import NIOCore

/// A `TaskExecutor` that runs jobs on one NIO event loop (the host connection's): the
/// external listener's sessions run there, beside the connection, so a relayed stanza is
/// read, sent upstream and written without waking another thread.
final class LoopTaskExecutor: TaskExecutor, @unchecked Sendable {
    // @unchecked: `eventLoop` is immutable and event loops are thread-safe.
    let eventLoop: any EventLoop

    init(_ eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        self.eventLoop.execute {
            job.runSynchronously(on: self.asUnownedTaskExecutor())
        }
    }
}
