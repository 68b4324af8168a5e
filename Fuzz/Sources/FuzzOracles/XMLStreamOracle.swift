// bytes -> XMLStreamParser.
//
// Input layout: [split selector] [split seed] [restart mask] [limits selector] payload…
//
// - The payload is fed in chunks chosen by the first two bytes (all at once, byte by
//   byte, fixed or pseudo-random sizes), events drained after each chunk.
// - After the n-th element the parser is restarted when bit n % 8 of the restart mask
//   is set (`restart()`), and always after <proceed/> (`restartRejectingPendingInput()`
//   when bit 0 is set, else `restart()`) and <success/> (`restart()`), as the negotiation does.
// - Small limits (chosen by the fourth byte) so the limit paths are reached.
//
// Oracles (a thrown FuzzFinding: a crash under libFuzzer, a failure in the replay tests):
// 1. Chunking independence: the same payload fed all at once gives the same events and
//    the same error condition (up to the point where a size limit fired: the size
//    checks are allowed to trigger at chunk boundaries, so only a common prefix is
//    compared when either run stopped on policy-violation; and an error in one run with
//    none in the other is accepted, since expat diagnoses some partial tokens only when
//    more bytes arrive).
// 2. A failed parser throws the same error again.
// 3. Round trip: every element, serialised by XMLStreamEncoder inside a synthetic stream
//    and parsed again (default limits), gives back an equal element; the same for the
//    stream header.
// 4. XMPPCore views of every element (Stanza, StanzaError, StreamError) do not crash, and
//    StreamError(element:) re-serialised parses back to an equal error.

import XMPPCore
import XMPPStream

private struct Outcome {
    var events: [XMLStreamEvent] = []
    var error: StreamError?
}

private func limits(_ selector: UInt8) -> XMLStreamLimits {
    XMLStreamLimits(
        maxStanzaSize: [64, 256, 1024, 1 << 20][Int(selector & 3)],
        maxDepth: [1, 2, 4, 64][Int(selector >> 2 & 3)],
        maxAttributes: [0, 1, 3, 64][Int(selector >> 4 & 3)],
        maxHeaderSize: [32, 128, 512, 16 << 10][Int(selector >> 6 & 3)]
    )
}

private func run(_ chunks: [ArraySlice<UInt8>], limits: XMLStreamLimits, restartMask: UInt8) throws -> Outcome {
    let parser = XMLStreamParser(limits: limits)
    var outcome = Outcome()
    var elementCount = 0
    do {
        for (index, chunk) in chunks.enumerated() {
            if index & 1 == 0 {
                parser.feed(chunk)
            } else {
                chunk.withUnsafeBytes { parser.feed($0) }
            }
            while let event = try parser.nextEvent() {
                outcome.events.append(event)
                guard case .element(let element) = event else { continue }
                elementCount += 1
                if element.name.localName == "proceed" && element.name.namespace == Namespace.tls && restartMask & 1 != 0 {
                    try parser.restartRejectingPendingInput()
                } else if element.name.localName == "proceed" && element.name.namespace == Namespace.tls {
                    parser.restart()
                } else if element.name.localName == "success" && element.name.namespace == Namespace.sasl {
                    parser.restart()
                } else if restartMask & (1 << (elementCount % 8)) != 0 {
                    parser.restart()
                }
            }
        }
    } catch {
        outcome.error = error
        // Oracle 2: the parser stays failed.
        let again: StreamError
        do {
            _ = try parser.nextEvent()
            throw FuzzFinding("a failed parser returned an event after \(error)")
        } catch let error as FuzzFinding {
            throw error
        } catch let error as StreamError {
            again = error
        } catch {
            throw FuzzFinding("a failed parser threw \(error), not a StreamError")
        }
        if again != error {
            throw FuzzFinding("a failed parser threw \(again) after \(error)")
        }
    }
    return outcome
}

/// Serialises `element` inside a stream with `namespace` as content namespace and parses it back.
private func roundTrip(_ element: Element, namespace: String) throws {
    var encoder = XMLStreamEncoder(contentNamespace: namespace)
    var text = ""
    encoder.encode(.header(StreamHeader(contentNamespace: namespace, to: "example.com")), into: &text)
    encoder.encode(.element(element), into: &text)
    encoder.encode(.close, into: &text)
    let parser = XMLStreamParser()
    parser.feed(Array(text.utf8))
    var events: [XMLStreamEvent] = []
    do {
        while let event = try parser.nextEvent() {
            events.append(event)
        }
    } catch {
        throw FuzzFinding("round trip: re-parsing \(element.name) failed with \(error)\ntext: \(text.debugDescription)")
    }
    guard events.count == 3, case .element(let again) = events[1] else {
        throw FuzzFinding("round trip: \(events.count) events re-parsing \(element.name)\ntext: \(text.debugDescription)")
    }
    guard again == element else {
        throw FuzzFinding(
            "round trip: \(element) came back as \(again)\ntext: \(text.debugDescription)\n\(element.children) vs \(again.children)"
        )
    }
}

private func roundTrip(_ header: StreamHeader) throws {
    var encoder = XMLStreamEncoder(contentNamespace: header.contentNamespace)
    var text = ""
    encoder.encode(.header(header), into: &text)
    let parser = XMLStreamParser()
    parser.feed(Array(text.utf8))
    let event: XMLStreamEvent?
    do {
        event = try parser.nextEvent()
    } catch {
        throw FuzzFinding("header round trip failed with \(error)\ntext: \(text.debugDescription)")
    }
    guard case .streamOpened(let again) = event else {
        throw FuzzFinding("header round trip: no header\ntext: \(text.debugDescription)")
    }
    guard again == header else {
        throw FuzzFinding("header round trip: \(header) came back as \(again)\ntext: \(text.debugDescription)")
    }
}

private func views(_ element: Element) throws {
    if let stanza = Stanza(element) {
        _ = stanza
    }
    if let error = StanzaError(element: element) {
        _ = error
    }
    if let streamError = StreamError(element: element) {
        let again = StreamError(element: streamError.element)
        if again?.condition != streamError.condition {
            throw FuzzFinding("StreamError \(streamError) came back as \(String(describing: again))")
        }
    }
    _ = try? element.validateCharacters()
}

/// Checks one input; throws ``FuzzFinding`` when a property is broken.
public func checkXMLStream(_ bytes: UnsafeBufferPointer<UInt8>) throws {
    var input = FuzzInput(bytes)
    let selector = input.byte()
    let seed = input.byte()
    let restartMask = input.byte()
    let limitSelector = input.byte()
    let payload = input.rest
    let streamLimits = limits(limitSelector)

    let chunked = try run(chunks(of: payload, selector: selector, seed: seed), limits: streamLimits, restartMask: restartMask)
    let whole = try run([payload[...]], limits: streamLimits, restartMask: restartMask)

    // Oracle 1: chunking independence.
    let sizeLimited = chunked.error?.condition == .policyViolation || whole.error?.condition == .policyViolation
    if sizeLimited {
        let common = min(chunked.events.count, whole.events.count)
        if chunked.events[..<common] != whole.events[..<common] {
            throw FuzzFinding("chunking changed the events before a policy violation:\n\(chunked.events)\nvs\n\(whole.events)")
        }
    } else {
        if chunked.events != whole.events {
            throw FuzzFinding("chunking changed the events:\n\(chunked.events)\nvs\n\(whole.events)")
        }
        // Expat may hold a partial token it would reject once split differently (an
        // invalid byte right behind the first one of the document is only diagnosed when
        // it arrives in a later call), so an error in one run and none in the other is
        // accepted when the events agree; two different errors are not.
        if let chunkedError = chunked.error, let wholeError = whole.error, chunkedError.condition != wholeError.condition {
            throw FuzzFinding(
                "chunking changed the error: \(String(describing: chunked.error)) vs \(String(describing: whole.error))")
        }
    }

    // Oracles 3 and 4.
    for event in whole.events {
        switch event {
        case .streamOpened(let header):
            try roundTrip(header)
        case .element(let element):
            try roundTrip(element, namespace: Namespace.client)
            try roundTrip(element, namespace: Namespace.componentAccept)
            try views(element)
        case .streamClosed:
            break
        }
    }
}
