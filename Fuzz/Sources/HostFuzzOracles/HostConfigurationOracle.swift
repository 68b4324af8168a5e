// UTF-8 -> HostConfiguration.parse (TOMLKit, then the host's own validation).
//
// Oracles (a thrown FuzzFinding = a finding):
// - only ConfigurationError is thrown, and it never shows the password;
// - a configuration that parses explains itself (check-config) without showing the
//   password, and its ComponentConfiguration validates or fails with a ComponentError
//   that does not show it either.
// The environment has one variable, P, holding the password; files named in the input are
// only read if they are regular files of at most 64 KiB (the loader's own rule).

import ComponentHost
import ComponentKit
import FuzzOracles
import StockPlugins

/// FuzzHostConfiguration's oracle (see the file's notes).
public enum HostConfigurationOracle {
    /// The password the environment variable `P` holds; no output may show it.
    public static let password = "fuzz-password-19c2"

    /// Checks one input; throws ``FuzzOracles/FuzzFinding`` when a property is broken.
    public static func check(_ bytes: UnsafeBufferPointer<UInt8>) throws {
        let text = String(decoding: bytes, as: UTF8.self)
        let configuration: HostConfiguration
        do {
            configuration = try HostConfiguration.parse(
                text, path: "/nonexistent/fuzz.toml", environment: ["P": password], registry: .stock)
        } catch let error as ConfigurationError {
            if error.description.contains(password) {
                throw FuzzFinding("a configuration error shows the password: \(error)")
            }
            return
        } catch {
            throw FuzzFinding("HostConfiguration.parse threw \(type(of: error)), not ConfigurationError: \(error)")
        }
        if configuration.explanation.contains(password) || "\(configuration)".contains(password) {
            throw FuzzFinding("check-config output shows the password")

        }
        do {
            try configuration.componentConfiguration.validate()
        } catch {
            if error.description.contains(password) {
                throw FuzzFinding("a validation error shows the password: \(error)")
            }
        }
    }
}
