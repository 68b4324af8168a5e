import Foundation
import Logging
import Metrics
import NIOCore
import NIOPosix
import Prometheus
import ServiceLifecycle
import Synchronization
import Testing
import XMPPTestSupport

@testable import ComponentHost

@Suite("Metrics endpoint", .timeLimit(.minutes(1)))
struct MetricsServerTests {
    /// Sends a raw HTTP request over loopback and returns the whole response.
    static func get(_ port: Int, _ request: String) async throws -> String {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        return try await withDeadline(.seconds(20), "the response to \(request.prefix { $0 != "\r" })") {
            try await channel.executeThenClose { inbound, outbound in
                try await outbound.write(ByteBuffer(string: request))
                var response = ""
                for try await buffer in inbound {
                    response += String(buffer: buffer)
                }
                return response
            }
        }
    }

    @Test func servesPrometheusTextOverLoopback() async throws {
        let registry = PrometheusCollectorRegistry()
        let factory = PrometheusMetricsFactory(registry: registry)
        // Host metrics through an explicit factory (the global bootstrap is the executable's).
        let counter = Counter(label: "xmpp_component_bind_errors_total", dimensions: [], factory: factory)
        counter.increment(by: 2)
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        let scraped = ManagedCounter()
        let server = MetricsServer(
            address: .init(host: "127.0.0.1", port: 0), registry: registry, logger: Logger(label: "test"),
            beforeScrape: { scraped.increment() },
            onListening: { address in continuation.yield(address.port ?? 0) })
        let group = ServiceGroup(services: [server], logger: Logger(label: "test"))
        async let running: Void = group.run()
        do {
            let port = try #require(
                try await withDeadline(.seconds(20), "the metrics server's port") { await ports.first { _ in true } })
            let response = try await Self.get(port, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
            #expect(response.hasPrefix("HTTP/1.1 200 OK\r\n"))
            #expect(response.contains("Content-Type: text/plain; version=0.0.4"))
            #expect(response.contains("# TYPE xmpp_component_bind_errors_total counter\nxmpp_component_bind_errors_total 2\n"))
            #expect(scraped.value == 1)
            let missing = try await Self.get(port, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            #expect(missing.hasPrefix("HTTP/1.1 404 Not Found"))
            let post = try await Self.get(port, "POST /metrics HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n")
            #expect(post.hasPrefix("HTTP/1.1 405"))
        }
        await group.triggerGracefulShutdown()
        try await running
    }

    @Test func jsonLogLines() {
        let line = JSONLogHandler.line(
            time: Date(timeIntervalSince1970: 0), level: .info, label: "host", message: "bound \"x\"\n",
            metadata: ["component.hostname": "a.example.com", "n": .array(["1"])])
        #expect(
            line
                == #"{"time":"1970-01-01T00:00:00Z","level":"info","label":"host","message":"bound \"x\"\n","metadata":{"component.hostname":"a.example.com","n":["1"]}}"#
        )
    }
}

final class ManagedCounter: Sendable {
    private let count = Mutex(0)
    func increment() { self.count.withLock { $0 += 1 } }
    var value: Int { self.count.withLock { $0 } }
}
