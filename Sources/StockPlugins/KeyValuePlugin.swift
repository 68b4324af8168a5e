public import ComponentHost
public import ComponentKit
import Foundation
public import KeyValueComponent
import XMPPCore

/// `plugin = "kv"`: ``KeyValueComponent/KeyValueComponent``, a tiny key-value store
/// answering `set`/`get`/`del`/`keys` messages and `urn:example:kv` IQs.
///
/// ```toml
/// [[component]]
/// hostname = "kv.example.com"
/// plugin = "kv"
/// [component.options]
/// max_keys = 100
/// read_only = false
/// max_key_bytes = 256
/// max_value_bytes = 4096
/// writers = "admin@example.com, ops.example.com"   # empty: anyone may write
/// ```
///
/// Changed options are applied in place (``PluginOptionsUpdatable``): the stored values
/// survive a SIGHUP reload.
public enum KeyValuePlugin: ComponentPlugin {
    /// `kv`.
    public static let name = "kv"
    /// What it does.
    public static let description = "A tiny key-value store: set/get/del/keys messages and urn:example:kv IQ queries."
    /// `max_keys` (integer, 1000), `read_only` (boolean, false), `max_key_bytes` (integer,
    /// 256), `max_value_bytes` (integer, 4096) and `writers` (string, empty: anyone).
    public static let options = [
        PluginOption("max_keys", type: .integer, default: .integer(1000), help: "The most keys the store holds."),
        PluginOption("read_only", type: .boolean, default: .boolean(false), help: "Refuse writes."),
        PluginOption("max_key_bytes", type: .integer, default: .integer(256), help: "The longest key, in bytes."),
        PluginOption("max_value_bytes", type: .integer, default: .integer(4096), help: "The longest value, in bytes."),
        PluginOption(
            "writers", type: .string, default: .string(""),
            help: "Comma-separated bare JIDs or domains allowed to write; empty lets anyone write."),
    ]

    /// Makes a ``KeyValueComponent/KeyValueComponent`` with an empty store.
    /// - Throws: ``PluginError`` when `max_keys` is not positive.
    public static func make(options: PluginOptions, context: PluginContext) throws -> any ComponentHandler {
        KeyValueComponent(limits: try self.limits(options))
    }

    static func limits(_ options: PluginOptions) throws -> KeyValueComponent.Limits {
        let maxKeys = options.integer("max_keys") ?? 1000
        guard maxKeys > 0 else {
            throw PluginError.invalidValue("max_keys", "must be at least 1, not \(maxKeys)")
        }
        let maxKeyBytes = options.integer("max_key_bytes") ?? 256
        guard (1...65536).contains(maxKeyBytes) else {
            throw PluginError.invalidValue("max_key_bytes", "must be from 1 to 65536, not \(maxKeyBytes)")
        }
        let maxValueBytes = options.integer("max_value_bytes") ?? 4096
        guard (0...(1 << 20)).contains(maxValueBytes) else {
            throw PluginError.invalidValue("max_value_bytes", "must be from 0 to 1048576, not \(maxValueBytes)")
        }
        var writers: [JID]?
        let list = (options.string("writers") ?? "").split(separator: ",")
            .map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }
        if !list.isEmpty {
            writers = try list.map { text in
                guard let jid = try? JID(text), jid.resourcepart == nil else {
                    throw PluginError.invalidValue("writers", "\"\(text)\" is not a bare JID or a domain")
                }
                return jid
            }
        }
        return KeyValueComponent.Limits(
            maxKeys: maxKeys, readOnly: options.boolean("read_only") ?? false, maxKeyBytes: maxKeyBytes,
            maxValueBytes: maxValueBytes, writers: writers)
    }
}

extension KeyValueComponent: PluginOptionsUpdatable {
    /// Applies new limits; the stored values are kept.
    public func optionsChanged(to options: PluginOptions) async throws {
        self.store.limits = try KeyValuePlugin.limits(options)
    }
}
