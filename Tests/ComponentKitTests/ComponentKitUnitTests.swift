import ComponentKitTesting
import NIOCore
import NIOPosix
import Synchronization
import Testing
import XMPPCore
import XMPPStream

@testable import ComponentKit

@Suite("ComponentKit building blocks")
struct ComponentKitUnitTests {
    @Test(arguments: [
        ("echo.example.com", "echo.example.com"),
        ("user@Echo.Example.com/res", "echo.example.com"),
        ("echo.example.com/instance1", "echo.example.com/instance1"),
        ("Echo.Example.com/Instance1", "echo.example.com/Instance1"),
        ("echo.example.com.", "echo.example.com"),
        ("a@b@c.example/x@y", "c.example"),
    ])
    func routingKey(address: String, key: String) {
        #expect(HostnameKey(address: address)?.description == key)
    }

    @Test func routingKeyOfEmptyDomain() {
        #expect(HostnameKey(address: "user@") == nil)
        #expect(HostnameKey(address: "/res") == nil)
        #expect(HostnameKey("") == nil)
    }

    /// One key for every spelling of a hostname: ComponentKit, the host and its reload plan
    /// all use it.
    @Test func hostnameKeyOfConfiguredHostnames() {
        #expect(HostnameKey("Echo.Example.COM.") == HostnameKey("echo.example.com"))
        #expect(HostnameKey("search.example.com/eu-1") != HostnameKey("search.example.com/EU-1"))
        #expect(HostnameKey("search.example.com/eu-1")?.domainKey == HostnameKey("search.example.com"))
        #expect(HostnameKey("user@example.com") == nil)
        #expect(HostnameKey("search.example.com/eu-1")?.resource == "eu-1")
        #expect(HostnameKey("a.example")! < HostnameKey("a.example/r")!)
    }

    /// A configuration that cannot work safely fails `run()` at once instead of being
    /// retried on every reconnect.
    @Test func runFailsAtOnceOnAnUnsafeConfiguration() async {
        var configuration = ComponentConfiguration(
            host: "127.0.0.1", port: 1, serverDomain: "example.com", identity: "c.example.com", password: Secret("x"))
        configuration.tlsServerName = ""
        let connection = ComponentConnection(configuration: configuration)
        let error = await #expect(throws: ComponentError.self) { try await connection.run() }
        #expect(error?.kind == .invalidConfiguration)
    }

    /// Late answers to the connection's own requests (pings that timed out) are recognised
    /// by their id and never reach a handler.
    @Test func ownRequestIDsAreRecognised() {
        let pending = PendingRequests(serverDomain: "example.com")
        let id = pending.makeID()
        #expect(pending.isOwnID(id))
        #expect(!PendingRequests(serverDomain: "example.com").isOwnID(id), "another connection's id")
        #expect(!pending.isOwnID("user-1"))
        #expect(!pending.isOwnID(String(id.prefix(while: { $0 != "-" }))))
    }

    @Test func pendingRequestAcceptsAnswerOnlyFromTheAddressedEntity() async throws {
        let pending = PendingRequests(serverDomain: "example.com")
        let id = pending.makeID()
        #expect(id != pending.makeID())
        let request = IQ(type: .get, from: try JID("svc.example.com"), to: try JID("user@example.com/r"), id: id)
        let task = Task<IQ, any Error> {
            try await withCheckedThrowingContinuation { continuation in
                #expect(pending.register(id: id, expectedFrom: request.element["to"], continuation: continuation))
            }
        }
        while pending.count == 0 { await Task.yield() }
        // An answer from someone else is not the answer.
        var forged = request.result()
        forged.element["from"] = "mallory@example.com/x"
        #expect(!pending.complete(with: forged))
        // The right sender (normalised: case differences in the domain) is.
        var genuine = request.result()
        genuine.element["from"] = "user@EXAMPLE.com/r"
        #expect(pending.complete(with: genuine))
        let answer = try await task.value
        #expect(answer.requestID == id)
        #expect(pending.count == 0)
    }

    @Test func requestWithoutToAcceptsServerOrNoSender() async throws {
        let pending = PendingRequests(serverDomain: "example.com")
        for from in [nil, "example.com", "other.example.com"] as [String?] {
            let id = pending.makeID()
            let task = Task<IQ?, Never> {
                try? await withCheckedThrowingContinuation { continuation in
                    _ = pending.register(id: id, expectedFrom: nil, continuation: continuation)
                }
            }
            while pending.count == 0 { await Task.yield() }
            var answer = IQ(type: .result, id: id)
            answer.element["from"] = from
            let completed = pending.complete(with: answer)
            #expect(completed == (from != "other.example.com"))
            if !completed {
                pending.fail(id: id, ComponentError(.timeout, "t"))
            }
            _ = await task.value
        }
    }

    @Test func failAllOnOneStreamLeavesOthers() async throws {
        let pending = PendingRequests(serverDomain: "example.com")
        final class Token: Sendable {}
        let a = Token()
        let b = Token()
        let first = Task<Bool, Never> {
            do {
                _ = try await withCheckedThrowingContinuation { continuation in
                    _ = pending.register(id: "1", expectedFrom: nil, stream: ObjectIdentifier(a), continuation: continuation)
                }
                return true
            } catch { return false }
        }
        let second = Task<Bool, Never> {
            do {
                _ = try await withCheckedThrowingContinuation { continuation in
                    _ = pending.register(id: "2", expectedFrom: nil, stream: ObjectIdentifier(b), continuation: continuation)
                }
                return true
            } catch { return false }
        }
        while pending.count < 2 { await Task.yield() }
        pending.failAll(ComponentError(.connectionClosed, "closed"), stream: ObjectIdentifier(a))
        #expect(await first.value == false)
        #expect(pending.count == 1)
        #expect(pending.complete(with: IQ(type: .result, id: "2")))
        #expect(await second.value == true)
        withExtendedLifetime((a, b)) {}
    }

    @Test func replyTrackerAnswersOnce() {
        let tracker = IQReplyTracker(requestID: "q")
        #expect(!tracker.isAnswered)
        #expect(tracker.markAnswered())
        #expect(!tracker.markAnswered())
        #expect(tracker.isAnswered)
    }

    @Test func mailboxIsBoundedInStanzasAndBytesAndHandsOverBatches() async {
        let released = LockedBox(0)
        let mailbox = Mailbox(budget: HostnameBudget(maxStanzas: 4, maxBytes: 1_000)) { bytes in
            released.withLock { $0 += bytes }
        }
        var results: [Mailbox.Offer] = []
        for index in 0..<5 {
            results.append(mailbox.offer(Element("m\(index)", namespace: Namespace.client), size: 10))
        }
        // The fifth is over the stanza budget; nothing was queued for it.
        #expect(results == [.accepted, .accepted, .accepted, .accepted, .overBudget])
        #expect(mailbox.depth == 4)
        #expect(mailbox.queuedBytes == 40)
        mailbox.post(.unbound("x.example"))
        guard let batch = await mailbox.next() else {
            Issue.record("the mailbox ended early")
            return
        }
        #expect(batch.count == 5)
        // The batch still counts until each stanza is handled.
        #expect(released.withLock { $0 } == 0)
        #expect(mailbox.offer(Element("more", namespace: Namespace.client), size: 10) == .overBudget)
        for _ in 0..<4 { mailbox.consumed(size: 10) }
        #expect(released.withLock { $0 } == 40)
        #expect(mailbox.depth == 0)
        #expect(mailbox.offer(Element("big", namespace: Namespace.client), size: 900) == .accepted)
        #expect(mailbox.offer(Element("too-big", namespace: Namespace.client), size: 200) == .overBudget)
        // A stanza larger than the whole budget is still taken into an empty mailbox.
        _ = await mailbox.next()
        mailbox.consumed(size: 900)
        #expect(mailbox.offer(Element("huge", namespace: Namespace.client), size: 5_000) == .accepted)
        mailbox.finish(after: .unbound("x.example"))
        let last = await mailbox.next()
        #expect(last?.count == 2)
        #expect(await mailbox.next() == nil)
        #expect(mailbox.offer(Element("late", namespace: Namespace.client), size: 1) == .closed)
    }

    /// The handler loop waits for work and wakes for it.
    @Test func mailboxWakesAWaitingConsumer() async {
        let mailbox = Mailbox(budget: HostnameBudget())
        async let batch = mailbox.next()
        // Let the consumer suspend (or not: either way it gets the stanza).
        await Task.yield()
        #expect(mailbox.offer(Element("m", namespace: Namespace.client), size: 1) == .accepted)
        let received = await batch
        #expect(received?.count == 1)
        mailbox.finish()
        #expect(await mailbox.next() == nil)
    }

    @Test func discoInfoMergesBuiltInsAndHandlerFeatures() async throws {
        let request = IQ(
            type: .get, from: try JID("u@example.com/r"), to: try JID("echo.example.com"), id: "d1",
            payload: Element("query", namespace: Namespace.discoInfo))
        let info = DiscoInfo(
            identities: [.init(category: "gateway", type: "irc", name: "IRC")], features: ["urn:x:a", Namespace.ping])
        let test = TestContext(hostname: "echo.example.com")
        let answer = try #require(await test.answer(to: request, from: ClosureHandler(discoInfo: info) { _, _ in }))
        #expect(answer.type == .result)
        let query = try #require(answer.payload)
        let features = query.children("feature", namespace: Namespace.discoInfo).compactMap { $0["var"] }
        #expect(features == [Namespace.discoInfo, Namespace.discoItems, Namespace.ping, Namespace.version, "urn:x:a"])
        let identity = try #require(query.firstChild("identity", namespace: Namespace.discoInfo))
        #expect(identity["category"] == "gateway")
        #expect(identity["name"] == "IRC")
        // A node query is not the built-in's to answer.
        var nodeRequest = request
        nodeRequest.element = Element(
            "iq", namespace: Namespace.client, attributes: ["type": "get", "id": "d2"],
            children: [Element("query", namespace: Namespace.discoInfo, attributes: ["node": "x"])])
        #expect(ServiceDiscoveryFeature.answer(nodeRequest, info: info) == nil)
    }

    @Test func pingAndVersionBuiltIns() throws {
        let ping = PingFeature.request(from: try JID("u@example.com"), to: try JID("echo.example.com"), id: "p")
        let pong = try #require(PingFeature.answer(ping))
        #expect(pong.type == .result)
        #expect(pong.payload == nil)
        let versionQuery = IQ(
            type: .get, from: try JID("u@example.com"), to: try JID("echo.example.com"), id: "v",
            payload: Element("query", namespace: Namespace.version))
        let version = try #require(SoftwareVersion(name: "n", version: "1").answer(versionQuery))
        #expect(version.payload?.firstChild("name", namespace: Namespace.version)?.text == "n")
        #expect(version.payload?.firstChild("os", namespace: Namespace.version) == nil)
        #expect(SoftwareVersion.sdk.answer(ping) == nil)
    }

    @Test func bindPayloads() {
        let bind = HostnameBinding.bindRequest(id: "b1", hostname: "chat.example.com")
        #expect(
            bind.element.serialized(streamNamespace: Namespace.client)
                == "<iq id='b1' type='set'><bind xmlns='urn:xmpp:component:0'><hostname>chat.example.com</hostname></bind></iq>")
        var result = IQ(type: .result, id: "b1")
        #expect(HostnameBinding.boundHostname(in: result) == nil)
        result.element.append(
            Element(
                "bind", namespace: Namespace.component,
                children: [Element("hostname", namespace: Namespace.component, text: " chat2.example.com\n")]))
        #expect(HostnameBinding.boundHostname(in: result) == "chat2.example.com")
        let unbind = HostnameBinding.unbindRequest(id: "u1", hostname: "chat.example.com")
        #expect(unbind.payload?.name == QualifiedName(Namespace.component, "unbind"))
    }

    @Test func plaintextHandshakeNeedsLoopbackOrExplicitPermission() throws {
        var configuration = ComponentConfiguration(
            host: "xmpp.example.com", port: 5347, serverDomain: "example.com", identity: "c.example.com",
            password: Secret("s"))
        configuration.tlsMode = .none
        #expect(throws: NegotiationError.self) {
            try ComponentStream.checkPlaintextHandshakePolicy(
                configuration: configuration, kind: .xep0114(hostname: "c.example.com"))
        }
        configuration.tlsMode = .none
        configuration.allowPlaintextHandshake = true
        try ComponentStream.checkPlaintextHandshakePolicy(configuration: configuration, kind: .xep0114(hostname: "c.example.com"))
        configuration.allowPlaintextHandshake = false
        configuration.tlsMode = .direct
        try ComponentStream.checkPlaintextHandshakePolicy(configuration: configuration, kind: .xep0114(hostname: "c.example.com"))
        configuration.tlsMode = .none
        for host in ["127.0.0.1", "localhost", "::1"] {
            configuration.host = host
            try ComponentStream.checkPlaintextHandshakePolicy(
                configuration: configuration, kind: .xep0114(hostname: "c.example.com"))
        }
        // XEP-0225 negotiates TLS itself; the policy is about the legacy digest only.
        configuration.host = "xmpp.example.com"
        try ComponentStream.checkPlaintextHandshakePolicy(
            configuration: configuration, kind: .xep0225(allowsLegacyFallback: false))
    }

    @Test func secretsNeverPrint() throws {
        let configuration = ComponentConfiguration(
            host: "h", port: 1, serverDomain: "example.com", identity: "c.example.com", password: Secret("hunter2"))
        #expect(!String(describing: configuration).contains("hunter2"))
        #expect(!String(reflecting: configuration).contains("hunter2"))
        // protocol auto enables XEP-0225: the SASL password is no XEP-0114 secret (issue #13 item 1).
        var legacy = configuration
        legacy.protocolMode = .xep0114
        #expect(try legacy.secret(for: "x.example.com").value == "hunter2")
    }

    @Test func invalidHostnamesAreRefusedBeforeAnythingIsSent() {
        let connection = ComponentConnection(
            configuration: ComponentConfiguration(
                host: "127.0.0.1", port: 1, serverDomain: "example.com", identity: "c.example.com", password: Secret("s")))
        #expect(throws: ComponentError.self) { try connection.register("user@example.com", handler: ClosureHandler { _, _ in }) }
        #expect(throws: ComponentError.self) { try connection.register("", handler: ClosureHandler { _, _ in }) }
        #expect(throws: ComponentError.self) {
            try connection.register("bad host.example.com", handler: ClosureHandler { _, _ in })
        }
        #expect(throws: Never.self) { try connection.register("echo.example.com", handler: ClosureHandler { _, _ in }) }
        let duplicate = #expect(throws: ComponentError.self) {
            try connection.register("ECHO.example.com", handler: ClosureHandler { _, _ in })
        }
        #expect(duplicate?.kind == .alreadyBound)
    }

    @Test func sendingFromAnUnboundHostnameFailsClearly() async throws {
        let connection = ComponentConnection(
            configuration: ComponentConfiguration(
                host: "127.0.0.1", port: 1, serverDomain: "example.com", identity: "c.example.com", password: Secret("s")))
        let message = Message(from: try JID("nope.example.com"), to: try JID("u@example.com"), body: "x")
        let error = await #expect(throws: ComponentError.self) { try await connection.send(.message(message)) }
        #expect(error?.kind == .unboundSender)
    }
}

/// A thread-safe flag for tests.
final class ManagedFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    var value: Bool { self.flag.load(ordering: .relaxed) }
    func set() { self.flag.store(true, ordering: .relaxed) }
}

@Suite("IQ redirect validation")
struct IQRedirectTests {
    fileprivate func original() throws -> IQ {
        IQ(
            type: .get, from: try JID("svc.example.com"), to: try JID("b@example.com"), id: "r1",
            payload: Element("query", namespace: "urn:example:q"))
    }

    fileprivate func redirect(_ original: IQ, embedded: Element, code: String = "302") -> IQ {
        var answer = original.result()
        answer.element["type"] = "error"
        var error = Element("error", namespace: Namespace.client, attributes: ["type": "modify", "code": code])
        error.append(embedded)
        answer.element.append(error)
        return answer
    }

    @Test func validRedirectIsFound() throws {
        let original = try self.original()
        var embedded = original.element
        embedded["to"] = "c@example.com"
        let answer = self.redirect(original, embedded: embedded)
        let redirected = try #require(IQRedirect.redirectedQuery(in: answer))
        #expect(redirected.element["to"] == "c@example.com")
        #expect(redirected.requestID == "r1")
        try IQRedirect.validate(original: original, redirected: redirected)
    }

    @Test func anErrorWithoutCode302IsNotARedirect() throws {
        let original = try self.original()
        var embedded = original.element
        embedded["to"] = "c@example.com"
        #expect(IQRedirect.redirectedQuery(in: self.redirect(original, embedded: embedded, code: "404")) == nil)
        #expect(IQRedirect.redirectedQuery(in: original.result()) == nil)
    }

    @Test func redirectOfASetIsInvalid() throws {
        var original = try self.original()
        original.element["type"] = "set"
        var embedded = original.element
        embedded["to"] = "c@example.com"
        let redirected = try #require(IQRedirect.redirectedQuery(in: self.redirect(original, embedded: embedded)))
        let error = #expect(throws: ComponentError.self) { try IQRedirect.validate(original: original, redirected: redirected) }
        #expect(error?.kind == .invalidRedirect)
    }

    @Test func redirectedQueryThatIsNotAGetIsInvalid() throws {
        let original = try self.original()
        var embedded = original.element
        embedded["to"] = "c@example.com"
        embedded["type"] = "set"
        let redirected = try #require(IQRedirect.redirectedQuery(in: self.redirect(original, embedded: embedded)))
        let error = #expect(throws: ComponentError.self) { try IQRedirect.validate(original: original, redirected: redirected) }
        #expect(error?.kind == .invalidRedirect)
    }

    @Test(arguments: ["id", "from", "xml:lang", "extra"])
    func envelopeChangesOtherThanToAreInvalid(attribute: String) throws {
        var original = try self.original()
        if attribute == "xml:lang" {
            original.element.setAttribute(QualifiedName(Namespace.xml, "lang"), "en")
        }
        var embedded = original.element
        embedded["to"] = "c@example.com"
        switch attribute {
        case "id": embedded["id"] = "other"
        case "from": embedded["from"] = "evil.example.com"
        case "xml:lang": embedded.setAttribute(QualifiedName(Namespace.xml, "lang"), "fr")
        default: embedded["extra"] = "1"
        }
        let redirected = try #require(IQRedirect.redirectedQuery(in: self.redirect(original, embedded: embedded)))
        let error = #expect(throws: ComponentError.self) { try IQRedirect.validate(original: original, redirected: redirected) }
        #expect(error?.kind == .invalidRedirect)
    }
}

extension IQRedirectTests {
    /// A server may stamp its default `xml:lang` on the query on its way (Prosody does);
    /// the redirect echoes it. Not a change of the envelope.
    @Test func anXMLLangAddedOnTheWayIsNotAChange() throws {
        let original = try self.original()
        var embedded = original.element
        embedded["to"] = "c@example.com"
        embedded.setAttribute(QualifiedName(Namespace.xml, "lang"), "en")
        let redirected = try #require(IQRedirect.redirectedQuery(in: self.redirect(original, embedded: embedded)))
        try IQRedirect.validate(original: original, redirected: redirected)
    }
}

@Suite("Connect targets (XEP-0051 server, see-other-host)")
struct ConnectTargetTests {
    @Test(arguments: [
        ("server2.example.com", "server2.example.com", 5270),
        ("server3.example.com:6222", "server3.example.com", 6222),
        ("123.123.123.122", "123.123.123.122", 5270),
        ("123.123.123.122:1", "123.123.123.122", 1),
        ("[2001:db8::1]", "2001:db8::1", 5270),
        ("[2001:db8::1]:5275", "2001:db8::1", 5275),
        ("2001:db8::1", "2001:db8::1", 5270),
        ("  host.example  ", "host.example", 5270),
    ])
    func parses(text: String, host: String, port: Int) {
        #expect(ConnectTarget.parse(text, defaultPort: 5270) == ConnectTarget(host: host, port: port))
    }

    @Test(arguments: ["", "   ", "host:0", "host:65536", "host:x", ":5270", "[::1", "[]:5", "[::1]x"])
    func rejects(text: String) {
        #expect(ConnectTarget.parse(text, defaultPort: 5270) == nil)
    }

    @Test func descriptionBracketsIPv6() {
        #expect(ConnectTarget(host: "::1", port: 5).description == "[::1]:5")
        #expect(ConnectTarget(host: "a.example", port: 5).description == "a.example:5")
    }
}

@Suite("Outbound queue")
struct OutboundQueueTests {
    @Test func boundedByCountAndAgeAndKeepsOrder() async throws {
        let queue = OutboundQueue(policy: OutboundQueuePolicy(maxStanzas: 3, maxAge: .milliseconds(50)))
        let results = LockedBox<[String]>([])
        await withTaskGroup(of: Void.self) { group in
            for index in 0..<4 {
                group.addTask {
                    do {
                        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                            if !queue.enqueue(
                                Element("m\(index)", namespace: Namespace.client), completion: { continuation.resume(with: $0) })
                            {
                                continuation.resume(throwing: ComponentError(.queueFull, "full"))
                            }
                        }
                        results.withLock { $0.append("sent") }
                    } catch let error as ComponentError {
                        results.withLock { $0.append("\(error.kind)") }
                    } catch {}
                }
                // Enqueue in a known order.
                while queue.count < min(index + 1, 3) { await Task.yield() }
            }
            while results.withLock({ $0.count }) < 1 { await Task.yield() }
            #expect(results.withLock { $0 } == ["queueFull"])
            #expect(queue.mustQueue)
            #expect(queue.beginFlush())
            #expect(!queue.beginFlush())
            let batch = queue.nextBatch(max: 2)
            #expect(batch.map(\.element.name.localName) == ["m0", "m1"])
            // Not written: back at the front, order kept.
            queue.requeueFront(batch)
            #expect(queue.count == 3)
            try? await Task.sleep(for: .milliseconds(80))
            let expired = queue.expired()
            #expect(expired.map(\.element.name.localName) == ["m0", "m1", "m2"])
            for entry in expired {
                entry.completion?(.failure(ComponentError(.expired, "old")))
            }
        }
        #expect(results.withLock { $0 }.sorted() == ["expired", "expired", "expired", "queueFull"])
        #expect(queue.count == 0)
        #expect(!queue.mustQueue)
    }
}

@Suite("Outbound queue send order")
struct OutboundQueueOrderTests {
    /// A stanza whose direct write failed joins the queue after stanzas sent later; its
    /// ticket (taken when it was sent) puts it back in front of them.
    @Test func aLateStanzaWithAnEarlierTicketGoesFirst() async throws {
        let queue = OutboundQueue(policy: OutboundQueuePolicy(maxStanzas: 10, maxAge: .seconds(60)))
        let tickets = (0..<4).map { _ in queue.takeTicket() }
        let order: [(String, UInt64)] = [("m2", tickets[2]), ("m3", tickets[3]), ("m0", tickets[0]), ("m1", tickets[1])]
        await withTaskGroup(of: Void.self) { group in
            for (index, (name, ticket)) in order.enumerated() {
                group.addTask {
                    try? await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                        _ = queue.enqueue(
                            Element(name, namespace: Namespace.client), ticket: ticket,
                            completion: { continuation.resume(with: $0) })
                    }
                }
                while queue.count < index + 1 { await Task.yield() }
            }
            #expect(queue.beginFlush())
            let first = queue.nextBatch(max: 2)
            #expect(first.map(\.element.name.localName) == ["m0", "m1"])
            // m0 and m1 could not be written: back in front, in ticket order.
            queue.requeueFront(first)
            let all = queue.nextBatch(max: 10)
            #expect(all.map(\.element.name.localName) == ["m0", "m1", "m2", "m3"])
            #expect(queue.nextBatch().isEmpty)
            for entry in all { entry.completion?(.success(())) }
        }
    }
}

/// A value shared between test tasks.
final class LockedBox<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>

    init(_ value: Value) {
        self.mutex = Mutex(value)
    }

    func withLock<Result>(_ body: (inout Value) -> Result) -> Result {
        self.mutex.withLock { body(&$0) }
    }
}
