import ComponentKit
import ComponentKitTesting
import KeyValueComponent
import Testing
import XMPPCore

/// The key-value example, tested as a plugin author would: through `ComponentKitTesting` only.
@Suite("Key-value component")
struct KeyValueComponentTests {
    static let namespace = KeyValueComponent.namespace

    static func query(_ items: [(String, String?)]) -> Element {
        Element(
            "query", namespace: Self.namespace,
            children: items.map { key, value in
                Element("item", namespace: Self.namespace, attributes: ["key": key], text: value)
            })
    }

    static func iq(_ type: IQ.IQType, id: String, _ items: [(String, String?)], from: String = "admin@example.com/a")
        throws -> IQ
    {
        IQ(type: type, from: try JID(from), to: try JID("kv.example.com"), id: id, payload: Self.query(items))
    }

    @Test(.timeLimit(.minutes(1)))
    func setThenGetOverIQ() async throws {
        let test = TestContext(hostname: "kv.example.com")
        let kv = KeyValueComponent()
        let set = try #require(await test.answer(to: try Self.iq(.set, id: "s1", [("colour", "blue")]), from: kv))
        #expect(set.type == .result)
        #expect(set.payload == nil)
        let get = try #require(await test.answer(to: try Self.iq(.get, id: "g1", [("colour", nil)]), from: kv))
        #expect(get.type == .result)
        #expect(get.payload?.firstChild("item", namespace: Self.namespace)?.text == "blue")
        #expect(get.from == (try JID("kv.example.com")))
        #expect(test.sent.count == 2)
    }

    @Test(.timeLimit(.minutes(1)))
    func errorsAreAnsweredOnce() async throws {
        let test = TestContext(hostname: "kv.example.com")
        let kv = KeyValueComponent(limits: .init(maxKeys: 1, writers: [try JID("admin@example.com")]))
        let missing = try #require(await test.answer(to: try Self.iq(.get, id: "g1", [("nope", nil)]), from: kv))
        #expect(missing.error?.condition == .itemNotFound)
        let stranger = try #require(
            await test.answer(to: try Self.iq(.set, id: "s1", [("k", "v")], from: "eve@evil.example/x"), from: kv))
        #expect(stranger.error?.condition == .forbidden)
        _ = await test.answer(to: try Self.iq(.set, id: "s2", [("a", "1")]), from: kv)
        let full = try #require(await test.answer(to: try Self.iq(.set, id: "s3", [("b", "2")]), from: kv))
        #expect(full.error?.condition == .resourceConstraint)
        let empty = try #require(
            await test.answer(
                to: IQ(
                    type: .get, from: try JID("admin@example.com/a"), to: try JID("kv.example.com"), id: "g2",
                    payload: Element("query", namespace: Self.namespace)), from: kv))
        #expect(empty.error?.condition == .badRequest)
        #expect(test.sentIQs.map(\.requestID) == ["g1", "s1", "s2", "s3", "g2"])
    }

    @Test(.timeLimit(.minutes(1)))
    func messageCommands() async throws {
        let test = TestContext(hostname: "kv.example.com")
        let kv = KeyValueComponent()
        for (index, body) in ["set colour blue", "get colour", "keys", "del colour", "get colour"].enumerated() {
            let message = Message(
                type: .chat, from: try JID("admin@example.com/a"), to: try JID("kv.example.com"), id: "m\(index)",
                body: body)
            await test.deliver(.message(message), to: kv)
        }
        #expect(test.sentMessages.map(\.body) == ["ok", "blue", "colour", "deleted", "(not set)"])
    }

    @Test(.timeLimit(.minutes(1)))
    func advertisesItsNamespaceFromItsRoutes() async throws {
        let test = TestContext(hostname: "kv.example.com")
        let disco = IQ(
            type: .get, from: try JID("admin@example.com/a"), to: try JID("kv.example.com"), id: "d1",
            payload: Element("query", namespace: Namespace.discoInfo))
        let info = try #require(await test.answer(to: disco, from: KeyValueComponent()))
        let features = info.payload?.children("feature", namespace: Namespace.discoInfo).compactMap { $0["var"] } ?? []
        #expect(features.contains(Self.namespace))
        #expect(features.contains(Namespace.ping))
    }
}
