import ComponentKit
import ComponentKitTesting
import InMemoryTracing
import Logging
import Synchronization
import Testing
import Tracing
import XMPPCore

@Suite("Logging and tracing middleware")
struct ObservabilityMiddlewareTests {
    static func request(id: String) throws -> IQ {
        IQ(
            type: .get, from: try JID("u@example.com/r"), to: try JID("svc.example.com"), id: id,
            payload: Element("query", namespace: "urn:x", text: "secret-content"))
    }

    static func router() -> StanzaRouter {
        var router = StanzaRouter()
        router.iq(.get, "urn:x") { iq, _ in
            switch iq.requestID {
            case "refused": throw StanzaError(.forbidden)
            case "broken": throw CancellationError()
            default: return nil
            }
        }
        router.message { _, _ in }
        return router
    }

    @Test(.timeLimit(.minutes(1)))
    func aSpanPerStanzaWithItsFactsAndOutcome() async throws {
        let tracer = InMemoryTracer()
        let handler = Self.router().using(TracingMiddleware(tracer: tracer))
        let test = TestContext(hostname: "svc.example.com")
        await test.deliver(.iq(try Self.request(id: "ok")), to: handler)
        await test.deliver(.iq(try Self.request(id: "refused")), to: handler)
        await test.deliver(.iq(try Self.request(id: "broken")), to: handler)
        await test.deliver(
            .message(Message(type: .chat, from: try JID("u@example.com"), to: try JID("svc.example.com"), body: "b")),
            to: handler)
        let spans = tracer.finishedSpans
        #expect(spans.map(\.operationName) == ["xmpp.iq", "xmpp.iq", "xmpp.iq", "xmpp.message"])
        #expect(spans.map(\.kind) == [.server, .server, .server, .consumer])
        #expect(spans[0].attributes["xmpp.stanza.id"]?.toSpanAttribute() == "ok")
        #expect(spans[0].attributes["xmpp.payload.namespace"]?.toSpanAttribute() == "urn:x")
        #expect(spans[0].attributes["xmpp.hostname"]?.toSpanAttribute() == "svc.example.com")
        #expect(spans[0].status == nil)
        // A stanza error is an answer, not a failure; anything else fails the span.
        #expect(spans[1].attributes["xmpp.stanza.error"]?.toSpanAttribute() == "forbidden")
        #expect(spans[1].status == nil)
        #expect(spans[2].status?.code == .error)
        #expect(spans[2].errors.count == 1)
        // The content is never an attribute.
        for span in spans {
            span.attributes.forEach { _, value in
                #expect(!"\(value)".contains("secret-content"))
            }
        }
        // Every request still got exactly one answer.
        #expect(test.sentIQs.map(\.requestID) == ["ok", "refused", "broken"])
    }

    @Test(.timeLimit(.minutes(1)))
    func loggingNamesTheStanzaNotItsContent() async throws {
        let lines = LogCapture()
        let logger = Logger(label: "test", factory: { _ in lines.handler() })
        let test = TestContext(hostname: "svc.example.com", logger: logger)
        let handler = Self.router().using(LoggingMiddleware(level: .info))
        await test.deliver(.iq(try Self.request(id: "ok")), to: handler)
        await test.deliver(.iq(try Self.request(id: "refused")), to: handler)
        let all = lines.all
        #expect(all.map(\.message) == ["stanza received", "stanza handled", "stanza received", "stanza handled"])
        #expect(all[1].metadata["stanza.outcome"] == "done")
        #expect(all[3].metadata["stanza.outcome"] == "threw")
        #expect(all[3].metadata["stanza.error"] == "forbidden")
        #expect(all[0].metadata["stanza.payload"] == "urn:x query")
        #expect(!all.contains { line in line.metadata.values.contains { "\($0)".contains("secret-content") } })
    }
}

/// Collects log lines.
final class LogCapture: Sendable {
    struct Line: Sendable {
        var message: String
        var metadata: [String: String]
    }

    private let lines = Mutex<[Line]>([])

    var all: [Line] { self.lines.withLock { $0 } }

    func handler() -> Handler { Handler(capture: self) }

    struct Handler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { self.metadata[key] }
            set { self.metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            var merged: [String: String] = [:]
            for (key, value) in self.metadata.merging(event.metadata ?? [:], uniquingKeysWith: { $1 }) {
                merged[key] = "\(value)"
            }
            self.capture.lines.withLock { $0.append(Line(message: "\(event.message)", metadata: merged)) }
        }
    }
}
