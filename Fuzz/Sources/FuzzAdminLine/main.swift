// Bytes -> one admin-socket line; the oracle is HostFuzzOracles/AdminLineOracle.swift.

import FuzzSupport
import HostFuzzOracles

/// libFuzzer's entry point: checks one input (a property broken is a crash).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzAdminLine(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    fuzzOne(start, count, AdminLineOracle.check)
}

runFuzzer(fuzzAdminLine)
