public import ComponentKit
public import KeyValueComponent

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
/// ```
///
/// Changed options are applied in place (``PluginOptionsUpdatable``): the stored values
/// survive a SIGHUP reload.
public enum KeyValuePlugin: ComponentPlugin {
    /// `kv`.
    public static let name = "kv"
    /// What it does.
    public static let description = "A tiny key-value store: set/get/del/keys messages and urn:example:kv IQ queries."
    /// `max_keys` (integer, 1000) and `read_only` (boolean, false).
    public static let options = [
        PluginOption("max_keys", type: .integer, default: .integer(1000), help: "The most keys the store holds."),
        PluginOption("read_only", type: .boolean, default: .boolean(false), help: "Refuse writes."),
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
        return KeyValueComponent.Limits(maxKeys: maxKeys, readOnly: options.boolean("read_only") ?? false)
    }
}

extension KeyValueComponent: PluginOptionsUpdatable {
    /// Applies new limits; the stored values are kept.
    public func optionsChanged(to options: PluginOptions) async throws {
        self.store.limits = try KeyValuePlugin.limits(options)
    }
}
