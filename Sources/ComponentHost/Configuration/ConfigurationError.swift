/// A configuration file that cannot be used, with where and why.
///
/// ```
/// host.toml:4: server.port: expected an integer from 1 to 65535, found a string ("5270x")
/// ```
///
/// Never contains a secret: passwords are only ever read from the files and variables the
/// configuration names, and errors name those files and variables, not their content.
public struct ConfigurationError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The file, when the configuration came from one.
    public var path: String?
    /// The 1-based line, when known.
    public var line: Int?
    /// The key, dotted (`server.port`, `component[1].options.prefix`), when the error is about one.
    public var key: String?
    /// What is wrong and what was expected.
    public var message: String

    /// Creates an error.
    /// - Parameters:
    ///   - path: The file.
    ///   - line: The 1-based line.
    ///   - key: The dotted key.
    ///   - message: What is wrong and what was expected.
    public init(path: String? = nil, line: Int? = nil, key: String? = nil, _ message: String) {
        self.path = path
        self.line = line
        self.key = key
        self.message = message
    }

    /// `path:line: key: message`, leaving out what is unknown.
    public var description: String {
        var location = self.path ?? "configuration"
        if let line = self.line {
            location += ":\(line)"
        }
        if let key = self.key {
            return "\(location): \(key): \(self.message)"
        }
        return "\(location): \(self.message)"
    }
}
