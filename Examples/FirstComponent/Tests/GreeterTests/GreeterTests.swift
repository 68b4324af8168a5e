import ComponentKit
import ComponentKitTesting
import Greeter
import Testing
import XMPPCore

@Suite("Greeter")
struct GreeterTests {
    let alice = try! JID("alice@example.com/phone")
    let greeter = try! JID("greeter.example.com")

    @Test(.timeLimit(.minutes(1)))
    func greetsTheSenderAndCounts() async throws {
        let test = TestContext(hostname: "greeter.example.com")
        let handler = Greeter.makeHandler(greeting: "Hello")

        await test.deliver(.message(Message(type: .chat, from: alice, to: greeter, id: "m1", body: "Alice")), to: handler)
        await test.deliver(.message(Message(type: .chat, from: alice, to: greeter, id: "m2", body: "again")), to: handler)

        #expect(test.sentMessages.map(\.body) == ["Hello, Alice! (greeting #1)", "Hello, again! (greeting #2)"])
        let reply = try #require(test.sentMessages.first)
        #expect(reply.to == alice)
        #expect(reply.from == greeter)
    }

    @Test(.timeLimit(.minutes(1)))
    func neverAnswersAnError() async throws {
        let test = TestContext(hostname: "greeter.example.com")
        let error = Message(type: .error, from: alice, to: greeter, id: "e1", body: "oops")
        await test.deliver(.message(error), to: Greeter.makeHandler(greeting: "Hello"))
        #expect(test.sent.isEmpty)
    }

    @Test(.timeLimit(.minutes(1)))
    func answersTheCountQuery() async throws {
        let test = TestContext(hostname: "greeter.example.com")
        let handler = Greeter.makeHandler(greeting: "Hi")
        await test.deliver(.message(Message(type: .chat, from: alice, to: greeter, id: "m1", body: "Bob")), to: handler)

        let query = IQ(
            type: .get, from: alice, to: greeter, id: "q1", payload: Element("count", namespace: Greeter.namespace))
        let answer = try #require(await test.answer(to: query, from: handler))
        #expect(answer.type == .result)
        #expect(answer.payload?.text == "1")
    }

    @Test(.timeLimit(.minutes(1)))
    func advertisesItsQueryAndRefusesOthers() async throws {
        let test = TestContext(hostname: "greeter.example.com")
        let handler = Greeter.makeHandler(greeting: "Hi")

        let disco = IQ(type: .get, from: alice, to: greeter, id: "d1", payload: Element("query", namespace: Namespace.discoInfo))
        let info = try #require(await test.answer(to: disco, from: handler))
        let features = info.payload?.children("feature", namespace: Namespace.discoInfo).compactMap { $0["var"] } ?? []
        #expect(features.contains(Greeter.namespace))

        // A set of the count query: the router knows the payload, not for set.
        let set = IQ(type: .set, from: alice, to: greeter, id: "s1", payload: Element("count", namespace: Greeter.namespace))
        #expect(try #require(await test.answer(to: set, from: handler)).error?.condition == .featureNotImplemented)

        // Anything else: service-unavailable. Every request got exactly one answer.
        let other = IQ(type: .get, from: alice, to: greeter, id: "o1", payload: Element("query", namespace: "urn:example:other"))
        #expect(try #require(await test.answer(to: other, from: handler)).error?.condition == .serviceUnavailable)
        #expect(test.sentIQs.map(\.requestID) == ["d1", "s1", "o1"])
    }
}
