// UTF-8 -> HostConfiguration.parse (TOMLKit, then the host's own validation).
//
// Oracles (fatalError = crash = finding):
// - only ConfigurationError is thrown, and it never shows the password;
// - a configuration that parses explains itself (check-config) without showing the
//   password, and its ComponentConfiguration validates or fails with a ComponentError.
// The environment has one variable, P, holding the password; files named in the input are
// only read if they are regular files of at most 64 KiB (the loader's own rule).

import ComponentHost
import ComponentKit
import FuzzOracles
import FuzzSupport
import StockPlugins

private let password = "fuzz-password-19c2"

/// libFuzzer's entry point: checks one input (a property broken is a crash).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHostConfiguration(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: start, count: count), as: UTF8.self)
    let configuration: HostConfiguration
    do {
        configuration = try HostConfiguration.parse(
            text, path: "/nonexistent/fuzz.toml", environment: ["P": password], registry: .stock)
    } catch let error as ConfigurationError {
        if error.description.contains(password) {
            fatalError("a configuration error shows the password: \(error)")
        }
        return 0
    } catch {
        fatalError("HostConfiguration.parse threw \(type(of: error)), not ConfigurationError: \(error)")
    }
    let explanation = configuration.explanation
    if explanation.contains(password) || "\(configuration)".contains(password) {
        fatalError("check-config output shows the password")
    }
    do {
        try configuration.componentConfiguration.validate()
    } catch {
        if error.description.contains(password) {
            fatalError("a validation error shows the password: \(error)")
        }
    }
    return 0
}

runFuzzer(fuzzHostConfiguration)
