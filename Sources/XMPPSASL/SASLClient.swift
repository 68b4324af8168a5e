public import XMPPCore

/// The client side of one XMPP SASL exchange (RFC 6120 §6) over Cyrus SASL: an I/O-free
/// state machine that turns the server's elements into the elements to send.
///
/// ```swift
/// let client = try SASLClient(configuration: .init(
///     authenticationIdentity: "component.example.com", password: secret,
///     serverFQDN: "example.com"), transport: tlsState)
/// send(try client.start(features: features))            // <auth mechanism='…'>…</auth>
/// while true {
///     switch try client.receive(await nextElement()) {
///     case .send(let response): send(response)
///     case .succeeded(let outcome): return outcome         // server signature verified
///     }
/// }
/// ```
///
/// Mechanism choice (``start(features:)``): EXTERNAL first when
/// ``Configuration/hasClientCertificate`` is set, then SCRAM-SHA-256-PLUS, SCRAM-SHA-1-PLUS,
/// SCRAM-SHA-256, SCRAM-SHA-1, and PLAIN only under TLS. A `-PLUS` mechanism is used only
/// with binding data for the binding type: the first XEP-0440 type the server advertises
/// that we have data for, or `tls-exporter` on TLS 1.3 when the server advertises none.
/// When we could bind but the server offers no `-PLUS` mechanism, the gs2 header says `y`,
/// so a server that supports binding detects a stripped offer (RFC 5802 §6).
///
/// The password is copied into a C buffer for Cyrus; that buffer is zeroed when the exchange
/// ends (success or error) and in `deinit`. It never appears in ``description``, in errors or
/// in reflection. The class is not `Sendable`: use one instance from one task or event loop.
public final class SASLClient: CustomStringConvertible, CustomReflectable {
    /// The client's credentials and policy.
    public struct Configuration: Sendable, CustomStringConvertible, CustomReflectable {
        /// The authentication identity (SCRAM `n=`, PLAIN authcid): for a component, its
        /// domain. Sent exactly as given.
        public var authenticationIdentity: String
        /// The authorization identity (SCRAM `a=`), or `nil` to act as the authentication
        /// identity.
        public var authorizationIdentity: String?
        /// The password, or `nil` when only EXTERNAL may be used.
        public var password: String?
        /// Mechanisms that may be used (case-insensitive), or `nil` for all supported ones.
        public var allowedMechanisms: [String]?
        /// Whether the TLS layer presents a client certificate, enabling EXTERNAL.
        public var hasClientCertificate: Bool
        /// The SASL service name; `xmpp` (RFC 6120 §6.3.4).
        public var service: String
        /// The server's fully qualified domain name.
        public var serverFQDN: String
        /// The fewest SCRAM PBKDF2 iterations (`i=`) accepted from the server; 4096 by default
        /// (RFC 7677 §4). A server asking for fewer is refused before the client sends its
        /// proof, which a fake server could otherwise brute-force cheaply. Lower it only for
        /// tests against a server configured that way.
        public var minimumIterationCount = 4096
        /// The most SCRAM iterations accepted from the server; 1 000 000 by default. Each
        /// iteration is client CPU time, so a fake server asking for billions would stall
        /// the client (and its event loop) for minutes.
        public var maximumIterationCount = 1_000_000
        /// Whether only a `-PLUS` mechanism with a channel binding this client has data for
        /// may be used; any other offer fails with ``SASLError/Kind/noAcceptableMechanism``.
        public var requireChannelBinding = false

        /// Creates a configuration.
        /// - Parameters:
        ///   - authenticationIdentity: The authentication identity (a component's domain).
        ///   - password: The password, or `nil` for EXTERNAL only.
        ///   - serverFQDN: The server's domain.
        ///   - authorizationIdentity: An authorization identity, or `nil`.
        ///   - allowedMechanisms: Mechanisms that may be used, or `nil` for all.
        ///   - hasClientCertificate: Whether a client certificate is available (EXTERNAL).
        ///   - service: The SASL service name, `xmpp` by default.
        public init(
            authenticationIdentity: String,
            password: String?,
            serverFQDN: String,
            authorizationIdentity: String? = nil,
            allowedMechanisms: [String]? = nil,
            hasClientCertificate: Bool = false,
            service: String = "xmpp"
        ) {
            self.authenticationIdentity = authenticationIdentity
            self.password = password
            self.serverFQDN = serverFQDN
            self.authorizationIdentity = authorizationIdentity
            self.allowedMechanisms = allowedMechanisms
            self.hasClientCertificate = hasClientCertificate
            self.service = service
        }

        /// The identities and policy; the password is shown only as `<redacted>` or `nil`.
        public var description: String {
            "SASLClient.Configuration(authcid: \(self.authenticationIdentity), "
                + "authzid: \(self.authorizationIdentity ?? "nil"), "
                + "password: \(self.password == nil ? "nil" : "<redacted>"), "
                + "allowed: \(self.allowedMechanisms?.joined(separator: " ") ?? "all"), "
                + "clientCertificate: \(self.hasClientCertificate), service: \(self.service), "
                + "server: \(self.serverFQDN), iterations: \(self.minimumIterationCount)...\(self.maximumIterationCount), "
                + "requireChannelBinding: \(self.requireChannelBinding))"
        }

        /// A mirror without the password, so `dump` and debuggers do not reveal it.
        public var customMirror: Mirror {
            Mirror(
                self,
                children: [
                    "authenticationIdentity": self.authenticationIdentity,
                    "authorizationIdentity": self.authorizationIdentity as Any,
                    "password": self.password == nil ? "nil" : "<redacted>",
                    "allowedMechanisms": self.allowedMechanisms as Any,
                    "hasClientCertificate": self.hasClientCertificate,
                    "service": self.service,
                    "serverFQDN": self.serverFQDN,
                    "minimumIterationCount": self.minimumIterationCount,
                    "maximumIterationCount": self.maximumIterationCount,
                    "requireChannelBinding": self.requireChannelBinding,
                ]
            )
        }
    }

    private enum State {
        case initial
        /// `<auth/>` sent; `mechanismComplete` once Cyrus has nothing more to send.
        case inProgress(mechanismComplete: Bool)
        case succeeded
        case failed
    }

    private let configuration: Configuration
    private let transport: SASLTransportSecurity
    private var connection: CyrusConnection?
    private var selection: SASLMechanismSelection?
    private var state = State.initial
    /// Whether the SCRAM server-first-message (the first challenge) has been checked.
    private var checkedServerFirst = false

    /// Creates a client for one exchange. Initialises Cyrus SASL once per process if needed.
    /// - Parameters:
    ///   - configuration: Credentials and policy.
    ///   - transport: The TLS state and channel-binding data of the stream.
    /// - Throws: ``SASLError/Kind/cyrus`` when Cyrus cannot be initialised.
    public init(configuration: Configuration, transport: SASLTransportSecurity) throws(SASLError) {
        try CyrusSASL.ensureInitialized()
        self.configuration = configuration
        self.transport = transport
    }

    deinit {
        self.connection?.context.wipePassword()
    }

    /// The mechanism chosen by ``start(features:)``, as sent in `<auth/>`, or `nil` before.
    public var mechanism: String? { self.selection?.mechanism }

    /// Chooses a mechanism from the server's offer and returns the `<auth/>` element.
    ///
    /// - Parameter features: `<stream:features/>` containing `<mechanisms/>` (and optionally
    ///   XEP-0440 `<sasl-channel-binding/>`), or the `<mechanisms/>` element itself.
    /// - Returns: `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='…'>` with the
    ///   base64 initial response, `=` for an empty one, or no text when there is none.
    /// - Throws: ``SASLError/Kind/noAcceptableMechanism`` (with the reason for each offered
    ///   mechanism), ``SASLError/Kind/unexpectedElement`` when called twice, or
    ///   ``SASLError/Kind/cyrus``.
    public func start(features: Element) throws(SASLError) -> Element {
        guard case .initial = self.state else {
            throw SASLError(.unexpectedElement, detail: "start(features:) called twice")
        }
        self.state = .failed  // until the <auth/> is ready
        let mechanisms: Element?
        if features.name.localName == "mechanisms", features.name.namespace == Namespace.sasl {
            mechanisms = features
        } else {
            mechanisms = features.firstChild("mechanisms", namespace: Namespace.sasl)
        }
        guard let mechanisms else {
            throw SASLError(.noAcceptableMechanism, detail: "the server offered no <mechanisms/>")
        }
        let offered = mechanisms.children("mechanism", namespace: Namespace.sasl)
            .map { $0.text.trimmingXMLWhitespace() }
            .filter { !$0.isEmpty }
        let bindingElement =
            features.firstChild("sasl-channel-binding", namespace: Namespace.saslChannelBinding)
            ?? mechanisms.firstChild("sasl-channel-binding", namespace: Namespace.saslChannelBinding)
        let serverBindingTypes = bindingElement.map {
            $0.children("channel-binding", namespace: Namespace.saslChannelBinding).compactMap { $0["type"] }
        }

        let selection = try SASLMechanismSelection.choose(
            offered: offered,
            serverBindingTypes: serverBindingTypes,
            transport: self.transport,
            allowed: self.configuration.allowedMechanisms,
            hasPassword: self.configuration.password != nil,
            hasClientCertificate: self.configuration.hasClientCertificate,
            requireChannelBinding: self.configuration.requireChannelBinding
        )
        self.selection = selection

        let context = CyrusCallbackContext()
        context.setNames(
            authentication: self.configuration.authenticationIdentity,
            authorization: self.configuration.authorizationIdentity
        )
        if selection.mechanism != "EXTERNAL", let password = self.configuration.password {
            context.setPassword(password)
        }
        let connection: CyrusConnection
        do {
            connection = try CyrusConnection.client(
                service: self.configuration.service,
                serverFQDN: self.configuration.serverFQDN,
                context: context
            )
            self.connection = connection
            if let type = selection.bindingType, let data = self.transport.channelBindings[type] {
                try connection.setChannelBinding(type, data: data)
            }
            if selection.mechanism == "EXTERNAL" {
                try connection.setExternalIdentity(self.configuration.authenticationIdentity)
            }
        } catch {
            context.wipePassword()
            throw error
        }

        // Cyrus picks the gs2 flag from the list it is given (NATIVE-LIBS §3 item 4): one
        // -PLUS name gives "p=", and only a list of more than one name gives "y" when binding
        // data is set. Naming the chosen mechanism twice forces "y" without letting Cyrus
        // choose a different mechanism.
        let list: String
        switch selection.gs2Flag {
        case .supportedButNotUsed: list = "\(selection.mechanism) \(selection.mechanism)"
        case .used, .none: list = selection.mechanism
        }
        let output: [UInt8]?
        let complete: Bool
        switch connection.clientStart(mechanisms: list) {
        case .complete(let bytes):
            output = bytes
            complete = true
        case .continue(let bytes):
            output = bytes
            complete = false
        case .failed(let failure):
            self.finish(succeeded: false)
            throw SASLError(.cyrus, detail: "sasl_client_start(\(selection.mechanism)): \(failure.detail)")
        }
        try self.checkGS2Header(output, selection: selection)
        self.state = .inProgress(mechanismComplete: complete)
        return Element(
            "auth",
            namespace: Namespace.sasl,
            attributes: ["mechanism": selection.mechanism],
            text: output.map { $0.isEmpty ? "=" : SASLBase64.encode($0) }
        )
    }

    /// Handles an element from the server.
    ///
    /// - Parameter element: `<challenge/>`, `<success/>` or `<failure/>` in the SASL namespace.
    /// - Returns: ``SASLClientStep/send(_:)`` with the `<response/>` to a challenge, or
    ///   ``SASLClientStep/succeeded(_:)`` after `<success/>` whose additional data (the
    ///   SCRAM server signature) was verified.
    /// - Throws: the RFC 6120 condition of a `<failure/>` (with its `<text/>` as detail);
    ///   ``SASLError/Kind/serverSignatureMismatch`` when `<success/>` does not prove the
    ///   server's knowledge of the credentials; ``SASLError/Kind/malformedBase64``;
    ///   ``SASLError/Kind/unexpectedElement``; ``SASLError/Kind/cyrus``. Every error ends
    ///   the exchange.
    public func receive(_ element: Element) throws(SASLError) -> SASLClientStep {
        guard case .inProgress(let mechanismComplete) = self.state, let connection, let selection else {
            throw SASLError(.unexpectedElement, detail: "<\(element.name.localName)/> outside an exchange")
        }
        guard element.name.namespace == Namespace.sasl else {
            self.finish(succeeded: false)
            throw SASLError(.unexpectedElement, detail: "<\(element.name.localName)/> in \(element.name.namespace)")
        }
        let data: [UInt8]?
        do {
            data = try SASLBase64.decodeElementText(element.text)
        } catch {
            self.finish(succeeded: false)
            throw error
        }
        switch element.name.localName {
        case "challenge":
            guard !mechanismComplete else {
                self.finish(succeeded: false)
                throw SASLError(.unexpectedElement, detail: "<challenge/> after the mechanism completed")
            }
            if selection.mechanism.hasPrefix("SCRAM-"), !self.checkedServerFirst {
                self.checkedServerFirst = true
                try self.checkIterationCount(data ?? [])
            }
            switch connection.clientStep(data ?? []) {
            case .complete(let output):
                self.state = .inProgress(mechanismComplete: true)
                return .send(Self.response(output))
            case .continue(let output):
                return .send(Self.response(output))
            case .failed(let failure):
                self.finish(succeeded: false)
                throw SASLError(.cyrus, detail: failure.detail)
            }
        case "success":
            if mechanismComplete {
                guard data?.isEmpty ?? true else {
                    self.finish(succeeded: false)
                    throw SASLError(.unexpectedElement, detail: "additional data in <success/> after the mechanism completed")
                }
            } else {
                switch connection.clientStep(data ?? []) {
                case .complete(let output) where output?.isEmpty ?? true:
                    break
                case .complete, .continue:
                    self.finish(succeeded: false)
                    throw SASLError(
                        .serverSignatureMismatch,
                        detail: "<success/> arrived before \(selection.mechanism) completed"
                    )
                case .failed(let failure):
                    self.finish(succeeded: false)
                    throw SASLError(.serverSignatureMismatch, detail: failure.detail)
                }
            }
            self.finish(succeeded: true)
            return .succeeded(
                SASLOutcome(
                    mechanism: selection.mechanism,
                    channelBinding: selection.gs2Flag == .used ? selection.bindingType : nil
                )
            )
        case "failure":
            self.finish(succeeded: false)
            throw SASLError(failure: element)
        default:
            self.finish(succeeded: false)
            throw SASLError(.unexpectedElement, detail: "<\(element.name.localName)/> during SASL")
        }
    }

    /// The identity, the chosen mechanism and the state; never the password.
    public var description: String {
        let state =
            switch self.state {
            case .initial: "initial"
            case .inProgress: "in progress"
            case .succeeded: "succeeded"
            case .failed: "failed"
            }
        return "SASLClient(\(self.configuration.authenticationIdentity), mechanism: \(self.mechanism ?? "none"), \(state))"
    }

    /// A mirror without the password.
    public var customMirror: Mirror {
        Mirror(self, children: ["configuration": self.configuration, "mechanism": self.mechanism as Any])
    }

    /// The Cyrus connection, for tests that check the password buffer is wiped.
    var connectionForTesting: CyrusConnection? { self.connection }

    // MARK: Private

    private static func response(_ output: [UInt8]?) -> Element {
        Element("response", namespace: Namespace.sasl, text: output.map { SASLBase64.encode($0) })
    }

    /// Ends the exchange and zeroes the password buffer.
    private func finish(succeeded: Bool) {
        self.state = succeeded ? .succeeded : .failed
        self.connection?.context.wipePassword()
    }

    /// Refuses a SCRAM server-first-message (`r=…,s=…,i=…`, RFC 5802 §7) whose iteration
    /// count is missing or below ``Configuration/minimumIterationCount``: Cyrus' client
    /// accepts any count, and the proof it sends next can be brute-forced offline at the
    /// cost of that many PBKDF2 rounds per guess. A count above
    /// ``Configuration/maximumIterationCount`` is refused too (it only burns client CPU).
    private func checkIterationCount(_ serverFirst: [UInt8]) throws(SASLError) {
        let attributes = serverFirst.split(separator: UInt8(ascii: ","))
        let count = attributes.lazy
            .filter { $0.starts(with: Array("i=".utf8)) }
            .compactMap { Int(String(decoding: $0.dropFirst(2), as: UTF8.self)) }
            .first
        guard let count, count >= self.configuration.minimumIterationCount else {
            self.finish(succeeded: false)
            let found = count.map { "\($0) iterations" } ?? "no valid iteration count"
            throw SASLError(
                .weakServerParameters,
                detail: "the server's SCRAM challenge asks for \(found); at least "
                    + "\(self.configuration.minimumIterationCount) iterations are required (a fake server lowers the "
                    + "count to brute-force the client's proof cheaply)")
        }
        guard count <= self.configuration.maximumIterationCount else {
            self.finish(succeeded: false)
            throw SASLError(
                .weakServerParameters,
                detail: "the server's SCRAM challenge asks for \(count) iterations; at most "
                    + "\(self.configuration.maximumIterationCount) are accepted (each costs client CPU time)")
        }
    }

    /// Checks that Cyrus' gs2 header says what the selection intends (RFC 5802 §7 `gs2-cbind-flag`).
    private func checkGS2Header(_ output: [UInt8]?, selection: SASLMechanismSelection) throws(SASLError) {
        guard selection.mechanism.hasPrefix("SCRAM-") else { return }
        let expected: String
        switch selection.gs2Flag {
        case .used: expected = "p=\(selection.bindingType?.rawValue ?? ""),"
        case .supportedButNotUsed: expected = "y,"
        case .none: expected = "n,"
        }
        guard let output, output.starts(with: Array(expected.utf8)) else {
            self.finish(succeeded: false)
            throw SASLError(
                .cyrus,
                detail: "Cyrus did not produce the expected gs2 header \"\(expected)\" for \(selection.mechanism)"
            )
        }
    }
}
