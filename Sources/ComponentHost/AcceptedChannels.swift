import NIOCore
import Synchronization

/// The connections a server accepted, until its accept loop takes them.
///
/// A connection accepted while the server shuts down may never be handed to the accept
/// loop (its `inbound` sequence ends first). Dropped unfinished, its `NIOAsyncChannel`
/// aborts the process in NIO's debug checks ("Deinited NIOAsyncWriter without calling
/// finish()") and leaks the socket otherwise. Every accepted connection is registered here
/// by the child initializer, taken out by the loop that serves it, and whatever is left
/// when the loop ends is closed properly by ``closeUnserved()``.
final class AcceptedChannels<Inbound: Sendable, Outbound: Sendable>: Sendable {
    private let channels = Mutex<[ObjectIdentifier: NIOAsyncChannel<Inbound, Outbound>]>([:])

    init() {}

    /// Records a connection (in the child initializer); returns it.
    func register(_ channel: NIOAsyncChannel<Inbound, Outbound>) -> NIOAsyncChannel<Inbound, Outbound> {
        self.channels.withLock { $0[ObjectIdentifier(channel.channel)] = channel }
        return channel
    }

    /// The accept loop takes a connection to serve it.
    func take(_ channel: NIOAsyncChannel<Inbound, Outbound>) {
        _ = self.channels.withLock { $0.removeValue(forKey: ObjectIdentifier(channel.channel)) }
    }

    /// Closes every connection accepted but never served (after the accept loop ended).
    func closeUnserved() async {
        let unserved = self.channels.withLock { channels in
            let all = Array(channels.values)
            channels.removeAll()
            return all
        }
        for channel in unserved {
            try? await channel.executeThenClose { _, _ in }
        }
    }
}
