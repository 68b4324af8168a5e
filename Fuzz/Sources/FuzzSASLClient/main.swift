// Server input -> SASLClient (the real Cyrus SASL client); the oracle is
// FuzzOracles/SASLClientOracle.swift.

import FuzzOracles
import FuzzSupport

/// libFuzzer's entry point: checks one input (a property broken is a crash).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSASLClient(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    fuzzOne(start, count, SASLClientOracle.check)
}

runFuzzer(fuzzSASLClient)
