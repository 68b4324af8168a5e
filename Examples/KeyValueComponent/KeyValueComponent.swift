public import ComponentKit
import Synchronization
public import XMPPCore

/// A tiny key-value store on its own hostname: shows state, message commands, IQ
/// queries in a custom namespace, and service discovery, routed with a
/// ``ComponentKit/StanzaRouter``.
///
/// Messages (chat or normal) are commands, answered with a message:
///
/// ```
/// set colour blue   → ok
/// get colour        → blue
/// del colour        → deleted
/// keys              → colour, size
/// ```
///
/// IQs in ``namespace`` read and write the same store:
///
/// ```xml
/// <iq type='get' to='kv.example.com' id='1'>
///   <query xmlns='urn:example:kv'><item key='colour'/></query>
/// </iq>
/// <!-- result: <query xmlns='urn:example:kv'><item key='colour'>blue</item></query> -->
/// <iq type='set' to='kv.example.com' id='2'>
///   <query xmlns='urn:example:kv'><item key='colour'>green</item></query>
/// </iq>
/// ```
///
/// A missing key is `item-not-found`; a write to a read-only store, or from a sender not in
/// ``Limits/writers``, is `forbidden`; a write beyond ``Limits/maxKeys`` is
/// `resource-constraint`, and a key or value over ``Limits/maxKeyBytes`` or
/// ``Limits/maxValueBytes`` is `not-acceptable`. Examples get copied into production, so
/// every input is bounded by default.
public struct KeyValueComponent: ComponentHandler {
    /// The namespace of the IQ queries: `urn:example:kv`.
    public static let namespace = "urn:example:kv"

    /// What the store accepts; can change while it runs.
    public struct Limits: Hashable, Sendable {
        /// The most keys the store holds.
        public var maxKeys: Int
        /// Whether writes are refused.
        public var readOnly: Bool

        /// The longest key, in UTF-8 bytes (default 256).
        public var maxKeyBytes: Int
        /// The longest value, in UTF-8 bytes (default 4096).
        public var maxValueBytes: Int
        /// The bare JIDs (or domains) allowed to write; `nil` lets anyone write. A sender
        /// matches by its bare JID, or by its domain when the entry is a domain.
        public var writers: [JID]?

        /// Creates limits.
        /// - Parameters:
        ///   - maxKeys: The most keys the store holds.
        ///   - readOnly: Whether writes are refused.
        ///   - maxKeyBytes: The longest key, in UTF-8 bytes.
        ///   - maxValueBytes: The longest value, in UTF-8 bytes.
        ///   - writers: The JIDs allowed to write, or `nil` for anyone.
        public init(
            maxKeys: Int = 1000, readOnly: Bool = false, maxKeyBytes: Int = 256, maxValueBytes: Int = 4096,
            writers: [JID]? = nil
        ) {
            self.maxKeys = maxKeys
            self.readOnly = readOnly
            self.maxKeyBytes = maxKeyBytes
            self.maxValueBytes = maxValueBytes
            self.writers = writers
        }

        /// Whether `sender` may write: always when ``writers`` is `nil`.
        /// - Parameter sender: The stanza's `from`, or `nil` when unknown (never a writer then).
        public func allowsWriter(_ sender: JID?) -> Bool {
            guard let writers = self.writers else { return true }
            guard let sender else { return false }
            return writers.contains { writer in
                writer.localpart == nil ? writer.domainpart == sender.domainpart : writer.bare == sender.bare
            }
        }
    }

    /// The store: shared by every hostname this handler is bound to.
    public let store: Store
    private let router: StanzaRouter

    /// Creates a component with an empty store.
    /// - Parameter limits: The store's limits.
    public init(limits: Limits = Limits()) {
        let store = Store(limits: limits)
        self.store = store
        var router = StanzaRouter(identity: .init(category: "component", type: "generic", name: "Key-value store"))
        // `urn:example:kv` is advertised in disco#info because it has routes.
        router.iq(.get, Self.namespace) { iq, _ in
            guard let query = iq.payload else { throw StanzaError(.badRequest) }
            return try store.answer(query, isSet: false, from: iq.from)
        }
        router.iq(.set, Self.namespace) { iq, _ in
            guard let query = iq.payload else { throw StanzaError(.badRequest) }
            return try store.answer(query, isSet: true, from: iq.from)
        }
        router.message { message, context in
            guard let body = message.body else { return }
            try await context.send(message.reply(body: store.command(body, from: message.from)))
        }
        self.router = router
    }

    /// Advertises `urn:example:kv` and a `component/generic` identity named "Key-value store".
    public var discoInfo: DiscoInfo {
        self.router.discoInfo
    }

    /// Answers command messages and `urn:example:kv` IQs; leaves other IQs to the
    /// built-ins (disco, ping, version) or `service-unavailable`.
    public func handle(_ stanza: Stanza, in context: ComponentContext) async throws {
        try await self.router.handle(stanza, in: context)
    }

    /// The store itself, with the command and query logic (no I/O: tests call it directly).
    public final class Store: Sendable {
        private struct State {
            var values: [String: String] = [:]
            var limits: Limits
        }

        private let state: Mutex<State>

        /// Creates an empty store.
        /// - Parameter limits: Its limits.
        public init(limits: Limits) {
            self.state = Mutex(State(limits: limits))
        }

        /// The current limits.
        public var limits: Limits {
            get { self.state.withLock { $0.limits } }
            set { self.state.withLock { $0.limits = newValue } }
        }

        /// The value of a key.
        public func value(_ key: String) -> String? {
            self.state.withLock { $0.values[key] }
        }

        /// Sets a key.
        /// - Throws: `forbidden` when read-only; `not-acceptable` when the key or the value is
        ///   too long; `resource-constraint` when full.
        public func set(_ key: String, _ value: String) throws(StanzaError) {
            try self.state.withLock { (state: inout State) throws(StanzaError) in
                guard !state.limits.readOnly else {
                    throw StanzaError(.forbidden, text: "this store is read-only")
                }
                guard !key.isEmpty, key.utf8.count <= state.limits.maxKeyBytes else {
                    throw StanzaError(.notAcceptable, text: "a key is 1 to \(state.limits.maxKeyBytes) bytes")
                }
                guard value.utf8.count <= state.limits.maxValueBytes else {
                    throw StanzaError(.notAcceptable, text: "a value is at most \(state.limits.maxValueBytes) bytes")
                }
                guard state.values[key] != nil || state.values.count < state.limits.maxKeys else {
                    throw StanzaError(.resourceConstraint, text: "the store holds at most \(state.limits.maxKeys) keys")
                }
                state.values[key] = value
            }
        }

        /// Deletes a key; returns whether it existed.
        /// - Throws: `forbidden` when read-only.
        @discardableResult
        public func delete(_ key: String) throws(StanzaError) -> Bool {
            try self.state.withLock { (state: inout State) throws(StanzaError) -> Bool in
                guard !state.limits.readOnly else {
                    throw StanzaError(.forbidden, text: "this store is read-only")
                }
                return state.values.removeValue(forKey: key) != nil
            }
        }

        /// The keys, sorted.
        public var keys: [String] {
            self.state.withLock { $0.values.keys.sorted() }
        }

        /// Runs a message command and returns the reply text.
        /// - Parameter body: `set KEY VALUE…`, `get KEY`, `del KEY`, `keys` or `help`.
        /// Runs a message command from `sender` and returns the reply text; `set` and `del`
        /// need a sender in ``Limits/writers`` (when configured).
        /// - Parameters:
        ///   - body: `set KEY VALUE…`, `get KEY`, `del KEY`, `keys` or `help`.
        ///   - sender: The message's `from`.
        public func command(_ body: String, from sender: JID?) -> String {
            let words = body.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: true).map(String.init)
            do {
                switch (words.first?.lowercased(), words.count) {
                case ("set", 3):
                    try self.checkWriter(sender)
                    try self.set(words[1], words[2])
                    return "ok"
                case ("get", 2):
                    return self.value(words[1]) ?? "(not set)"
                case ("del", 2):
                    try self.checkWriter(sender)
                    return try self.delete(words[1]) ? "deleted" : "(not set)"
                case ("keys", 1):
                    let keys = self.keys
                    return keys.isEmpty ? "(empty)" : keys.joined(separator: ", ")
                default:
                    return "commands: set KEY VALUE, get KEY, del KEY, keys"
                }
            } catch {
                return "error: \(error.text ?? error.condition.rawValue)"
            }
        }

        /// Answers a query without a known sender (a `set` is then allowed only when
        /// ``Limits/writers`` is `nil`).
        /// - Parameters:
        ///   - query: The query element.
        ///   - isSet: Whether the IQ is a `set`.
        /// - Returns: The result's payload (`get`), or `nil` (`set`).
        /// - Throws: A ``XMPPCore/StanzaError`` to answer with.
        public func answer(_ query: Element, isSet: Bool) throws(StanzaError) -> Element? {
            try self.answer(query, isSet: isSet, from: nil)
        }

        /// Runs a message command without a known sender: allowed only when ``Limits/writers``
        /// is `nil` for writes.
        /// - Parameter body: `set KEY VALUE…`, `get KEY`, `del KEY`, `keys` or `help`.
        public func command(_ body: String) -> String {
            self.command(body, from: nil)
        }

        private func checkWriter(_ sender: JID?) throws(StanzaError) {
            guard self.limits.allowsWriter(sender) else {
                throw StanzaError(.forbidden, text: "only the configured writers may change this store")
            }
        }

        /// Answers a `<query xmlns='urn:example:kv'>` of a `get` or `set` IQ.
        /// - Parameters:
        ///   - query: The query element.
        ///   - isSet: Whether the IQ is a `set`.
        ///   - sender: The IQ's `from` (a `set` needs a sender in ``Limits/writers``, when configured).
        /// - Returns: The result's payload (`get`), or `nil` (`set`).
        /// - Throws: A ``XMPPCore/StanzaError`` to answer with.
        public func answer(_ query: Element, isSet: Bool, from sender: JID?) throws(StanzaError) -> Element? {
            let items = query.children("item", namespace: KeyValueComponent.namespace)
            guard !items.isEmpty, items.allSatisfy({ $0["key"] != nil }) else {
                throw StanzaError(.badRequest, text: "expected <item key='…'/> children")
            }
            guard items.count <= self.limits.maxKeys else {
                throw StanzaError(.resourceConstraint, text: "at most \(self.limits.maxKeys) items per query")
            }
            if isSet {
                try self.checkWriter(sender)
                for item in items {
                    try self.set(item["key"]!, item.text)
                }
                return nil
            }
            var found: [Element] = []
            for item in items {
                let key = item["key"]!
                guard let value = self.value(key) else {
                    throw StanzaError(.itemNotFound, text: "no key '\(key)'")
                }
                found.append(Element("item", namespace: KeyValueComponent.namespace, attributes: ["key": key], text: value))
            }
            return Element("query", namespace: KeyValueComponent.namespace, children: found)
        }
    }
}
