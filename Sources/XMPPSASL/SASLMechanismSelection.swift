/// The client's choice of mechanism, channel binding and gs2 flag for one offer (pure logic,
/// no Cyrus), following DESIGN.md: EXTERNAL when a client certificate is configured, then
/// SCRAM-SHA-256-PLUS > SCRAM-SHA-1-PLUS > SCRAM-SHA-256 > SCRAM-SHA-1 > PLAIN (TLS only).
struct SASLMechanismSelection: Hashable {
    /// How the client's gs2 header will flag channel binding (RFC 5802 §5.1).
    enum GS2Flag: Hashable {
        /// `n`: the client does not support channel binding.
        case none
        /// `y`: the client supports channel binding but thinks the server does not
        /// (downgrade protection: a server that does support it fails the exchange).
        case supportedButNotUsed
        /// `p=<type>`: channel binding is used (a `-PLUS` mechanism).
        case used
    }

    /// The mechanism to put in `<auth mechanism='…'/>`, e.g. `SCRAM-SHA-256-PLUS`.
    var mechanism: String
    /// The binding type to give Cyrus (for `.used` and `.supportedButNotUsed`).
    var bindingType: SASLChannelBindingType?
    /// The expected gs2 flag (SCRAM only; `.none` for other mechanisms).
    var gs2Flag: GS2Flag

    /// Mechanisms this client implements, in preference order (EXTERNAL handled separately).
    static let preference = ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]

    /// Chooses a mechanism.
    /// - Parameters:
    ///   - offered: The server's `<mechanism/>` names, in the server's order.
    ///   - serverBindingTypes: XEP-0440 types the server advertised (`nil` if it did not).
    ///   - transport: The TLS layer.
    ///   - allowed: Mechanisms the configuration allows (`nil`: all).
    ///   - hasPassword: Whether a password is configured.
    ///   - hasClientCertificate: Whether a client certificate is available (EXTERNAL).
    ///   - requireChannelBinding: Whether only a `-PLUS` mechanism with usable binding data may be chosen.
    /// - Throws: ``SASLError/Kind/noAcceptableMechanism`` listing why each offered mechanism
    ///   was refused.
    static func choose(
        offered: [String],
        serverBindingTypes: [String]?,
        transport: SASLTransportSecurity,
        allowed: [String]?,
        hasPassword: Bool,
        hasClientCertificate: Bool,
        requireChannelBinding: Bool = false
    ) throws(SASLError) -> SASLMechanismSelection {
        let offeredUpper = offered.map { $0.uppercased() }
        let allowedUpper = allowed.map { Set($0.map { $0.uppercased() }) }
        let usable = transport.usableBindingTypes
        // The binding type: the server's first advertised (XEP-0440) type we have data for;
        // without XEP-0440, tls-exporter on TLS 1.3 only.
        let bindingType: SASLChannelBindingType?
        var bindingRefusal = "no channel-binding data"
        if !transport.isTLSActive {
            bindingType = nil
            bindingRefusal = "channel binding needs TLS"
        } else if let serverBindingTypes {
            bindingType = serverBindingTypes.lazy.compactMap { SASLChannelBindingType(rawValue: $0) }
                .first { usable.contains($0) }
            bindingRefusal = "no data for the server's channel-binding types [\(serverBindingTypes.joined(separator: ", "))]"
        } else if transport.isTLS13, usable.contains(.tlsExporter) {
            bindingType = .tlsExporter
        } else {
            bindingType = nil
            bindingRefusal =
                transport.isTLS13
                ? "no tls-exporter data" : "no channel-binding type advertised (XEP-0440) and TLS is below 1.3"
        }

        var reasons: [String] = []
        func refuse(_ mechanism: String, _ reason: String) {
            reasons.append("\(mechanism) refused: \(reason)")
        }

        func acceptable(_ mechanism: String) -> Bool {
            if let allowedUpper, !allowedUpper.contains(mechanism) {
                refuse(mechanism, "not in the allowed mechanisms")
                return false
            }
            if requireChannelBinding, !mechanism.hasSuffix("-PLUS") {
                refuse(mechanism, "channel binding is required (require_channel_binding) and this mechanism has none")
                return false
            }
            switch mechanism {
            case "EXTERNAL":
                guard hasClientCertificate else {
                    refuse(mechanism, "no client certificate")
                    return false
                }
                guard transport.isTLSActive else {
                    refuse(mechanism, "EXTERNAL refused without TLS")
                    return false
                }
            case "PLAIN":
                guard transport.isTLSActive else {
                    refuse(mechanism, "PLAIN refused without TLS")
                    return false
                }
                guard hasPassword else {
                    refuse(mechanism, "no password")
                    return false
                }
            case "SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS":
                guard bindingType != nil else {
                    refuse(mechanism, bindingRefusal)
                    return false
                }
                guard hasPassword else {
                    refuse(mechanism, "no password")
                    return false
                }
            case "SCRAM-SHA-256", "SCRAM-SHA-1":
                guard hasPassword else {
                    refuse(mechanism, "no password")
                    return false
                }
            default:
                refuse(mechanism, "not supported")
                return false
            }
            return true
        }

        // Evaluate every offered mechanism so the error can explain each refusal.
        var acceptableMechanisms: Set<String> = []
        for mechanism in offeredUpper where acceptable(mechanism) {
            acceptableMechanisms.insert(mechanism)
        }
        let order = (hasClientCertificate ? ["EXTERNAL"] : []) + self.preference
        guard let chosen = order.first(where: { acceptableMechanisms.contains($0) }) else {
            let offeredText = offered.isEmpty ? "nothing" : offered.joined(separator: ", ")
            throw SASLError(
                .noAcceptableMechanism,
                detail: "offered: \(offeredText); " + (reasons.isEmpty ? "no mechanisms" : reasons.joined(separator: "; "))
            )
        }
        if chosen.hasSuffix("-PLUS") {
            return SASLMechanismSelection(mechanism: chosen, bindingType: bindingType, gs2Flag: .used)
        }
        if chosen.hasPrefix("SCRAM-") {
            // RFC 5802 §6: "y" when we could bind but the server advertises no -PLUS at all;
            // a server that does support binding then fails the exchange (stripped -PLUS).
            let serverOffersPlus = offeredUpper.contains { $0.hasSuffix("-PLUS") }
            if let bindingType, !serverOffersPlus {
                return SASLMechanismSelection(mechanism: chosen, bindingType: bindingType, gs2Flag: .supportedButNotUsed)
            }
        }
        return SASLMechanismSelection(mechanism: chosen, bindingType: nil, gs2Flag: .none)
    }
}
