// bytes -> XMLStreamParser; the oracles are FuzzOracles/XMLStreamOracle.swift.

import FuzzOracles
import FuzzSupport

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzXMLStream(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    fuzzOne(start, count, checkXMLStream)
}

runFuzzer(fuzzXMLStream)
