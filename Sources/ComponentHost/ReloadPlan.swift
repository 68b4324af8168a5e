/// What a reload changes: the difference between the hostnames a host serves and the
/// `[[component]]` entries of the new configuration. Computed without I/O.
///
/// - Hostnames in the file and not served are **added**.
/// - Hostnames served because of the previous file and absent from the new one are
///   **removed**. Hostnames bound at runtime (admin socket, not persisted) are kept.
/// - Hostnames whose plugin or (validated) options differ are **changed**.
public struct ReloadPlan: Hashable, Sendable {
    /// What a host serves now, for planning.
    public struct Running: Hashable, Sendable {
        /// The plugin's name.
        public var plugin: String
        /// Its options.
        public var options: PluginOptions
        /// Whether it came from the configuration file (or a runtime bind).
        public var fromConfiguration: Bool

        /// Creates a description of a served hostname.
        public init(plugin: String, options: PluginOptions, fromConfiguration: Bool) {
            self.plugin = plugin
            self.options = options
            self.fromConfiguration = fromConfiguration
        }
    }

    /// Hostnames to bind.
    public var added: [String] = []
    /// Hostnames to unbind.
    public var removed: [String] = []
    /// Hostnames whose plugin or options change.
    public var changed: [String] = []
    /// Hostnames left as they are.
    public var unchanged: [String] = []

    /// Whether the reload changes nothing.
    public var isEmpty: Bool {
        self.added.isEmpty && self.removed.isEmpty && self.changed.isEmpty
    }

    /// Plans a reload.
    /// - Parameters:
    ///   - running: What is served now, keyed by ``/ComponentKit/HostnameKey`` spelling (domain
    ///     lowercased, resource kept).
    ///   - desired: The new file's entries.
    public init(running: [String: Running], desired: [HostConfiguration.Component]) {
        var desiredKeys = Set<String>()
        for component in desired {
            let key = hostnameKey(component.hostname)
            desiredKeys.insert(key)
            guard let current = running[key] else {
                self.added.append(component.hostname)
                continue
            }
            if current.plugin != component.plugin || current.options != component.options {
                self.changed.append(component.hostname)
            } else {
                self.unchanged.append(component.hostname)
            }
        }
        for (key, current) in running where current.fromConfiguration && !desiredKeys.contains(key) {
            self.removed.append(key)
        }
        self.removed.sort()
    }
}
