import NIOCore
import Synchronization
import XMPPCore
import XMPPStream

/// The client (c2s) sessions of a ``ReferenceServer``'s configured users, and delivery to
/// them: the users' side of the router.
///
/// A stanza whose `to` is a configured user (``ReferenceServerConfiguration/users``) is
/// theirs, connected or not (RFC 6121 §8.5):
/// - to a full JID with a session: that session;
/// - a message to a bare JID, or to a full JID without a session: the user's newest
///   session; none: `service-unavailable` back to the sender;
/// - a presence to a bare JID: every session; to a missing resource or an offline user:
///   dropped (RFC 6121 §8.5.2.2, §8.5.3.2.3);
/// - an IQ request to a bare JID or a missing resource: `service-unavailable` (the server
///   answers for the account); an IQ result or error there: dropped.
///
/// Any other `to` is not a user's: ``ReferenceServer/userStanzas()`` gets it, as before.
final class C2SSessions: Sendable {
    enum Delivery: Equatable {
        /// Not a configured user: hand it to the simulated users.
        case notAUser
        /// Written to one or more sessions, or dropped as RFC 6121 says.
        case handled
        /// Send this error back to the sender.
        case bounce(Element)
    }

    private struct Session {
        var jid: JID
        var channel: any Channel
        var order: UInt64
    }

    private struct State {
        /// Per bare JID (as `JID.description`), its sessions by resource.
        var sessions: [String: [String: Session]] = [:]
        var order: UInt64 = 0
    }

    /// The configured users' bare JIDs (normalised).
    let users: Set<String>
    private let state = Mutex(State())

    init(users: some Sequence<String>) {
        self.users = Set(users.compactMap { try? JID($0).bare.description })
    }

    /// Whether `bare` is a configured user.
    func isUser(_ bare: JID) -> Bool { self.users.contains(bare.bare.description) }

    /// Binds a resource for `user` (`requested`, or a generated one; one already in use by
    /// another session gets a generated suffix, RFC 6120 §7.7.2.2) to `channel`.
    func bind(user: JID, requested: String?, channel: any Channel) -> JID? {
        self.state.withLock { state in
            let bare = user.bare.description
            var resource = requested ?? Self.generatedResource()
            if state.sessions[bare]?[resource] != nil {
                resource += "-" + Self.generatedResource()
            }
            guard let jid = try? user.bare.withResource(resource) else { return nil }
            state.order += 1
            state.sessions[bare, default: [:]][jid.resourcepart ?? resource] = Session(
                jid: jid, channel: channel, order: state.order)
            return jid
        }
    }

    /// Forgets a session (its connection ended).
    func unbind(_ jid: JID, channel: any Channel) {
        self.state.withLock { state in
            let bare = jid.bare.description
            guard let resource = jid.resourcepart, let session = state.sessions[bare]?[resource],
                session.channel === channel
            else { return }
            state.sessions[bare]?[resource] = nil
            if state.sessions[bare]?.isEmpty == true { state.sessions[bare] = nil }
        }
    }

    /// Every session's full JID, sorted.
    var connected: [JID] {
        self.state.withLock { state in
            state.sessions.values.flatMap { $0.values.map(\.jid) }.sorted { $0.description < $1.description }
        }
    }

    /// Delivers a stanza for the server's users (see the type's rules).
    func deliver(_ element: Element) -> Delivery {
        // The load generators' hot path: no parsing while there are no users.
        guard !self.users.isEmpty else { return .notAUser }
        guard let stanza = Stanza(element), let to = stanza.to, to.localpart != nil, self.isUser(to) else {
            return .notAUser
        }
        let targets: [any Channel] = self.state.withLock { state in
            let sessions = state.sessions[to.bare.description] ?? [:]
            if let resource = to.resourcepart, let session = sessions[resource] {
                return [session.channel]
            }
            switch stanza {
            case .message:
                return sessions.values.max { $0.order < $1.order }.map { [$0.channel] } ?? []
            case .presence:
                return to.resourcepart == nil ? sessions.values.map(\.channel) : []
            case .iq:
                return []
            }
        }
        if !targets.isEmpty {
            for channel in targets {
                channel.writeAndFlush(XMLStreamFrame.element(element), promise: nil)
            }
            return .handled
        }
        switch stanza {
        case .presence:
            return .handled
        case .iq(let iq):
            guard iq.type.isRequest else { return .handled }
            return .bounce(iq.errorResult(StanzaError(.serviceUnavailable)).element)
        case .message(let message):
            guard !stanza.isError else { return .handled }
            return .bounce(message.errorReply(StanzaError(.serviceUnavailable, text: "\(to.bare) is offline")).element)
        }
    }

    private static func generatedResource() -> String {
        String(StreamID.make().prefix(12))
    }
}
