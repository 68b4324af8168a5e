import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Testing
import XMPPTestSupport

@testable import ComponentHost

@Suite("Admin socket", .timeLimit(.minutes(1)))
struct AdminSocketTests {
    /// Runs an admin server for a host (never connected) and calls `body` once it listens.
    static func withServer(
        _ directory: TemporaryDirectory, socket: String, _ body: (ComponentHost, AdminClient) async throws -> Void
    ) async throws {
        let host = try HostTests.host(in: directory)
        let server = AdminServer(path: socket, host: host, logger: HostTests.logger)
        // Stopped by graceful shutdown, as in production (not by cancellation).
        let group = ServiceGroup(services: [server], logger: HostTests.logger)
        async let running: Void = group.run()
        let client = AdminClient(path: socket)
        for _ in 0..<200 where SystemCalls.kind(of: socket) != .socket || SystemCalls.mode(of: socket) != 0o600 {
            try await Task.sleep(for: .milliseconds(10))
        }
        do {
            try await body(host, client)
        } catch {
            await group.triggerGracefulShutdown()
            try await running
            throw error
        }
        await group.triggerGracefulShutdown()
        try await running
        #expect(SystemCalls.kind(of: socket) == .missing)  // removed on the way out
    }

    @Test func roundTripOverARealUnixSocket() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let socket = "\(directory.path)/run/admin.sock"  // parent missing: created 0700
        try await Self.withServer(directory, socket: socket) { _, client in
            #expect(SystemCalls.mode(of: socket) == 0o600)
            #expect(SystemCalls.mode(of: "\(directory.path)/run") == 0o700)

            let status = try await client.send(AdminRequest(command: .status))
            #expect(status.ok)
            #expect(status.status?.connected == false)
            #expect(status.status?.components.map(\.state) == ["pending", "pending"])

            let unknown = try await client.send(AdminRequest(command: .bind, hostname: "w.example.com", plugin: "weather"))
            #expect(!unknown.ok)
            #expect(unknown.error == "unknown plugin 'weather'; this host has: echo, external, kv")

            let badOption = try await client.send(
                AdminRequest(command: .bind, hostname: "w.example.com", plugin: "kv", set: ["max_keys=lots"]))
            #expect(badOption.error == "option 'max_keys' of plugin 'kv' must be an integer, not 'lots'")

            let bound = try await client.send(
                AdminRequest(command: .bind, hostname: "w.example.com", plugin: "kv", set: ["max_keys=5"]))
            #expect(bound.ok)
            #expect(bound.component?.state == "pending")
            #expect(bound.component?.options["max_keys"] == .integer(5))
            #expect(bound.component?.origin == "runtime")

            let after = try await client.send(AdminRequest(command: .status))
            #expect(after.status?.components.map(\.hostname) == ["echo.example.com", "kv.example.com", "w.example.com"])

            let unbound = try await client.send(AdminRequest(command: .unbind, hostname: "w.example.com"))
            #expect(unbound.ok)
            #expect(unbound.message == "w.example.com unbound")
            let again = try await client.send(AdminRequest(command: .unbind, hostname: "w.example.com"))
            #expect(again.error == "w.example.com is not served by this host")
        }
    }

    @Test func rawLinesAndBadRequests() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let socket = "\(directory.path)/admin.sock"
        try await Self.withServer(directory, socket: socket) { _, _ in
            // Two requests on one connection, one of them not JSON: two answers, in order.
            let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connect(unixDomainSocketPath: socket) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineFrameDecoder()))
                        return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                    }
                }
            let lines = try await withDeadline(.seconds(20), "two answers on the admin socket") {
                try await channel.executeThenClose { inbound, outbound -> [String] in
                    try await outbound.write(ByteBuffer(string: "hello\n{\"command\":\"status\"}\n"))
                    var lines: [String] = []
                    for try await line in inbound {
                        lines.append(String(buffer: line))
                        if lines.count == 2 { break }
                    }
                    return lines
                }
            }
            #expect(lines.first?.hasPrefix("{\"error\":\"not a valid request") == true)
            #expect(lines.last?.hasPrefix("{\"ok\":true,\"status\":{") == true)
        }
    }

    @Test func staleSocketIsReplacedLiveOneAndFilesAreNot() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let socket = "\(directory.path)/admin.sock"
        // A stale socket file: bound once, never accepting.
        let stale = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(unixDomainSocketPath: socket).get()
        try await stale.close()
        if SystemCalls.kind(of: socket) != .socket {
            // NIO removed it on close; make a stale one by hand.
            let fd = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(socket.utf8) + [0]) }
            _ = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
            Glibc.close(fd)
        }
        #expect(SystemCalls.kind(of: socket) == .socket)
        // Not 0600, so that withServer waits for the new socket, not this stale one.
        try SystemCalls.changeMode(socket, 0o755)
        try await Self.withServer(directory, socket: socket) { _, client in
            let response = try await client.send(AdminRequest(command: .status))
            #expect(response.ok)
            // A second server on the same live socket is refused.
            #expect(throws: HostError.self) { try AdminServer.prepare(path: socket) }
        }
        let file = try directory.write("not-a-socket", "x")
        #expect(throws: HostError.self) { try AdminServer.prepare(path: file) }
        #expect(try directory.read("not-a-socket") == "x")
    }

    @Test func clientReportsAnAbsentHost() async throws {
        let error = await #expect(throws: HostError.self) {
            try await AdminClient(path: "/tmp/does-not-exist-\(UInt32.random(in: 0...UInt32.max)).sock")
                .send(AdminRequest(command: .status))
        }
        #expect(error?.message.contains("is the host running?") == true)
    }
}
