public import XMPPCore

/// What the caller of ``SASLServer`` must send next.
public enum SASLServerStep: Hashable, Sendable {
    /// Send this `<challenge/>` and wait for a `<response/>`.
    case challenge(Element)
    /// Send this `<success/>` (with additional data, e.g. the SCRAM server signature);
    /// the client is authenticated as `authenticatedIdentity`.
    case success(Element, authenticatedIdentity: String)
    /// Send this `<failure/>`; the exchange is over. The error says why (locally; the element
    /// carries only the RFC 6120 condition).
    case failure(Element, SASLError)
}

/// The server side of one XMPP SASL exchange (RFC 6120 §6) over Cyrus SASL, for the reference
/// server: advertises mechanisms and answers `<auth/>` and `<response/>` without I/O.
///
/// Configuration never touches `/etc`: `sasldb_path`, `mech_list` and optionally
/// `scram_iteration_counter` are served by a per-connection `SASL_CB_GETOPT`, which Cyrus
/// consults before the global callbacks and the config file, so servers with different
/// databases can live in one process.
///
/// The server checks what Cyrus does not: a `-PLUS` mechanism must come with gs2 `p=`, and a
/// mechanism without `-PLUS` must not (NATIVE-LIBS §3 item 4); PLAIN is neither offered nor
/// accepted without TLS (`encryption-required`).
///
/// The class is not `Sendable`: use one instance from one task or event loop.
public final class SASLServer: CustomStringConvertible {
    /// Where the accounts are and what may be offered.
    public struct Configuration: Sendable, CustomStringConvertible {
        /// The sasldb file (Berkeley DB, e.g. made by `saslpasswd2 -f PATH -u REALM USER`).
        public var sasldbPath: String
        /// The mechanisms that may be offered, without `-PLUS` (added automatically when
        /// channel-binding data is available). Default: SCRAM-SHA-256, SCRAM-SHA-1, PLAIN.
        public var mechanisms: [String]
        /// PBKDF2 iterations for SCRAM, or `nil` for Cyrus' default (4096). Lower only in tests.
        public var scramIterationCount: Int?
        /// The realm users are looked up in (`saslpasswd2 -u`), or `nil` for the server FQDN.
        public var realm: String?
        /// The SASL service name; `xmpp`.
        public var service: String
        /// The server's fully qualified domain name.
        public var serverFQDN: String
        /// The identity established by the TLS layer from a verified client certificate, or
        /// `nil`. When set, EXTERNAL is offered and authenticates as this identity.
        public var externalIdentity: String?

        /// Creates a configuration.
        /// - Parameters:
        ///   - sasldbPath: The sasldb file.
        ///   - serverFQDN: The server's domain.
        ///   - realm: The user realm, or `nil` for `serverFQDN`.
        ///   - mechanisms: Mechanisms that may be offered (without `-PLUS`).
        ///   - scramIterationCount: SCRAM iterations, or `nil` for the default.
        ///   - externalIdentity: A verified client-certificate identity enabling EXTERNAL.
        ///   - service: The SASL service name, `xmpp` by default.
        public init(
            sasldbPath: String,
            serverFQDN: String,
            realm: String? = nil,
            mechanisms: [String] = ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"],
            scramIterationCount: Int? = nil,
            externalIdentity: String? = nil,
            service: String = "xmpp"
        ) {
            self.sasldbPath = sasldbPath
            self.serverFQDN = serverFQDN
            self.realm = realm
            self.mechanisms = mechanisms
            self.scramIterationCount = scramIterationCount
            self.externalIdentity = externalIdentity
            self.service = service
        }

        /// All settings (none is secret).
        public var description: String {
            "SASLServer.Configuration(sasldb: \(self.sasldbPath), server: \(self.serverFQDN), "
                + "realm: \(self.realm ?? "nil"), mechanisms: \(self.mechanisms.joined(separator: " ")), "
                + "external: \(self.externalIdentity ?? "nil"))"
        }
    }

    private enum State {
        case initial
        /// `<auth/>` handled; `gs2CheckPending` while a SCRAM client-first message is awaited.
        case inProgress(mechanism: String, gs2CheckPending: Bool)
        case finished
    }

    private let configuration: Configuration
    private let transport: SASLTransportSecurity
    private let connection: CyrusConnection
    private var state = State.initial

    /// The channel-binding type set on the Cyrus connection, or `nil`.
    public let channelBindingType: SASLChannelBindingType?

    /// The mechanisms to advertise, in preference order, e.g. `SCRAM-SHA-256-PLUS` first when
    /// channel-binding data is set; PLAIN only under TLS; EXTERNAL only with an external identity.
    public let mechanisms: [String]

    /// Creates the server side of one exchange. Initialises Cyrus SASL once per process if needed.
    ///
    /// Cyrus binds one channel-binding type per connection; the server uses the first usable
    /// of `tls-exporter` (TLS 1.3 only), `tls-server-end-point`, `tls-unique` (below 1.3 only)
    /// and advertises it with XEP-0440 (``channelBindingElement``).
    /// - Parameters:
    ///   - configuration: Database, mechanisms, realm.
    ///   - transport: The stream's TLS state and channel-binding data.
    /// - Throws: ``SASLError/Kind/cyrus`` when Cyrus cannot create the connection.
    public init(configuration: Configuration, transport: SASLTransportSecurity) throws(SASLError) {
        self.configuration = configuration
        self.transport = transport
        var allowed = configuration.mechanisms.map { Self.baseName($0.uppercased()) }
        if configuration.externalIdentity != nil, !allowed.contains("EXTERNAL") {
            allowed.append("EXTERNAL")
        }
        var options = [
            "sasldb_path": configuration.sasldbPath,
            "mech_list": allowed.joined(separator: " "),
            "auxprop_plugin": "sasldb",
            "pwcheck_method": "auxprop",
        ]
        if let count = configuration.scramIterationCount {
            options["scram_iteration_counter"] = String(count)
        }
        self.connection = try CyrusConnection.server(
            service: configuration.service,
            serverFQDN: configuration.serverFQDN,
            realm: configuration.realm,
            context: CyrusCallbackContext(options: options)
        )
        let bindingType = transport.usableBindingTypes.first
        if let bindingType, let data = transport.channelBindings[bindingType] {
            try self.connection.setChannelBinding(bindingType, data: data)
        }
        self.channelBindingType = bindingType
        if let identity = configuration.externalIdentity {
            try self.connection.setExternalIdentity(identity)
        }
        let listed = try self.connection.listMechanisms().map { $0.uppercased() }
        let order = ["EXTERNAL"] + SASLMechanismSelection.preference
        let preferred = order.filter { listed.contains($0) }
        let others = listed.filter { !order.contains($0) }
        self.mechanisms = (preferred + others).filter { mechanism in
            if mechanism == "PLAIN", !transport.isTLSActive { return false }
            if mechanism == "EXTERNAL", configuration.externalIdentity == nil { return false }
            return allowed.contains(Self.baseName(mechanism))
        }
    }

    /// `<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>` listing ``mechanisms``.
    public var mechanismsElement: Element {
        Element(
            "mechanisms",
            namespace: Namespace.sasl,
            children: self.mechanisms.map { Element("mechanism", namespace: Namespace.sasl, text: $0) }
        )
    }

    /// XEP-0440 `<sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'>` naming
    /// ``channelBindingType``, or `nil` without channel binding.
    public var channelBindingElement: Element? {
        guard let type = self.channelBindingType else { return nil }
        return Element(
            "sasl-channel-binding",
            namespace: Namespace.saslChannelBinding,
            children: [Element("channel-binding", namespace: Namespace.saslChannelBinding, attributes: ["type": type.rawValue])]
        )
    }

    /// Handles the client's `<auth/>` (or an `<abort/>`).
    /// - Parameter auth: `<auth mechanism='…'>` with the base64 initial response, `=` for an
    ///   empty one, or nothing.
    /// - Returns: A challenge, success or failure (`invalid-mechanism`, `encryption-required`,
    ///   `incorrect-encoding`, `malformed-request`, `not-authorized`, `aborted`, …).
    public func start(auth: Element) -> SASLServerStep {
        guard case .initial = self.state else {
            return self.fail(.malformedRequest, "<\(auth.name.localName)/> after the exchange started")
        }
        if auth.name == QualifiedName(Namespace.sasl, "abort") {
            return self.fail(.aborted, "the client aborted")
        }
        guard auth.name == QualifiedName(Namespace.sasl, "auth") else {
            return self.fail(.malformedRequest, "expected <auth/>, got <\(auth.name.localName)/>")
        }
        guard let requested = auth["mechanism"]?.trimmingXMLWhitespace(), !requested.isEmpty else {
            return self.fail(.invalidMechanism, "<auth/> without a mechanism")
        }
        let mechanism = requested.uppercased()
        if mechanism == "PLAIN", !self.transport.isTLSActive {
            return self.fail(.encryptionRequired, "PLAIN refused without TLS")
        }
        guard self.mechanisms.contains(mechanism) else {
            return self.fail(.invalidMechanism, "\(requested) is not offered")
        }
        let data: [UInt8]?
        do {
            data = try SASLBase64.decodeElementText(auth.text)
        } catch {
            return self.fail(.incorrectEncoding, error.detail ?? "bad base64")
        }
        var gs2CheckPending = mechanism.hasPrefix("SCRAM-")
        if gs2CheckPending, let data, !data.isEmpty {
            if let refusal = Self.gs2Refusal(mechanism: mechanism, clientFirst: data) {
                return self.fail(.malformedRequest, refusal)
            }
            gs2CheckPending = false
        }
        self.state = .inProgress(mechanism: mechanism, gs2CheckPending: gs2CheckPending)
        return self.handle(self.connection.serverStart(mechanism: Self.baseName(mechanism), data))
    }

    /// Handles the client's `<response/>` (or an `<abort/>`).
    /// - Parameter response: `<response>` with base64 data.
    /// - Returns: The next challenge, success or failure.
    public func receive(response: Element) -> SASLServerStep {
        guard case .inProgress(let mechanism, let gs2CheckPending) = self.state else {
            return self.fail(.malformedRequest, "<\(response.name.localName)/> outside an exchange")
        }
        if response.name == QualifiedName(Namespace.sasl, "abort") {
            return self.fail(.aborted, "the client aborted")
        }
        guard response.name == QualifiedName(Namespace.sasl, "response") else {
            return self.fail(.malformedRequest, "expected <response/>, got <\(response.name.localName)/>")
        }
        let data: [UInt8]?
        do {
            data = try SASLBase64.decodeElementText(response.text)
        } catch {
            return self.fail(.incorrectEncoding, error.detail ?? "bad base64")
        }
        if gs2CheckPending {
            if let refusal = Self.gs2Refusal(mechanism: mechanism, clientFirst: data ?? []) {
                return self.fail(.malformedRequest, refusal)
            }
            self.state = .inProgress(mechanism: mechanism, gs2CheckPending: false)
        }
        return self.handle(self.connection.serverStep(data ?? []))
    }

    /// The configuration summary and the advertised mechanisms.
    public var description: String {
        "SASLServer(\(self.configuration.serverFQDN), mechanisms: \(self.mechanisms.joined(separator: " ")))"
    }

    // MARK: Private

    private func handle(_ result: CyrusStepResult) -> SASLServerStep {
        switch result {
        case .continue(let output):
            return .challenge(Element("challenge", namespace: Namespace.sasl, text: output.map { SASLBase64.encode($0) }))
        case .complete(let output):
            self.state = .finished
            guard let username = self.connection.username else {
                return self.fail(.temporaryAuthFailure, "Cyrus reported no user name")
            }
            let text = output.flatMap { $0.isEmpty ? nil : SASLBase64.encode($0) }
            return .success(
                Element("success", namespace: Namespace.sasl, text: text),
                authenticatedIdentity: self.bareIdentity(username)
            )
        case .failed(let failure):
            return self.fail(failure.condition, failure.detail)
        }
    }

    private func fail(_ kind: SASLError.Kind, _ detail: String) -> SASLServerStep {
        self.state = .finished
        let error = SASLError(kind, detail: detail)
        return .failure(error.failureElement(), error)
    }

    /// Cyrus appends `@realm` to a user name without `@` (lib/canonusr.c); the reported
    /// identity is the name as the client sent it, so that suffix is removed again.
    private func bareIdentity(_ username: String) -> String {
        let realm = self.configuration.realm ?? self.configuration.serverFQDN
        let suffix = "@" + realm
        guard username.hasSuffix(suffix) else { return username }
        let bare = String(username.dropLast(suffix.count))
        return bare.contains("@") ? username : bare
    }

    /// Why a SCRAM client-first message's gs2 flag disagrees with the mechanism, or `nil`.
    private static func gs2Refusal(mechanism: String, clientFirst: [UInt8]) -> String? {
        let plus = mechanism.hasSuffix("-PLUS")
        let bindingUsed = clientFirst.starts(with: Array("p=".utf8))
        if plus, !bindingUsed {
            return "\(mechanism) requires channel binding (gs2 \"p=\")"
        }
        if !plus, bindingUsed {
            return "channel binding (gs2 \"p=\") with \(mechanism), which is not a -PLUS mechanism"
        }
        return nil
    }

    private static func baseName(_ mechanism: String) -> String {
        mechanism.hasSuffix("-PLUS") ? String(mechanism.dropLast(5)) : mechanism
    }
}
