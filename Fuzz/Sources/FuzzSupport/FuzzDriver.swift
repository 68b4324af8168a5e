import CFuzzDriver
import FuzzOracles
import Glibc

/// The signature of `LLVMFuzzerTestOneInput`.
public typealias FuzzTest = @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt

/// Runs libFuzzer's driver (command line from `CommandLine`) with `test`, and exits
/// with its status. Call it from the top-level code of a target's main.swift.
public func runFuzzer(_ test: FuzzTest) -> Never {
    var argc = CommandLine.argc
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
    let status = LLVMFuzzerRunDriver(&argc, &argv, test)
    exit(status)
}

/// Runs one oracle over one input; a ``FuzzOracles/FuzzFinding`` stops the process with a
/// message libFuzzer records as a crash.
public func fuzzOne(
    _ start: UnsafePointer<UInt8>?, _ count: Int, _ oracle: (UnsafeBufferPointer<UInt8>) throws -> Void
) -> CInt {
    do {
        try oracle(UnsafeBufferPointer(start: start, count: count))
    } catch {
        fatalError("\(error)")
    }
    return 0
}
