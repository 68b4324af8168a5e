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
}
