// bytes -> XMLStreamParser; the oracles are FuzzOracles/XMLStreamOracle.swift.

import FuzzOracles
import FuzzSupport

/// libFuzzer's entry point: checks one input (a property broken is a crash).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzXMLStream(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    fuzzOne(start, count, checkXMLStream)
}

runFuzzer(fuzzXMLStream)
