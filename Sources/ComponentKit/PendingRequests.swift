import NIOCore
import Synchronization
import XMPPCore

/// IQ requests waiting for their answer, by id.
///
/// An answer completes a request only when its `from` is the address the request went
/// to (RFC 6120 §8.1.2.1: a result from anyone else is not the answer). Requests sent
/// without `to` accept an answer from no address or from the server's domain.
final class PendingRequests: Sendable {
    private struct Entry: Sendable {
        /// Runs once: where the answer is read (the event loop) or with the failure.
        var completion: @Sendable (Result<IQ, any Error>) -> Void
        var expectedFrom: JID?
        var timeout: Scheduled<Void>?
        var stream: ObjectIdentifier?
    }

    private let entries = Mutex<[String: Entry]>([:])
    private let serverDomain: Mutex<JID?>
    private let counter = Atomic<UInt64>(0)
    private let prefix: String

    /// The server's domain changed (a transfer with `<domain/>`): answers from it are the server's.
    func setServerDomain(_ domain: String) {
        self.serverDomain.withLock { $0 = try? JID(domain) }
    }

    init(serverDomain: String) {
        self.serverDomain = Mutex(try? JID(serverDomain))
        let random = UInt32.random(in: 0...UInt32.max)
        self.prefix = "ck" + String(random, radix: 36)
    }

    /// Whether `id` was made by ``makeID()``: an answer to one of this connection's own
    /// requests (a late one, when it no longer completes anything).
    func isOwnID(_ id: String) -> Bool {
        id.utf8.count > self.prefix.utf8.count && id.hasPrefix(self.prefix)
            && id.utf8[id.utf8.index(id.utf8.startIndex, offsetBy: self.prefix.utf8.count)] == UInt8(ascii: "-")
    }

    /// A new id, unique within this connection's life.
    func makeID() -> String {
        let value = self.counter.add(1, ordering: .relaxed).newValue
        return "\(self.prefix)-\(value)"
    }

    var count: Int {
        self.entries.withLock { $0.count }
    }

    func register(
        id: String, expectedFrom: String?, stream: ObjectIdentifier? = nil,
        continuation: CheckedContinuation<IQ, any Error>
    ) -> Bool {
        self.register(id: id, expectedFrom: expectedFrom, stream: stream) { continuation.resume(with: $0) }
    }

    /// Registers a request whose outcome goes to `completion`, called exactly once (from
    /// ``complete(with:)`` for the answer, on the thread that read it).
    func register(
        id: String, expectedFrom: String?, stream: ObjectIdentifier? = nil,
        completion: @escaping @Sendable (Result<IQ, any Error>) -> Void
    ) -> Bool {
        let expected = expectedFrom.flatMap { try? JID($0) }
        return self.entries.withLock { entries in
            guard entries[id] == nil else { return false }
            entries[id] = Entry(completion: completion, expectedFrom: expected, timeout: nil, stream: stream)
            return true
        }
    }

    func setTimeout(id: String, _ scheduled: Scheduled<Void>) {
        let cancelNow = self.entries.withLock { entries -> Bool in
            guard entries[id] != nil else { return true }
            entries[id]?.timeout = scheduled
            return false
        }
        if cancelNow {
            scheduled.cancel()
        }
    }

    /// Completes the request this answer belongs to. Returns `false` when the IQ answers
    /// no pending request (unknown id, or an answer from the wrong address).
    func complete(with iq: IQ) -> Bool {
        let id = iq.requestID
        let from = iq.element["from"].flatMap { try? JID($0) }
        let entry = self.entries.withLock { entries -> Entry? in
            guard let entry = entries[id] else { return nil }
            if let expected = entry.expectedFrom {
                guard let from, from == expected else { return nil }
            } else if let from, from != self.serverDomain.withLock({ $0 }) {
                return nil
            }
            return entries.removeValue(forKey: id)
        }
        guard let entry else { return false }
        entry.timeout?.cancel()
        entry.completion(.success(iq))
        return true
    }

    func fail(id: String, _ error: any Error) {
        let entry = self.entries.withLock { $0.removeValue(forKey: id) }
        entry?.timeout?.cancel()
        entry?.completion(.failure(error))
    }

    /// Fails every request (or only those sent on one stream).
    func failAll(_ error: any Error, stream: ObjectIdentifier? = nil) {
        let all = self.entries.withLock { entries -> [Entry] in
            guard let stream else {
                let values = Array(entries.values)
                entries.removeAll()
                return values
            }
            let ids = entries.filter { $0.value.stream == stream }.map(\.key)
            return ids.compactMap { entries.removeValue(forKey: $0) }
        }
        for entry in all {
            entry.timeout?.cancel()
            entry.completion(.failure(error))
        }
    }
}

/// Records whether an incoming IQ request has been answered, so that it is answered
/// exactly once.
final class IQReplyTracker: Sendable {
    let requestID: String
    private let answered = Atomic<Bool>(false)

    init(requestID: String) {
        self.requestID = requestID
    }

    /// Marks the request answered; `false` if it already was.
    func markAnswered() -> Bool {
        self.answered.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged
    }

    var isAnswered: Bool {
        self.answered.load(ordering: .relaxed)
    }
}
