public import ComponentHost

extension PluginRegistry {
    /// The plugins the `component-host` binary ships: ``PluginRegistry/standard`` (those
    /// built into the host library) plus ``EchoPlugin`` (`echo`) and ``KeyValuePlugin`` (`kv`).
    ///
    /// ```swift
    /// let registry = PluginRegistry.stock.adding([WeatherPlugin.self])
    /// ```
    public static let stock: PluginRegistry = PluginRegistry.standard.adding([EchoPlugin.self, KeyValuePlugin.self])
}
