// bytes -> XMLStreamParser -> the client negotiation state machines.
//
// Input layout: [config] [split selector] [split seed] [SASL script] payload…
//
// The payload plays the server. Its events drive the XEP-0225 machine
// (ComponentNegotiationStateMachine, TLS policy and legacy fallback from the config
// byte) or the XEP-0114 machine (LegacyComponentNegotiationStateMachine), and the
// harness carries out the actions as the channel handler does: parser restarts after
// <proceed/> (rejecting pipelined plaintext) and after SASL success, a simulated TLS
// handshake, and a simulated SASL client whose outcome is read from the script byte
// and the elements the server sends (<success/>, <failure/>).
//
// Invariants (a thrown FuzzFinding: a crash under libFuzzer, a failure in the replay tests):
// - after .fail or .fallBackToLegacy, only .none or .fail;
// - after .negotiated, never .negotiated, .send, .startTLS, .authenticate or a restart;
// - with TLS required (STARTTLS policy), nothing but a header and <starttls/> is sent
//   before tlsEstablished(), .authenticate / .forwardToSASL never happen before it, and
//   .negotiated implies isSecured;
// - .startTLS only after <starttls/> was sent; .restartAndSendHeader only while
//   authenticating; .negotiated features carry <bind xmlns='urn:xmpp:component:0'/>;
// - the legacy machine sends exactly one <handshake/> (SHA-1 hex, 40 characters) and
//   only after a jabber:component:accept header with an id; .negotiated only after it.

import XMPPCore
import XMPPStream

private enum Stop: Error {
    case closed
}

private struct XEP0225Driver {
    var machine: ComponentNegotiationStateMachine
    let parser: XMLStreamParser
    var script: UInt8
    var terminal = false
    var negotiated = false
    var sentStartTLS = false
    var tlsUp = false
    var authenticating = false

    init(configuration: ComponentNegotiationStateMachine.Configuration, parser: XMLStreamParser, script: UInt8) {
        self.machine = ComponentNegotiationStateMachine(configuration: configuration)
        self.parser = parser
        self.script = script
        self.tlsUp = configuration.tls == .direct
    }

    var tlsRequired: Bool { self.machine.configuration.tls == .startTLS }

    /// The next script bit (cycling).
    mutating func bit() -> Bool {
        let value = self.script & 1 == 1
        self.script = self.script >> 1 | (value ? 0x80 : 0)
        return value
    }

    mutating func handle(_ action: ComponentNegotiationStateMachine.Action, event: String) throws {
        if self.terminal {
            switch action {
            case .none, .fail: return
            default: throw FuzzFinding("\(action) after a terminal action (event: \(event))")
            }
        }
        if self.negotiated {
            switch action {
            case .none, .fail: break
            default: throw FuzzFinding("\(action) after .negotiated (event: \(event))")
            }
        }
        switch action {
        case .none:
            break
        case .sendHeader:
            if self.tlsRequired && !self.tlsUp && self.sentStartTLS {
                throw FuzzFinding("a second plaintext header after <starttls/> (event: \(event))")
            }
        case .send(let element):
            if self.tlsRequired && !self.tlsUp {
                guard element.name == QualifiedName(Namespace.tls, "starttls"), !self.sentStartTLS else {
                    throw FuzzFinding("sent \(element) before TLS with TLS required (event: \(event))")
                }
            }
            if element.name == QualifiedName(Namespace.tls, "starttls") {
                if self.tlsUp { throw FuzzFinding("<starttls/> sent over TLS (event: \(event))") }
                self.sentStartTLS = true
            }
        case .startTLS:
            guard self.sentStartTLS, !self.tlsUp else {
                throw FuzzFinding(".startTLS without <starttls/> sent, or with TLS up (event: \(event))")
            }
            try self.parser.restartRejectingPendingInput()
            if self.bit() {
                self.tlsUp = true
                try self.handle(self.machine.tlsEstablished(), event: "tlsEstablished")
                if !self.machine.isSecured { throw FuzzFinding("tlsEstablished() but not isSecured") }
            } else {
                throw Stop.closed  // the handshake failed: the handler closes the connection
            }
        case .authenticate(let features):
            if self.tlsRequired && !self.tlsUp { throw FuzzFinding(".authenticate before TLS (event: \(event))") }
            if features.firstChild("mechanisms", namespace: Namespace.sasl) == nil {
                throw FuzzFinding(".authenticate with features lacking <mechanisms/>")
            }
            self.authenticating = true
            if self.bit() && self.bit() {  // the SASL client finds no usable mechanism
                try self.handle(self.machine.authenticationFailed(Stop.closed), event: "authenticationFailed")
            }
        case .forwardToSASL(let element):
            if self.tlsRequired && !self.tlsUp { throw FuzzFinding(".forwardToSASL before TLS (event: \(event))") }
            guard self.authenticating, element.name.namespace == Namespace.sasl else {
                throw FuzzFinding(".forwardToSASL(\(element)) while not authenticating")
            }
            switch element.name.localName {
            case "success":
                if self.bit() || self.bit() {
                    self.authenticating = false
                    try self.handle(self.machine.authenticationSucceeded(), event: "authenticationSucceeded")
                } else {
                    try self.handle(self.machine.authenticationFailed(Stop.closed), event: "authenticationFailed")
                }
            case "failure":
                try self.handle(self.machine.authenticationFailed(Stop.closed), event: "authenticationFailed")
            default:
                break  // a challenge: the SASL client answers (not modelled)
            }
        case .restartAndSendHeader:
            if self.tlsRequired && !self.tlsUp { throw FuzzFinding(".restartAndSendHeader before TLS") }
            self.parser.restart()
        case .negotiated(let features):
            if self.tlsRequired && !self.machine.isSecured { throw FuzzFinding(".negotiated without TLS") }
            if features.firstChild("bind", namespace: Namespace.component) == nil {
                throw FuzzFinding(".negotiated with features lacking <bind/>")
            }
            if !self.machine.isNegotiated { throw FuzzFinding(".negotiated but !isNegotiated") }
            self.negotiated = true
        case .fallBackToLegacy:
            if self.sentStartTLS || self.tlsUp && self.machine.configuration.tls == .startTLS {
                throw FuzzFinding("fallback to XEP-0114 after STARTTLS (event: \(event))")
            }
            if !self.machine.configuration.allowsLegacyFallback { throw FuzzFinding("fallback not allowed") }
            self.terminal = true
        case .fail:
            self.terminal = true
            if self.machine.isNegotiated { throw FuzzFinding(".fail but still isNegotiated") }
        }
    }

    mutating func event(_ event: XMLStreamEvent) throws {
        switch event {
        case .streamOpened(let header):
            try self.handle(self.machine.streamOpened(header), event: "header")
        case .element(let element):
            try self.handle(self.machine.received(element), event: "<\(element.name)>")
        case .streamClosed:
            try self.handle(self.machine.connectionClosed(), event: "close")
            throw Stop.closed
        }
    }
}

private struct XEP0114Driver {
    var machine: LegacyComponentNegotiationStateMachine
    var terminal = false
    var sentHandshake = false
    var negotiated = false

    mutating func handle(_ action: LegacyComponentNegotiationStateMachine.Action, event: String) throws {
        if self.terminal || self.negotiated {
            switch action {
            case .none, .fail: break
            default: throw FuzzFinding("\(action) after a terminal action (event: \(event))")
            }
        }
        switch action {
        case .none, .sendHeader:
            break
        case .send(let element):
            guard !self.sentHandshake, element.name.localName == "handshake", element.text.utf8.count == 40,
                element.text.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) })
            else {
                throw FuzzFinding("legacy machine sent \(element) (handshake sent before: \(self.sentHandshake))")
            }
            guard let id = self.machine.streamID, !id.isEmpty else { throw FuzzFinding("handshake without a stream id") }
            self.sentHandshake = true
        case .negotiated:
            guard self.sentHandshake, self.machine.isNegotiated else {
                throw FuzzFinding("legacy .negotiated before the handshake was sent")
            }
            self.negotiated = true
        case .fail:
            self.terminal = true
        }
    }

    mutating func event(_ event: XMLStreamEvent) throws {
        switch event {
        case .streamOpened(let header):
            let before = self.sentHandshake
            try self.handle(self.machine.streamOpened(header), event: "header")
            if !before && self.sentHandshake && header.contentNamespace != Namespace.componentAccept {
                throw FuzzFinding("handshake sent on a \(header.contentNamespace) stream")
            }
        case .element(let element):
            try self.handle(self.machine.received(element), event: "<\(element.name)>")
        case .streamClosed:
            try self.handle(self.machine.connectionClosed(), event: "close")
            throw Stop.closed
        }
    }
}

/// Checks one input; throws ``FuzzFinding`` when an invariant is broken.
public func checkNegotiation(_ bytes: UnsafeBufferPointer<UInt8>) throws {
    var input = FuzzInput(bytes)
    let config = input.byte()
    let selector = input.byte()
    let seed = input.byte()
    let script = input.byte()
    let payload = input.rest
    let parser = XMLStreamParser(
        limits: XMLStreamLimits(maxStanzaSize: 4096, maxDepth: 8, maxAttributes: 8, maxHeaderSize: 1024))

    if config & 0x80 != 0 {
        var driver = XEP0114Driver(
            machine: LegacyComponentNegotiationStateMachine(hostname: "echo.example.com", secret: "s3cr3t"))
        try driver.handle(driver.machine.start(), event: "start")
        do {
            for chunk in chunks(of: payload, selector: selector, seed: seed) {
                parser.feed(chunk)
                while let event = try parser.nextEvent() {
                    try driver.event(event)
                }
            }
            try driver.handle(driver.machine.connectionClosed(), event: "eof")
        } catch let finding as FuzzFinding {
            throw finding
        } catch {
            try driver.handle(driver.machine.connectionClosed(), event: "error")
        }
        return
    }

    let tls: ComponentNegotiationStateMachine.TLSPolicy = [.startTLS, .direct, .none, .startTLS][Int(config & 3)]
    let configuration = ComponentNegotiationStateMachine.Configuration(
        serverDomain: "example.com",
        defaultHostname: "component.example.com",
        tls: tls,
        allowsLegacyFallback: config & 4 != 0
    )
    var driver = XEP0225Driver(configuration: configuration, parser: parser, script: script)
    do {
        try driver.handle(driver.machine.start(), event: "start")
        for chunk in chunks(of: payload, selector: selector, seed: seed) {
            parser.feed(chunk)
            while let event = try parser.nextEvent() {
                try driver.event(event)
            }
        }
        try driver.handle(driver.machine.connectionClosed(), event: "eof")
    } catch let finding as FuzzFinding {
        throw finding
    } catch {
        do {
            try driver.handle(driver.machine.connectionClosed(), event: "error")
        } catch let finding as FuzzFinding {
            throw finding
        } catch {
            // Stop or a parser error while closing: not a finding.
        }
    }
}
