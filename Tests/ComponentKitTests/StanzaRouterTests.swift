import ComponentKit
import ComponentKitTesting
import Synchronization
import Testing
import XMPPCore

@Suite("Stanza router")
struct StanzaRouterTests {
    static let ns = "urn:example:test"

    static func request(_ type: IQ.IQType, _ namespace: String = ns, _ name: String = "query", id: String = "q1") throws -> IQ {
        IQ(
            type: type, from: try JID("u@example.com/r"), to: try JID("svc.example.com"), id: id,
            payload: Element(name, namespace: namespace))
    }

    static func router() -> StanzaRouter {
        var router = StanzaRouter()
        router.iq(.get, Self.ns) { iq, _ in
            Element("query", namespace: Self.ns, text: "got \(iq.requestID)")
        }
        router.iq(.set, Self.ns, "item", advertise: false) { _, _ in
            throw StanzaError(.notAllowed, text: "read-only")
        }
        router.iq(.set, "urn:example:empty") { _, _ in nil }
        return router
    }

    @Test(.timeLimit(.minutes(1)))
    func iqRoutesAnswerWithTheirPayloadOrTheirError() async throws {
        let test = TestContext(hostname: "svc.example.com")
        let router = Self.router()
        let result = try #require(await test.answer(to: try Self.request(.get), from: router))
        #expect(result.type == .result)
        #expect(result.payload?.text == "got q1")
        #expect(result.from == (try JID("svc.example.com")))
        #expect(result.to == (try JID("u@example.com/r")))
        let empty = try #require(await test.answer(to: try Self.request(.set, "urn:example:empty", id: "e"), from: router))
        #expect(empty.type == .result)
        #expect(empty.payload == nil)
        let refused = try #require(await test.answer(to: try Self.request(.set, Self.ns, "item", id: "i"), from: router))
        #expect(refused.error?.condition == .notAllowed)
        #expect(refused.error?.text == "read-only")
    }

    @Test(.timeLimit(.minutes(1)))
    func unroutedRequestsStillGetExactlyOneAnswer() async throws {
        let test = TestContext(hostname: "svc.example.com")
        let router = Self.router()
        // A routed payload of a type with no route.
        let wrongType = try #require(await test.answer(to: try Self.request(.set, id: "w"), from: router))
        #expect(wrongType.error?.condition == .featureNotImplemented)
        // An unknown payload.
        let unknown = try #require(await test.answer(to: try Self.request(.get, "urn:other", id: "u"), from: router))
        #expect(unknown.error?.condition == .serviceUnavailable)
        // A built-in still answers through the router.
        let ping = try #require(await test.answer(to: try Self.request(.get, Namespace.ping, "ping", id: "p"), from: router))
        #expect(ping.type == .result)
        #expect(test.sentIQs.map(\.requestID) == ["w", "u", "p"])
    }

    @Test(.timeLimit(.minutes(1)))
    func routeNamespacesAreAdvertisedUnlessAskedNotTo() async throws {
        var router = Self.router()
        router.advertisedFeatures = ["urn:example:messages"]
        #expect(router.discoInfo.features == [Self.ns, "urn:example:empty", "urn:example:messages"])
        let test = TestContext(hostname: "svc.example.com")
        let disco = try #require(await test.answer(to: try Self.request(.get, Namespace.discoInfo), from: router))
        let features = disco.payload?.children("feature", namespace: Namespace.discoInfo).compactMap { $0["var"] }
        #expect(
            features == [
                Namespace.discoInfo, Namespace.discoItems, Namespace.ping, Namespace.version, Self.ns,
                "urn:example:empty", "urn:example:messages",
            ])
    }

    @Test(.timeLimit(.minutes(1)))
    func messagesRouteByTypeAndNamespaceFirstMatchWins() async throws {
        let seen = Log()
        var router = StanzaRouter()
        router.message(.chat, namespace: "urn:example:state") { _, _ in seen.append("chat+state") }
        router.message(.chat) { _, _ in seen.append("chat") }
        router.message { _, _ in seen.append("any") }
        router.message(.error) { _, _ in seen.append("error") }
        router.presence(.subscribe) { _, _ in seen.append("subscribe") }
        router.availablePresence { _, _ in seen.append("available") }
        router.fallback { stanza, _ in seen.append("fallback \(stanza.element.name.localName)") }

        let test = TestContext(hostname: "svc.example.com")
        let from = try JID("u@example.com/r")
        let to = try JID("svc.example.com")
        var stateful = Message(type: .chat, from: from, to: to, body: "x")
        stateful.element.append(Element("active", namespace: "urn:example:state"))
        await test.deliver(.message(stateful), to: router)
        await test.deliver(.message(Message(type: .chat, from: from, to: to, body: "x")), to: router)
        await test.deliver(.message(Message(type: .headline, from: from, to: to, body: "x")), to: router)
        await test.deliver(.message(Message(type: .error, from: from, to: to)), to: router)
        await test.deliver(.presence(Presence(type: .subscribe, from: from, to: to)), to: router)
        await test.deliver(.presence(Presence(from: from, to: to)), to: router)
        await test.deliver(.presence(Presence(type: .probe, from: from, to: to)), to: router)
        await test.deliver(.iq(IQ(type: .result, from: from, to: to, id: "r")), to: router)
        #expect(
            seen.all == [
                "chat+state", "chat", "any", "error", "subscribe", "available", "fallback presence", "fallback iq",
            ])
        #expect(test.sent.isEmpty)
    }

    @Test(.timeLimit(.minutes(1)))
    func aFallbackMayAnswerUnroutedRequests() async throws {
        var router = StanzaRouter()
        router.fallback { stanza, context in
            guard case .iq(let iq) = stanza, iq.type.isRequest else { return }
            try await context.reply(to: iq, with: Element("fallback", namespace: "urn:x"))
        }
        let test = TestContext(hostname: "svc.example.com")
        let answer = try #require(await test.answer(to: try Self.request(.get, "urn:other"), from: router))
        #expect(answer.payload?.name.localName == "fallback")
        #expect(test.sent.count == 1)
    }

    @Test(.timeLimit(.minutes(1)))
    func aRouteMayAnswerByItselfAndReturnNil() async throws {
        var router = StanzaRouter()
        router.iq(.get, Self.ns) { iq, context in
            try await context.reply(to: iq, error: StanzaError(.notAuthorized))
            return nil
        }
        let test = TestContext(hostname: "svc.example.com")
        let outcome = await test.deliver(.iq(try Self.request(.get)), to: router)
        #expect(outcome.handlerError == nil)
        #expect(test.sentIQs.map { $0.error?.condition } == [.notAuthorized])
    }

    @Test(.timeLimit(.minutes(1)))
    func aSecondAnswerIsRefused() async throws {
        var router = StanzaRouter()
        router.iq(.get, Self.ns) { iq, context in
            // Answers itself, then returns a payload too: the router's answer is refused.
            try await context.reply(to: iq)
            return Element("query", namespace: Self.ns)
        }
        let test = TestContext(hostname: "svc.example.com")
        let outcome = await test.deliver(.iq(try Self.request(.get)), to: router)
        #expect(test.sent.count == 1)
        #expect(outcome.answer == nil)
        let error = try #require(outcome.handlerError as? ComponentError)
        #expect(error.kind == .invalidStanza)
    }
}

@Suite("Middleware")
struct MiddlewareTests {
    struct Recorder: StanzaMiddleware {
        let name: String
        let log: Log
        var refuse = false

        init(_ name: String, _ log: Log, refuse: Bool = false) {
            self.name = name
            self.log = log
            self.refuse = refuse
        }

        func handle(
            _ stanza: Stanza, context: ComponentContext, next: (Stanza, ComponentContext) async throws -> Void
        ) async throws {
            self.log.append("\(self.name) in")
            if self.refuse {
                throw StanzaError(.forbidden, text: "refused by \(self.name)")
            }
            try await next(stanza, context)
            self.log.append("\(self.name) out answered=\(context.hasAnsweredRequest)")
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func runsOutermostFirstAndSeesTheAnswer() async throws {
        let log = Log()
        var router = StanzaRouter()
        router.iq(.get, "urn:x") { _, _ in
            log.append("route")
            return nil
        }
        router.use(Recorder("inner", log))
        let handler = router.using(Recorder("outer", log))
        let test = TestContext(hostname: "svc.example.com")
        let answer = await test.answer(
            to: IQ(
                type: .get, from: try JID("u@example.com"), to: try JID("svc.example.com"), id: "1",
                payload: Element("query", namespace: "urn:x")),
            from: handler)
        #expect(answer?.type == .result)
        #expect(
            log.all == ["outer in", "inner in", "route", "inner out answered=true", "outer out answered=true"])
    }

    @Test(.timeLimit(.minutes(1)))
    func aMiddlewareCanRefuseAndTheRequestIsAnsweredWithItsError() async throws {
        let log = Log()
        let reached = Log()
        let handler = ClosureHandler { _, _ in reached.append("handler") }
            .using(Recorder("gate", log, refuse: true))
        let test = TestContext(hostname: "svc.example.com")
        let answer = await test.answer(
            to: IQ(
                type: .get, from: try JID("u@example.com"), to: try JID("svc.example.com"), id: "1",
                payload: Element("query", namespace: "urn:x")),
            from: handler)
        #expect(answer?.error?.condition == .forbidden)
        #expect(reached.all.isEmpty)
        #expect(test.sent.count == 1)
    }

    @Test(.timeLimit(.minutes(1)))
    func middlewareHandlerForwardsDiscoAndFeatures() {
        let router = StanzaRouterTests.router()
        let wrapped = router.using(LoggingMiddleware())
        #expect(wrapped.discoInfo == router.discoInfo)
    }
}

@Suite("Features and the test context")
struct FeatureTests {
    struct TimeFeature: ComponentFeature {
        var discoFeatures: [String] { ["urn:xmpp:time"] }
        var discoIdentities: [DiscoInfo.Identity] { [.init(category: "automation", type: "time")] }
        func answer(_ iq: IQ, in context: ComponentContext) async throws -> IQ? {
            guard iq.type == .get, iq.payload?.name == QualifiedName("urn:xmpp:time", "time") else { return nil }
            return iq.result(Element("time", namespace: "urn:xmpp:time", text: "noon"))
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func aHandlersFeatureAnswersAndIsAdvertised() async throws {
        var router = StanzaRouter()
        router.features = [TimeFeature()]
        let test = TestContext(hostname: "svc.example.com")
        let from = try JID("u@example.com/r")
        let to = try JID("svc.example.com")
        let time = try #require(
            await test.answer(
                to: IQ(type: .get, from: from, to: to, id: "t", payload: Element("time", namespace: "urn:xmpp:time")),
                from: router))
        #expect(time.payload?.text == "noon")
        let disco = try #require(
            await test.answer(
                to: IQ(type: .get, from: from, to: to, id: "d", payload: Element("query", namespace: Namespace.discoInfo)),
                from: router))
        let query = try #require(disco.payload)
        #expect(query.children("feature", namespace: Namespace.discoInfo).contains { $0["var"] == "urn:xmpp:time" })
        #expect(query.children("identity", namespace: Namespace.discoInfo).map { $0["category"] } == ["component", "automation"])
        // Disco and version answer the hostname itself only; ping answers any address under it.
        let userDisco = try #require(
            await test.answer(
                to: IQ(
                    type: .get, from: from, to: try JID("someone@svc.example.com"), id: "ud",
                    payload: Element("query", namespace: Namespace.discoInfo)),
                from: router))
        #expect(userDisco.error?.condition == .serviceUnavailable)
    }

    @Test(.timeLimit(.minutes(1)))
    func handlerRequestsAreRecordedAndAnsweredByTheTest() async throws {
        let handler = ClosureHandler { stanza, context in
            guard case .message(let message) = stanza else { return }
            let answer = try await context.request(
                IQ(type: .get, to: try JID("weather.example.com"), id: "w1", payload: Element("query", namespace: "urn:w")))
            try await context.send(message.reply(body: answer.type == .result ? answer.payload?.text ?? "" : "error"))
        }
        let test = TestContext(hostname: "svc.example.com")
        let message = Message(type: .chat, from: try JID("u@example.com"), to: try JID("svc.example.com"), body: "?")
        async let delivered = test.deliver(.message(message), to: handler)
        let request = await test.nextRequest()
        #expect(request.iq.from == (try JID("svc.example.com")))
        request.result(Element("query", namespace: "urn:w", text: "sunny"))
        _ = await delivered
        #expect(test.sentMessages.map(\.body) == ["sunny"])
        #expect(test.requests.map(\.requestID) == ["w1"])

        test.respond { $0.errorResult(StanzaError(.itemNotFound)) }
        await test.deliver(.message(message), to: handler)
        #expect(test.sentMessages.map(\.body) == ["sunny", "error"])
    }

    @Test(.timeLimit(.minutes(1)))
    func anUnansweredRequestTimesOut() async throws {
        let handler = ClosureHandler { _, context in
            _ = try await context.request(
                IQ(type: .get, to: try JID("slow.example.com"), id: "s", payload: Element("query", namespace: "urn:s")),
                timeout: .milliseconds(50))
        }
        let test = TestContext(hostname: "svc.example.com")
        let outcome = await test.deliver(
            .message(Message(type: .chat, from: try JID("u@example.com"), to: try JID("svc.example.com"), body: "x")),
            to: handler)
        #expect((outcome.handlerError as? ComponentError)?.kind == .timeout)
    }

    @Test(.timeLimit(.minutes(1)))
    func bindsAreRecorded() async throws {
        let handler = ClosureHandler { _, context in
            _ = try await context.bind("room.example.com", handler: ClosureHandler { _, _ in })
            try await context.unbind("old.example.com")
        }
        let test = TestContext(hostname: "svc.example.com")
        await test.deliver(
            .message(Message(type: .chat, from: try JID("u@example.com"), to: try JID("svc.example.com"), body: "x")),
            to: handler)
        #expect(test.bound == ["room.example.com"])
        #expect(test.unbound == ["old.example.com"])
    }
}

/// A thread-safe list of strings, for closures to record what ran.
final class Log: Sendable {
    private let entries = Mutex<[String]>([])

    func append(_ entry: String) {
        self.entries.withLock { $0.append(entry) }
    }

    var all: [String] {
        self.entries.withLock { $0 }
    }
}
