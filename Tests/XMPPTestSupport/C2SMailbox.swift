import Foundation
import NIOCore
import XMPPCore

/// The stanzas a ``C2SClient`` received and not yet taken, the tasks waiting for one, and
/// the pending IQ requests. Fed on the event loop, drained by async callers.
final class C2SMailbox: @unchecked Sendable {
    // @unchecked: every field is guarded by `lock`.
    private struct Waiter {
        var predicate: @Sendable (Element) -> Bool
        var continuation: CheckedContinuation<Element, any Error>
        var timeout: Task<Void, Never>?
    }

    private let lock = NSLock()
    private var buffer: [Element] = []
    private var waiters: [UInt64: Waiter] = [:]
    private var pendingRequests: [String: UInt64] = [:]
    private var nextWaiter: UInt64 = 0
    private var closedError: C2SClientError?

    /// Delivers a received stanza: to the request waiting for this IQ answer, else to the
    /// first waiter it matches, else to the buffer.
    func deliver(_ element: Element) {
        let resume: (CheckedContinuation<Element, any Error>, Task<Void, Never>?)? = self.lock.withLock {
            if element.name.localName == "iq", let type = element["type"], type == "result" || type == "error",
                let id = element["id"], let waiterID = self.pendingRequests.removeValue(forKey: id),
                let waiter = self.waiters.removeValue(forKey: waiterID)
            {
                return (waiter.continuation, waiter.timeout)
            }
            let candidates = self.waiters.filter { !self.pendingRequests.values.contains($0.key) }.sorted { $0.key < $1.key }
            for (id, waiter) in candidates where waiter.predicate(element) {
                self.waiters.removeValue(forKey: id)
                return (waiter.continuation, waiter.timeout)
            }
            self.buffer.append(element)
            return nil
        }
        if let (continuation, timeout) = resume {
            timeout?.cancel()
            continuation.resume(returning: element)
        }
    }

    /// Ends the mailbox: every waiter and every later wait fails with `error` (buffered
    /// stanzas can still be taken).
    func close(_ error: C2SClientError) {
        let waiters: [Waiter] = self.lock.withLock {
            if self.closedError == nil { self.closedError = error }
            defer {
                self.waiters.removeAll()
                self.pendingRequests.removeAll()
            }
            return Array(self.waiters.values)
        }
        for waiter in waiters {
            waiter.timeout?.cancel()
            waiter.continuation.resume(throwing: error)
        }
    }

    /// Waits for the first buffered or incoming stanza that matches.
    /// - Parameters:
    ///   - requestID: For an IQ request: the id whose answer is awaited (answers go to it first).
    ///   - timeout: The deadline.
    ///   - predicate: Which stanza.
    func next(
        requestID: String? = nil, timeout: Duration, what: String, where predicate: @escaping @Sendable (Element) -> Bool
    ) async throws -> Element {
        let id: UInt64 = self.lock.withLock {
            self.nextWaiter += 1
            return self.nextWaiter
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Element, any Error>) in
                let immediate: Result<Element, any Error>? = self.lock.withLock {
                    if let index = self.buffer.firstIndex(where: predicate) {
                        return .success(self.buffer.remove(at: index))
                    }
                    if let error = self.closedError { return .failure(error) }
                    if Task.isCancelled { return .failure(CancellationError()) }
                    let timer = Task { [weak self] in
                        guard (try? await Task.sleep(for: timeout)) != nil else { return }
                        self?.expire(id, C2SClientError(.timeout, "no \(what) within \(timeout)"))
                    }
                    self.waiters[id] = Waiter(predicate: predicate, continuation: continuation, timeout: timer)
                    if let requestID { self.pendingRequests[requestID] = id }
                    return nil
                }
                if let immediate { continuation.resume(with: immediate) }
            }
        } onCancel: {
            self.expire(id, CancellationError())
        }
    }

    /// Takes every buffered stanza (received and not yet taken), in arrival order.
    func drain() -> [Element] {
        self.lock.withLock {
            defer { self.buffer.removeAll() }
            return self.buffer
        }
    }

    private func expire(_ id: UInt64, _ error: any Error) {
        let waiter: Waiter? = self.lock.withLock {
            if let key = self.pendingRequests.first(where: { $0.value == id })?.key {
                self.pendingRequests.removeValue(forKey: key)
            }
            return self.waiters.removeValue(forKey: id)
        }
        waiter?.timeout?.cancel()
        waiter?.continuation.resume(throwing: error)
    }
}
