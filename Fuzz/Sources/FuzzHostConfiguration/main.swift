// UTF-8 -> HostConfiguration.parse; the oracle is HostFuzzOracles/HostConfigurationOracle.swift.

import FuzzSupport
import HostFuzzOracles

/// libFuzzer's entry point: checks one input (a property broken is a crash).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHostConfiguration(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    fuzzOne(start, count, HostConfigurationOracle.check)
}

runFuzzer(fuzzHostConfiguration)
