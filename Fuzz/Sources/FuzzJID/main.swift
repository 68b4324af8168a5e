// UTF-8 -> JID(_:); the oracle is FuzzOracles/JIDOracle.swift.

import FuzzOracles
import FuzzSupport

/// libFuzzer's entry point: checks one input (a property broken is a crash).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJID(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    fuzzOne(start, count, JIDOracle.check)
}

runFuzzer(fuzzJID)
