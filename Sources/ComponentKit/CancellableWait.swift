import NIOCore
import Synchronization

extension EventLoopFuture where Value == Void {
    /// Waits for the future like `get()`, but returns as soon as the task is cancelled.
    ///
    /// `EventLoopFuture.get()` ignores cancellation, so a task group that races a channel's
    /// `closeFuture` against other events would otherwise never finish after `cancelAll()`.
    func waitIgnoringErrorsUnlessCancelled() async {
        let waiter = OneShotWaiter()
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                waiter.install(continuation)
                self.whenComplete { _ in waiter.resume() }
            }
        } onCancel: {
            waiter.resume()
        }
    }
}

/// A continuation resumed exactly once, by whichever comes first: the event, or
/// cancellation (which may happen before the continuation is installed).
final class OneShotWaiter: Sendable {
    private struct State {
        var continuation: CheckedContinuation<Void, Never>?
        var resumed = false
    }

    private let state = Mutex(State())

    func install(_ continuation: CheckedContinuation<Void, Never>) {
        let resumeNow = self.state.withLock { state -> Bool in
            if state.resumed { return true }
            state.continuation = continuation
            return false
        }
        if resumeNow { continuation.resume() }
    }

    func resume() {
        let continuation = self.state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard !state.resumed else { return nil }
            state.resumed = true
            let continuation = state.continuation
            state.continuation = nil
            return continuation
        }
        continuation?.resume()
    }
}
