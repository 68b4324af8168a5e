// Bytes -> one admin-socket line: AdminServer.decodeRequest, then what the server does
// with a decoded bind request before it touches a host (option assignments parsed and
// validated against the stock plugins), then the response encoded back.
//
// Oracles (fatalError = crash = finding): decoding throws only HostError; assignments and
// validation throw only PluginError; a response always encodes as one JSON line.

import ComponentHost
import Foundation
import FuzzOracles
import FuzzSupport
import StockPlugins

/// libFuzzer's entry point: checks one input (a property broken is a crash).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzAdminLine(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let line = Array(UnsafeBufferPointer(start: start, count: count))
    let request: AdminRequest
    do {
        request = try AdminServer.decodeRequest(line: line)
    } catch is HostError {
        return 0
    } catch {
        fatalError("decodeRequest threw \(type(of: error)), not HostError")
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
            fatalError("plugin options threw \(type(of: error)), not PluginError")
        }
    }
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    guard let encoded = try? encoder.encode(response), !encoded.contains(UInt8(ascii: "\n")) else {
        fatalError("the response does not encode as one JSON line")
    }
    return 0
}

runFuzzer(fuzzAdminLine)
