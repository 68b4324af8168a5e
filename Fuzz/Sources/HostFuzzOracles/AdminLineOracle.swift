// Bytes -> one admin-socket line: AdminServer.decodeRequest, then what the server does
// with a decoded bind request before it touches a host (option assignments parsed and
// validated against the stock plugins), then the response encoded back.
//
// Oracles (a thrown FuzzFinding = a finding): decoding throws only HostError; assignments
// and validation throw only PluginError; a response always encodes as one JSON line.

import ComponentHost
import Foundation
import FuzzOracles
import StockPlugins

/// FuzzAdminLine's oracle (see the file's notes).
public enum AdminLineOracle {
    /// Checks one input; throws ``FuzzOracles/FuzzFinding`` when a property is broken.
    public static func check(_ bytes: UnsafeBufferPointer<UInt8>) throws {
        let request: AdminRequest
        do {
            request = try AdminServer.decodeRequest(line: Array(bytes))
        } catch is HostError {
            return
        } catch {
            throw FuzzFinding("decodeRequest threw \(type(of: error)), not HostError")
        }
        var response = AdminResponse(ok: true, message: request.hostname)
        if let plugin = request.plugin {
            do {
                var options = try PluginRegistry.stock.parseAssignments(plugin: plugin, request.set ?? [])
                options.merge(request.options ?? [:]) { _, new in new }
                _ = try PluginRegistry.stock.validate(plugin: plugin, options: options)
            } catch let error as PluginError {
                response = .failure(error.message)
            } catch {
                throw FuzzFinding("plugin options threw \(type(of: error)), not PluginError")
            }
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let encoded = try? encoder.encode(response), !encoded.contains(UInt8(ascii: "\n")) else {
            throw FuzzFinding("the response does not encode as one JSON line")
        }
    }
}
