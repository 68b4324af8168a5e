// bytes -> XMLStreamParser -> the client negotiation state machines; the invariants are
// FuzzOracles/NegotiationOracle.swift.

import FuzzOracles
import FuzzSupport

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzNegotiation(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    fuzzOne(start, count, checkNegotiation)
}

runFuzzer(fuzzNegotiation)
