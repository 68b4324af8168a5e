import Foundation
public import Logging
public import NIOCore
public import NIOPosix
public import ServiceLifecycle

/// Serves the admin protocol (``AdminRequest`` / ``AdminResponse``) on a Unix socket for
/// a ``ComponentHost``.
///
/// The socket file gets mode 0600 (only the host's user may connect), and never exists at
/// its path with a wider mode: it is bound under a random temporary name in its (private)
/// directory, given mode 0600, then renamed into place. (Not a umask around `bind`: the
/// umask is process-wide, so changing it races with every other thread creating files.)
/// Its parent directory must be owned
/// by the host's user with mode 0700 and not be a symbolic link (a missing one is created
/// so); anything else is refused with the path and the fix. A socket file left by a host
/// that died is replaced; one that still accepts connections (another host running) is an
/// error, and a path that is not a socket (a symbolic link included) is never removed.
public struct AdminServer: Service {
    /// The socket's path.
    public let path: String
    let host: ComponentHost
    let logger: Logger
    let eventLoopGroup: any EventLoopGroup

    /// Creates a server; nothing listens until ``run()``.
    /// - Parameters:
    ///   - path: The socket's path.
    ///   - host: The host the commands act on.
    ///   - logger: The logger.
    ///   - eventLoopGroup: The NIO event loops.
    public init(
        path: String, host: ComponentHost, logger: Logger,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        self.path = path
        self.host = host
        self.logger = logger
        self.eventLoopGroup = eventLoopGroup
    }

    /// Listens and answers until graceful shutdown or cancellation; removes the socket file on the way out.
    public func run() async throws {
        try Self.prepare(path: self.path)
        // bind(2) creates the file with 0777 & ~umask; it gets 0600 under a temporary name in
        // the 0700 directory, and only then appears at its path (rename is atomic).
        let temporary = SystemCalls.parentDirectory(of: self.path) + "/.admin-\(UInt32.random(in: 0...UInt32.max)).sock"
        guard temporary.utf8.count < 108 else {
            throw HostError("the admin socket's directory path is too long for a temporary socket name: \(temporary)")
        }
        let accepted = AcceptedChannels<ByteBuffer, ByteBuffer>()
        let server = try await ServerBootstrap(group: self.eventLoopGroup)
            .bind(unixDomainSocketPath: temporary) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineFrameDecoder()))
                    return accepted.register(try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel))
                }
            }
        do {
            try SystemCalls.changeMode(temporary, 0o600)
            try SystemCalls.renameFile(temporary, to: self.path)
        } catch {
            try? SystemCalls.removeFile(temporary)
            try? await server.channel.close()
            throw HostError("cannot put the admin socket in place at \(self.path): \(error)")
        }
        defer { try? SystemCalls.removeFile(self.path) }
        self.logger.info("admin socket listening", metadata: ["admin.socket": "\(self.path)"])
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                do {
                    try await server.executeThenClose { inbound in
                        for try await connection in inbound {
                            accepted.take(connection)
                            group.addTask { await self.serve(connection) }
                        }
                    }
                } catch {
                    await accepted.closeUnserved()
                    throw error
                }
                await accepted.closeUnserved()
            }
        } onGracefulShutdown: {
            server.channel.close(promise: nil)
        }
    }

    private func serve(_ connection: NIOAsyncChannel<ByteBuffer, ByteBuffer>) async {
        do {
            try await connection.executeThenClose { inbound, outbound in
                for try await line in inbound {
                    let response = await Self.respond(toLine: Data(line.readableBytesView), host: self.host)
                    var encoded = try JSONEncoder.admin.encode(response)
                    encoded.append(UInt8(ascii: "\n"))
                    try await outbound.write(ByteBuffer(bytes: encoded))
                }
            }
        } catch {
            self.logger.debug("admin connection ended", metadata: ["error": "\(error)"])
        }
    }

    /// Answers one request line.
    static func respond(toLine line: Data, host: ComponentHost) async -> AdminResponse {
        let request: AdminRequest
        do {
            request = try self.decodeRequest(line: Array(line))
        } catch {
            return .failure("\(error)")
        }
        return await self.respond(to: request, host: host)
    }

    /// Decodes one line received on the admin socket (without its newline).
    /// - Parameter line: The line's bytes.
    /// - Returns: The request.
    /// - Throws: ``HostError`` saying what a request looks like.
    public static func decodeRequest(line: [UInt8]) throws -> AdminRequest {
        do {
            return try JSONDecoder().decode(AdminRequest.self, from: Data(line))
        } catch {
            throw HostError("not a valid request: expected one JSON object per line, e.g. {\"command\":\"status\"}")
        }
    }

    /// Carries out a request.
    /// - Parameters:
    ///   - request: The request.
    ///   - host: The host.
    /// - Returns: The response.
    public static func respond(to request: AdminRequest, host: ComponentHost) async -> AdminResponse {
        switch request.command {
        case .status:
            return AdminResponse(ok: true, status: await host.status)
        case .bind:
            guard let hostname = request.hostname, !hostname.isEmpty else { return .failure("bind needs a hostname") }
            guard let plugin = request.plugin, !plugin.isEmpty else { return .failure("bind needs a plugin") }
            do {
                var options = try host.registry.parseAssignments(plugin: plugin, request.set ?? [])
                options.merge(request.options ?? [:]) { _, new in new }
                let component = try await host.bind(
                    hostname, plugin: plugin, options: options, weight: request.weight, persist: request.persist ?? false)
                let persisted = request.persist == true ? " and written to the configuration file" : ""
                return AdminResponse(
                    ok: true, message: "\(component.hostname) → plugin \(plugin) (\(component.state))\(persisted)",
                    component: component)
            } catch {
                return .failure("\(error)")
            }
        case .unbind:
            guard let hostname = request.hostname, !hostname.isEmpty else { return .failure("unbind needs a hostname") }
            do {
                try await host.unbind(hostname, persist: request.persist ?? false)
                let persisted = request.persist == true ? " and removed from the configuration file" : ""
                return AdminResponse(ok: true, message: "\(hostname) unbound\(persisted)")
            } catch {
                return .failure("\(error)")
            }
        }
    }

    /// Makes the socket path usable: creates a missing parent directory (0700), refuses one
    /// that is a symbolic link, not owned by this user or open to others, removes a stale
    /// socket, refuses a live one or a non-socket.
    static func prepare(path: String) throws {
        let directory = SystemCalls.parentDirectory(of: path)
        if SystemCalls.kind(of: directory) == .missing && SystemCalls.ownerAndMode(of: directory) == nil {
            try SystemCalls.makeDirectory(directory, mode: 0o700)
        }
        guard let info = SystemCalls.ownerAndMode(of: directory) else {
            throw HostError("cannot inspect the admin socket's directory \(directory): \(SystemCalls.errorText())")
        }
        if info.isSymlink {
            throw HostError(
                "the admin socket's directory \(directory) is a symbolic link; refusing to follow it: use a real "
                    + "directory owned by this user with mode 0700 ([admin] socket)")
        }
        guard SystemCalls.kind(of: directory) == .directory else {
            throw HostError("the admin socket's directory \(directory) is not a directory")
        }
        if info.owner != SystemCalls.userID {
            throw HostError(
                "the admin socket's directory \(directory) belongs to uid \(info.owner), not to this user "
                    + "(uid \(SystemCalls.userID)): another user could replace the socket; use a directory of your own "
                    + "([admin] socket), or chown \(SystemCalls.userID) \(directory) && chmod 700 \(directory)")
        }
        if info.mode & 0o077 != 0 {
            throw HostError(
                "the admin socket's directory \(directory) has mode \(String(info.mode, radix: 8)): others could reach "
                    + "or replace the socket; run chmod 700 \(directory)")
        }
        switch SystemCalls.kind(of: path) {
        case .missing:
            return
        case .socket:
            if SystemCalls.socketAcceptsConnections(path) {
                throw HostError("another process is serving the admin socket \(path); is a host already running?")
            }
            try SystemCalls.removeFile(path)
        case .directory, .other:
            throw HostError("\(path) exists and is not a socket; refusing to replace it")
        }
    }
}

extension JSONEncoder {
    static var admin: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }
}
