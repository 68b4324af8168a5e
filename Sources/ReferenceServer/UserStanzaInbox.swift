import Synchronization
public import XMPPCore

/// What a ``ReferenceServer`` delivers to its users, collected in the background so that
/// a test or the demo can wait for one answer with a bounded wait.
///
/// ```swift
/// let inbox = UserStanzaInbox(server)
/// try server.inject(message.element)
/// let answer = try await inbox.take(id: "m1", timeout: .seconds(10))
/// ```
public final class UserStanzaInbox: Sendable {
    private let elements = ElementList()
    private let task: Task<Void, Never>

    /// Starts collecting what `server` delivers to users from now on.
    /// - Parameter server: The server.
    public init(_ server: ReferenceServer) {
        let stream = server.userStanzas()
        let elements = self.elements
        self.task = Task {
            for await element in stream {
                elements.append(element)
            }
        }
    }

    /// Removes and returns the first collected stanza with this `id`, waiting up to `timeout`.
    /// - Parameters:
    ///   - id: The stanza id to wait for.
    ///   - timeout: The longest wait.
    /// - Returns: The stanza, or `nil` when none arrived in time.
    public func take(id: String, timeout: Duration) async throws -> Element? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let element = self.elements.remove(where: { $0["id"] == id }) { return element }
            try await Task.sleep(for: .milliseconds(5))
        }
        return nil
    }

    deinit {
        self.task.cancel()
    }
}

private final class ElementList: Sendable {
    private let elements = Mutex<[Element]>([])

    func append(_ element: Element) {
        self.elements.withLock { $0.append(element) }
    }

    func remove(where predicate: (Element) -> Bool) -> Element? {
        self.elements.withLock { elements in
            guard let index = elements.firstIndex(where: predicate) else { return nil }
            return elements.remove(at: index)
        }
    }
}
