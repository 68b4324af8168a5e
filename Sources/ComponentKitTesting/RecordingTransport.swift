import ComponentKit
import Synchronization
import XMPPCore

/// The ``/ComponentKit/ComponentTransport`` behind a ``TestContext``.
final class RecordingTransport: ComponentTransport {
    struct State: Sendable {
        var sent: [Stanza] = []
        var requests: [IQ] = []
        var bound: [(hostname: String, handler: any ComponentHandler)] = []
        var unbound: [String] = []
        var responder: (@Sendable (IQ) -> IQ?)?
        var bindError: (any Error & Sendable)?
        var sendError: (any Error & Sendable)?
        var unclaimed: [PendingRequest] = []
        var requestWaiters: [CheckedContinuation<PendingRequest, Never>] = []
        var nextID = 0
    }

    let hostname: String
    let requestTimeout: Duration
    let state = Mutex(State())

    init(hostname: String, requestTimeout: Duration) {
        self.hostname = hostname
        self.requestTimeout = requestTimeout
    }

    func send(_ stanza: Stanza) async throws {
        try self.state.withLock { state in
            if let error = state.sendError { throw error }
            state.sent.append(stanza)
        }
    }

    func request(_ iq: IQ, timeout: Duration?, redirects: IQRedirectPolicy) async throws -> IQ {
        guard iq.type.isRequest else {
            throw ComponentError(.invalidStanza, "an IQ request must be of type get or set, not \(iq.type.rawValue)")
        }
        var iq = iq
        let slot = AnswerSlot()
        let responder = self.state.withLock { state -> (@Sendable (IQ) -> IQ?)? in
            if iq.element["id"] == nil || iq.requestID.isEmpty {
                state.nextID += 1
                iq.element["id"] = "test-\(state.nextID)"
            }
            state.requests.append(iq)
            return state.responder
        }
        if let responder, let answer = responder(iq) {
            return answer
        }
        let pending = PendingRequest(iq: iq, slot: slot)
        let continuation = self.state.withLock { state -> CheckedContinuation<PendingRequest, Never>? in
            if state.requestWaiters.isEmpty {
                state.unclaimed.append(pending)
                return nil
            }
            return state.requestWaiters.removeFirst()
        }
        continuation?.resume(returning: pending)
        let limit = timeout ?? self.requestTimeout
        let id = iq.requestID
        return try await withThrowingTaskGroup(of: IQ.self) { group in
            group.addTask { try await slot.wait() }
            group.addTask {
                try await Task.sleep(for: limit)
                throw ComponentError(.timeout, "no answer to '\(id)' within \(limit) (answer it with TestContext)")
            }
            defer { group.cancelAll() }
            let answer = try await group.next()!
            self.state.withLock { state in
                state.unclaimed.removeAll { $0.iq.requestID == id }
            }
            return answer
        }
    }

    func bind(_ hostname: String, handler: some ComponentHandler) async throws -> String {
        try self.state.withLock { state in
            if let error = state.bindError { throw error }
            state.bound.append((hostname, handler))
        }
        return hostname
    }

    func unbind(_ hostname: String) async throws {
        self.state.withLock { $0.unbound.append(hostname) }
    }
}

/// One request's answer, set once; waiting is cancellable.
final class AnswerSlot: Sendable {
    private struct State {
        var result: Result<IQ, any Error>?
        var waiter: CheckedContinuation<IQ, any Error>?
        var cancelled = false
    }

    private let state = Mutex(State())

    func resolve(_ result: Result<IQ, any Error>) {
        let waiter = self.state.withLock { state -> CheckedContinuation<IQ, any Error>? in
            guard case .none = state.result else { return nil }
            state.result = result
            let waiter = state.waiter
            state.waiter = nil
            return waiter
        }
        waiter?.resume(with: result)
    }

    func wait() async throws -> IQ {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<IQ, any Error>) in
                let ready = self.state.withLock { state -> Result<IQ, any Error>? in
                    if let result = state.result { return result }
                    if state.cancelled { return .failure(CancellationError()) }
                    state.waiter = continuation
                    return nil
                }
                if let ready {
                    continuation.resume(with: ready)
                }
            }
        } onCancel: {
            let waiter = self.state.withLock { state -> CheckedContinuation<IQ, any Error>? in
                state.cancelled = true
                let waiter = state.waiter
                state.waiter = nil
                return waiter
            }
            waiter?.resume(throwing: CancellationError())
        }
    }
}
