// bytes -> XMLStreamParser -> the client negotiation state machines; the invariants are
// FuzzOracles/NegotiationOracle.swift.

import FuzzOracles
import FuzzSupport

/// libFuzzer's entry point: checks one input (a property broken is a crash).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzNegotiation(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    fuzzOne(start, count, checkNegotiation)
}

runFuzzer(fuzzNegotiation)
