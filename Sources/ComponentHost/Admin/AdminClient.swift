import Foundation
import NIOCore
public import NIOPosix

/// Sends ``AdminRequest``s to a running host's admin socket (what `component-host bind`,
/// `unbind` and `status` use).
public struct AdminClient: Sendable {
    /// The socket's path.
    public let path: String
    let eventLoopGroup: MultiThreadedEventLoopGroup

    /// Creates a client.
    /// - Parameters:
    ///   - path: The socket's path.
    ///   - eventLoopGroup: The NIO event loops.
    public init(path: String, eventLoopGroup: MultiThreadedEventLoopGroup = .singleton) {
        self.path = path
        self.eventLoopGroup = eventLoopGroup
    }

    /// Sends one request and waits for its response.
    /// - Parameter request: The request.
    /// - Returns: The host's response.
    /// - Throws: ``HostError`` when the socket cannot be reached or the answer is not valid.
    public func send(_ request: AdminRequest) async throws -> AdminResponse {
        let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>
        do {
            channel = try await ClientBootstrap(group: self.eventLoopGroup)
                .connect(unixDomainSocketPath: self.path) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineFrameDecoder()))
                        return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            throw HostError("cannot reach the admin socket \(self.path): \(error); is the host running?")
        }
        var encoded = try JSONEncoder.admin.encode(request)
        encoded.append(UInt8(ascii: "\n"))
        let payload = encoded
        let line = try await channel.executeThenClose { inbound, outbound -> ByteBuffer? in
            try await outbound.write(ByteBuffer(bytes: payload))
            var iterator = inbound.makeAsyncIterator()
            return try await iterator.next()
        }
        guard let line else {
            throw HostError("the host closed the admin connection without answering")
        }
        do {
            return try JSONDecoder().decode(AdminResponse.self, from: Data(line.readableBytesView))
        } catch {
            throw HostError("the host's answer is not a valid admin response: \(error)")
        }
    }
}
