// Server input -> SASLClient (the real Cyrus SASL client).
//
// The first control bytes choose what the "server" offers (which mechanisms, whether
// XEP-0440 channel-binding types are advertised, TLS 1.3 or not); the rest is a sequence
// of server elements separated by 0xFF: the first byte of each picks <challenge/>,
// <success/> or <failure/>, and whether the payload is sent base64-encoded (reaching Cyrus)
// or as raw text (reaching the base64 decoder).
//
// Oracles (a thrown FuzzFinding: a crash under libFuzzer, a failure in the replay tests):
// - errors are SASLErrors and never contain the password;
// - a success names an offered mechanism;
// - the password buffer is wiped once the exchange ends (success or error).
// ASan checks every byte Cyrus touches. The iteration window is narrowed to 1...4096 so
// that no input can make one execution slow (the default window is 4096...1 000 000).

import XMPPCore
import XMPPSASL

private let password = "fuzz-password-7f3a"
private let mechanisms = ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN", "EXTERNAL"]

/// FuzzSASLClient's oracle (see the file's notes).
public enum SASLClientOracle {
    /// Checks one input; throws ``FuzzFinding`` when a property is broken.
    public static func check(_ bytes: UnsafeBufferPointer<UInt8>) throws {
        var input = FuzzInput(bytes)
        let offerMask = input.byte()
        let flags = input.byte()
        var offered = mechanisms.enumerated().filter { offerMask & (1 << UInt8($0.offset)) != 0 }.map(\.element)
        if offered.isEmpty { offered = ["SCRAM-SHA-256"] }

        var configuration = SASLClient.Configuration(
            authenticationIdentity: "component.example.com", password: password, serverFQDN: "example.com")
        configuration.minimumIterationCount = 1
        configuration.maximumIterationCount = 4096
        configuration.requireChannelBinding = flags & 0x01 != 0
        let exporter = [UInt8](repeating: 0x42, count: 32)
        let transport = SASLTransportSecurity(
            isTLSActive: flags & 0x02 == 0, isTLS13: flags & 0x04 == 0, channelBindings: [.tlsExporter: exporter])
        guard let client = try? SASLClient(configuration: configuration, transport: transport) else { return }

        var children = [
            Element(
                "mechanisms", namespace: Namespace.sasl,
                children: offered.map { Element("mechanism", namespace: Namespace.sasl, text: $0) })
        ]
        if flags & 0x08 != 0 {
            let types = flags & 0x10 != 0 ? ["tls-exporter"] : ["tls-unique", "tls-server-end-point"]
            children.append(
                Element(
                    "sasl-channel-binding", namespace: Namespace.saslChannelBinding,
                    children: types.map {
                        Element("channel-binding", namespace: Namespace.saslChannelBinding, attributes: ["type": $0])
                    }))
        }
        do {
            _ = try client.start(features: Element("features", namespace: Namespace.stream, children: children))
        } catch {
            try checkError(error)
            return
        }

        for message in input.rest.split(separator: 0xFF, omittingEmptySubsequences: false).prefix(8) {
            guard let selector = message.first else { continue }
            let payload = Array(message.dropFirst())
            let name = ["challenge", "success", "failure"][Int(selector % 3)]
            let text: String
            if selector & 0x80 != 0 {
                text = String(decoding: payload, as: UTF8.self)  // raw: the base64 decoder's input
            } else {
                text = base64(payload)
            }
            let element: Element
            if name == "failure" {
                element = Element(
                    "failure", namespace: Namespace.sasl, children: [Element("not-authorized", namespace: Namespace.sasl)])
            } else {
                element = Element(name, namespace: Namespace.sasl, text: text.isEmpty && selector & 0x40 != 0 ? "=" : text)
            }
            let step: SASLClientStep
            do {
                step = try client.receive(element)
            } catch {
                try checkError(error)
                return
            }
            if case .succeeded(let outcome) = step {
                guard offered.contains(outcome.mechanism) else {
                    throw FuzzFinding("succeeded with \(outcome.mechanism), which was not offered: \(offered)")
                }
                return
            }
        }
    }
}

private func checkError(_ error: SASLError) throws {
    if error.description.contains(password) {
        throw FuzzFinding("a SASL error shows the password: \(error)")
    }
}

private func base64(_ bytes: [UInt8]) -> String {
    let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    var output: [UInt8] = []
    var index = 0
    while index < bytes.count {
        let chunk = Array(bytes[index..<min(index + 3, bytes.count)])
        let value = chunk.enumerated().reduce(0) { $0 | (Int($1.element) << (16 - 8 * $1.offset)) }
        for position in 0..<4 {
            output.append(position <= chunk.count ? alphabet[(value >> (18 - 6 * position)) & 0x3F] : UInt8(ascii: "="))
        }
        index += 3
    }
    return String(decoding: output, as: UTF8.self)
}
