public import XMPPCore

/// The error ``XMLStreamHandler`` fires through `errorCaught` when it ends a stream
/// because of what the peer sent.
///
/// By the time it is fired, ``streamError`` has been written to the peer (after a stream
/// header of our own if none had been sent), followed by `</stream:stream>`, and the
/// channel is being closed.
public struct XMLStreamHandlerError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The stream error sent to the peer.
    public var streamError: StreamError

    /// Creates the error.
    /// - Parameter streamError: The stream error sent to the peer.
    public init(streamError: StreamError) {
        self.streamError = streamError
    }

    /// `XML stream rejected: stream error <condition>: <text>`.
    public var description: String {
        "XML stream rejected: \(self.streamError)"
    }
}
