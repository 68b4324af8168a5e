import ComponentKit
import Foundation
import Logging
import TOMLKit
import XMPPCore

extension HostConfiguration {
    /// Reads and validates a configuration file.
    /// - Parameters:
    ///   - path: The TOML file.
    ///   - environment: Where `password_env` and the default admin socket are looked up;
    ///     the process environment when `nil`.
    ///   - registry: The plugins `plugin = "…"` may name; their options are validated.
    /// - Returns: The validated configuration, with secrets loaded.
    /// - Throws: ``ConfigurationError`` naming the file, line, key and what was expected.
    public static func load(
        path: String, environment: [String: String]? = nil,
        registry: PluginRegistry = .standard
    ) throws -> HostConfiguration {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigurationError(path: path, "cannot read the configuration file: \(Self.reason(error))")
        }
        return try self.parse(text, path: path, environment: environment, registry: registry)
    }

    /// Validates configuration text.
    /// - Parameters:
    ///   - text: TOML.
    ///   - path: The file it came from, for messages and `--persist`; relative
    ///     `secret_file`/`password_file` paths are resolved against its directory.
    ///   - environment: Where `password_env` and the default admin socket are looked up;
    ///     the process environment when `nil`.
    ///   - registry: The plugins `plugin = "…"` may name.
    /// - Returns: The validated configuration.
    /// - Throws: ``ConfigurationError``.
    public static func parse(
        _ text: String, path: String? = nil, environment: [String: String]? = nil,
        registry: PluginRegistry = .standard
    ) throws -> HostConfiguration {
        var loader = Loader(
            path: path, source: TOMLSourceMap(text), environment: environment ?? ProcessInfo.processInfo.environment,
            registry: registry)
        try Self.refuseWhatTOMLKitCannotReport(text, path: path)
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw ConfigurationError(path: path, line: error.source.begin.line, "TOML syntax: \(error.description)")
        } catch {
            throw ConfigurationError(path: path, "TOML syntax: \(error)")
        }
        return try loader.load(table)
    }

    /// toml++ (under TOMLKit 0.6) aborts the whole process, through an assertion, on some
    /// malformed input instead of reporting an error (found by Fuzz/FuzzHostConfiguration):
    /// control characters, and a table header that does not start with a key (`[#`, `[{`).
    /// `check-config` and a SIGHUP reload must report those, so they are refused here first,
    /// with the line.
    static func refuseWhatTOMLKitCannotReport(_ text: String, path: String?) throws {
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            for scalar in line.unicodeScalars
            where scalar.value < 0x20 && scalar != "\t" && scalar != "\r" || scalar.value == 0x7F {
                throw ConfigurationError(
                    path: path, line: index + 1,
                    "TOML syntax: control character U+\(String(scalar.value, radix: 16, uppercase: true)) is not allowed")
            }
            // Scalars, not Characters: "[" followed by a combining mark is one Character.
            var rest = line.unicodeScalars.drop { $0 == " " || $0 == "\t" }
            guard rest.first == "[" else { continue }
            rest = rest.dropFirst()
            if rest.first == "[" { rest = rest.dropFirst() }
            rest = rest.drop { $0 == " " || $0 == "\t" }
            guard let first = rest.first, first != "\r" else {
                throw ConfigurationError(path: path, line: index + 1, "TOML syntax: a table header must be on one line")
            }
            if !(first.isASCII && (first.properties.isAlphabetic || ("0"..."9").contains(first))
                || "_-\"']".unicodeScalars.contains(first))
            {
                throw ConfigurationError(
                    path: path, line: index + 1,
                    "TOML syntax: a table header must start with a key, found U+\(String(first.value, radix: 16, uppercase: true))"
                )
            }
        }
    }

    static func reason(_ error: any Error) -> String {
        if let error = error as? CocoaError, let underlying = error.underlying as? POSIXError {
            return SystemCalls.errorText(underlying.code.rawValue)
        }
        if let error = error as? CocoaError {
            switch error.code {
            case .fileReadNoSuchFile, .fileNoSuchFile: return "no such file"
            case .fileReadNoPermission: return "permission denied"
            case .fileReadInapplicableStringEncoding: return "not UTF-8 text"
            default: break
            }
        }
        return "\(error.localizedDescription)"
    }
}

/// Walks the parsed TOML, section by section, checking every key.
private struct Loader {
    let path: String?
    let source: TOMLSourceMap
    let environment: [String: String]
    let registry: PluginRegistry

    func error(_ key: String?, _ message: String) -> ConfigurationError {
        ConfigurationError(path: self.path, line: key.flatMap { self.source.line(for: $0) }, key: key, message)
    }

    mutating func load(_ root: TOMLTable) throws -> HostConfiguration {
        try self.allowOnly(root, at: nil, ["server", "auth", "admin", "metrics", "logging", "limits", "component"])
        let serverTable = try self.requiredTable(root, "server")
        let server = try self.server(serverTable)
        let auth = try self.auth(try self.requiredTable(root, "auth"))
        if auth.requireChannelBinding, server.tls == .none {
            throw self.error(
                "auth.require_channel_binding",
                "channel binding needs TLS (it ties SASL to the TLS session); set server.tls to \"starttls\" or "
                    + "\"direct\", or remove require_channel_binding")
        }

        var adminSocket = HostConfiguration.defaultAdminSocketPath(
            environment: self.environment, isRoot: SystemCalls.isRoot)
        if let admin = try self.optionalTable(root, "admin") {
            try self.allowOnly(admin, at: "admin", ["socket"])
            if let socket = try self.string(admin, "admin", "socket") {
                guard socket.hasPrefix("/") else {
                    throw self.error("admin.socket", "expected an absolute path, found \"\(socket)\"")
                }
                guard socket.utf8.count < 108 else {
                    throw self.error("admin.socket", "a Unix socket path must be shorter than 108 bytes")
                }
                adminSocket = socket
            }
        }

        var metricsListen: HostConfiguration.ListenAddress?
        if let metrics = try self.optionalTable(root, "metrics") {
            try self.allowOnly(metrics, at: "metrics", ["listen"])
            if let listen = try self.string(metrics, "metrics", "listen") {
                guard let address = Self.listenAddress(listen) else {
                    throw self.error(
                        "metrics.listen",
                        "expected \"HOST:PORT\" (e.g. \"127.0.0.1:9464\" or \"[::1]:9464\"), found \"\(listen)\"")
                }
                metricsListen = address
            }
        }

        var logging = HostConfiguration.Logging(format: .human, level: .info)
        if let table = try self.optionalTable(root, "logging") {
            try self.allowOnly(table, at: "logging", ["format", "level"])
            if let format = try self.string(table, "logging", "format") {
                logging.format = try self.choice(format, "logging.format", HostConfiguration.Logging.Format.self)
            }
            if let level = try self.string(table, "logging", "level") {
                guard let value = Logger.Level(rawValue: level) else {
                    throw self.error(
                        "logging.level",
                        "expected one of trace, debug, info, notice, warning, error, critical; found \"\(level)\"")
                }
                logging.level = value
            }
        }

        var limits = HostConfiguration.Limits()
        if let table = try self.optionalTable(root, "limits") {
            try self.allowOnly(table, at: "limits", ["hostname_stanzas", "hostname_bytes", "connection_bytes"])
            if let value = try self.positive(table, "limits", "hostname_stanzas") {
                limits.hostname.maxStanzas = value
            }
            if let value = try self.positive(table, "limits", "hostname_bytes", atLeast: 64 << 10) {
                limits.hostname.maxBytes = value
            }
            if let value = try self.positive(table, "limits", "connection_bytes", atLeast: 64 << 10) {
                limits.connection.maxBytes = value
            }
        }

        var components: [HostConfiguration.Component] = []
        if let value = root["component"] {
            guard let array = value.array else {
                throw self.error(
                    "component", "expected [[component]] entries (an array of tables), found \(Self.phrase(value.type))")
            }
            var seen: [String: Int] = [:]
            for (index, element) in array.enumerated() {
                let key = "component[\(index)]"
                guard let table = element.table else {
                    throw self.error(key, "expected a table, found \(Self.phrase(element.type))")
                }
                let component = try self.component(table, key)
                let normalised = hostnameKey(component.hostname)
                if let first = seen[normalised] {
                    throw self.error(
                        "\(key).hostname",
                        "\(component.hostname) is already configured by component[\(first)]"
                            + (self.source.line(for: "component[\(first)]").map { " (line \($0))" } ?? ""))
                }
                seen[normalised] = index
                components.append(component)
            }
        }

        var configuration = HostConfiguration(
            server: server, auth: auth, adminSocket: adminSocket, logging: logging, components: components)
        configuration.metricsListen = metricsListen
        configuration.limits = limits
        configuration.path = self.path
        return configuration
    }

    // MARK: Sections

    func server(_ table: TOMLTable) throws -> HostConfiguration.Server {
        try self.allowOnly(
            table, at: "server",
            [
                "host", "port", "domain", "protocol", "tls", "ca_file", "server_name", "allow_plaintext_handshake",
                "allow_insecure_plaintext", "acknowledgements", "legacy_acknowledgements",
            ])
        guard let host = try self.string(table, "server", "host"), !host.isEmpty else {
            throw self.error("server.host", "required: the host name or address of the XMPP server")
        }
        var port = 5347
        if let value = try self.integer(table, "server", "port") {
            guard (1...65535).contains(value) else {
                throw self.error("server.port", "expected a port from 1 to 65535, found \(value)")
            }
            port = value
        }
        guard let domain = try self.string(table, "server", "domain") else {
            throw self.error("server.domain", "required: the server's XMPP domain (e.g. \"example.com\")")
        }
        try self.checkDomain(domain, "server.domain")
        var protocolMode = ComponentConfiguration.ProtocolMode.auto
        if let value = try self.string(table, "server", "protocol") {
            protocolMode = try self.choice(value, "server.protocol", ComponentConfiguration.ProtocolMode.self)
        }
        var tls = ComponentConfiguration.TLSMode.startTLS
        if let value = try self.string(table, "server", "tls") {
            tls = try self.choice(value, "server.tls", ComponentConfiguration.TLSMode.self)
        }
        let caFile = try self.string(table, "server", "ca_file").map { try self.existingFile($0, "server.ca_file") }
        let serverName = try self.string(table, "server", "server_name")
        if let serverName {
            try self.checkDomain(serverName, "server.server_name")
        }
        let allowPlaintext = try self.boolean(table, "server", "allow_plaintext_handshake") ?? false
        let allowInsecure = try self.boolean(table, "server", "allow_insecure_plaintext") ?? false
        if protocolMode == .xep0114, tls == .startTLS {
            throw self.error(
                table["tls"] == nil ? "server.protocol" : "server.tls",
                "tls = \"starttls\" (the default) cannot protect XEP-0114, which has no STARTTLS: its handshake would "
                    + "travel in cleartext; set tls = \"direct\" (a XEP-0114 port with TLS) or, on loopback only, "
                    + "tls = \"none\"")
        }
        if protocolMode != .xep0114, tls == .none, !allowInsecure, !HostConfiguration.isLoopback(host) {
            throw self.error(
                "server.tls",
                "tls = \"none\" to \(host), which is not a loopback address, would run XEP-0225 (SASL and every stanza) "
                    + "in cleartext; use tls = \"starttls\" or \"direct\", or set allow_insecure_plaintext = true if "
                    + "the network is trusted")
        }
        var server = HostConfiguration.Server(
            host: host, port: port, domain: domain, protocolMode: protocolMode, tls: tls, caFile: caFile,
            serverName: serverName, allowPlaintextHandshake: allowPlaintext)
        server.allowInsecurePlaintext = allowInsecure
        server.acknowledgements = try self.boolean(table, "server", "acknowledgements") ?? true
        server.legacyAcknowledgements = try self.boolean(table, "server", "legacy_acknowledgements") ?? false
        return server
    }

    func auth(_ table: TOMLTable) throws -> HostConfiguration.Auth {
        try self.allowOnly(
            table, at: "auth",
            [
                "identity", "password_file", "password_env", "password_credential", "mechanisms", "client_certificate",
                "client_key", "require_channel_binding",
            ])
        guard let identity = try self.string(table, "auth", "identity") else {
            throw self.error(
                "auth.identity", "required: the SASL authentication identity, a domain (e.g. \"component.example.com\")")
        }
        try self.checkDomain(identity, "auth.identity")
        let certificate = try self.string(table, "auth", "client_certificate").map {
            try self.existingFile($0, "auth.client_certificate")
        }
        let key = try self.string(table, "auth", "client_key").map { try self.existingFile($0, "auth.client_key") }
        if (certificate == nil) != (key == nil) {
            throw self.error(
                certificate == nil ? "auth.client_key" : "auth.client_certificate",
                "client_certificate and client_key go together: set both or neither")
        }
        var passwordFile = try self.string(table, "auth", "password_file")
        let passwordEnv = try self.string(table, "auth", "password_env")
        if let credential = try self.string(table, "auth", "password_credential") {
            guard passwordFile == nil, passwordEnv == nil else {
                throw self.error(
                    "auth.password_credential", "set one of password_file, password_env and password_credential")
            }
            passwordFile = try self.credentialPath(credential, "auth.password_credential")
        }
        var password = Secret("")
        var source = HostConfiguration.SecretSource.none
        switch (passwordFile, passwordEnv) {
        case (.some, .some):
            throw self.error("auth.password_env", "set password_file or password_env, not both")
        case (.some(let file), nil):
            let resolved = self.resolvePath(file)
            password = try self.readSecret(resolved, "auth.password_file")
            source = .file(resolved)
        case (nil, .some(let name)):
            guard let value = self.environment[name], !value.isEmpty else {
                throw self.error("auth.password_env", "the environment variable \(name) is not set or empty")
            }
            password = Secret(value)
            source = .environment(name)
        case (nil, nil):
            guard certificate != nil else {
                throw self.error(
                    "auth.password_file",
                    "required: password_file or password_env (or client_certificate and client_key for SASL EXTERNAL)")
            }
        }
        var mechanisms: [String]?
        if let list = try self.stringArray(table, "auth", "mechanisms") {
            guard !list.isEmpty else {
                throw self.error("auth.mechanisms", "expected at least one mechanism, or no mechanisms key (all supported ones)")
            }
            mechanisms = list.map { $0.uppercased() }
        }
        var auth = HostConfiguration.Auth(
            identity: identity, password: password, passwordSource: source, mechanisms: mechanisms,
            clientCertificate: certificate, clientKey: key)
        auth.requireChannelBinding = try self.boolean(table, "auth", "require_channel_binding") ?? false
        return auth
    }

    func component(_ table: TOMLTable, _ key: String) throws -> HostConfiguration.Component {
        try self.allowOnly(table, at: key, ["hostname", "plugin", "secret_file", "secret_credential", "options", "weight"])
        guard let hostname = try self.string(table, key, "hostname") else {
            throw self.error("\(key).hostname", "required: the hostname to bind (e.g. \"echo.example.com\")")
        }
        do {
            let jid = try JID(hostname)
            guard jid.localpart == nil else {
                throw self.error(
                    "\(key).hostname", "\"\(hostname)\" is not a hostname: a component binds a domain, not user@domain")
            }
        } catch let error as ConfigurationError {
            throw error
        } catch {
            throw self.error("\(key).hostname", "\"\(hostname)\" is not a valid hostname: \(error)")
        }
        guard let plugin = try self.string(table, key, "plugin") else {
            throw self.error("\(key).plugin", "required: the plugin serving \(hostname) (e.g. \"echo\")")
        }
        var secret: Secret?
        var secretFile: String?
        if let file = try self.string(table, key, "secret_file") {
            secretFile = self.resolvePath(file)
            secret = try self.readSecret(secretFile!, "\(key).secret_file")
        }
        if let credential = try self.string(table, key, "secret_credential") {
            guard secretFile == nil else {
                throw self.error("\(key).secret_credential", "set secret_file or secret_credential, not both")
            }
            secretFile = try self.credentialPath(credential, "\(key).secret_credential")
            secret = try self.readSecret(secretFile!, "\(key).secret_credential")
        }
        var raw: [String: PluginOptionValue] = [:]
        if let value = table["options"] {
            guard let options = value.table else {
                throw self.error("\(key).options", "expected a table ([component.options]), found \(Self.phrase(value.type))")
            }
            for name in options.keys {
                let optionValue = options[name]!
                switch optionValue.type {
                case .string: raw[name] = .string(optionValue.string ?? "")
                case .int: raw[name] = .integer(optionValue.int ?? 0)
                case .double: raw[name] = .double(optionValue.double ?? 0)
                case .bool: raw[name] = .boolean(optionValue.bool ?? false)
                case .array:
                    raw[name] = .stringArray(try self.stringArray(options, "\(key).options", name) ?? [])
                default:
                    throw self.error(
                        "\(key).options.\(name)",
                        "expected a string, integer, number or boolean, found \(Self.phrase(optionValue.type))")
                }
            }
        }
        guard self.registry[plugin] != nil else {
            let known = self.registry.plugins.map(\.name).joined(separator: ", ")
            throw self.error("\(key).plugin", "unknown plugin \"\(plugin)\"; this host has: \(known)")
        }
        let options: PluginOptions
        do {
            options = try self.registry.validate(plugin: plugin, options: raw)
        } catch let error as PluginError {
            throw self.error(error.option.map { "\(key).options.\($0)" } ?? "\(key).plugin", error.message)
        }
        var component = HostConfiguration.Component(
            hostname: hostname, plugin: plugin, options: options, secret: secret, secretFile: secretFile)
        if let weight = try self.positive(table, key, "weight") {
            guard weight <= 1000 else {
                throw self.error("\(key).weight", "expected an integer from 1 to 1000, found \(weight)")
            }
            component.weight = weight
        }
        return component
    }

    // MARK: Typed access

    func allowOnly(_ table: TOMLTable, at path: String?, _ known: [String]) throws {
        for key in table.keys.sorted() where !known.contains(key) {
            let full = path.map { "\($0).\(key)" } ?? key
            var message = "unknown key"
            if let suggestion = Self.closest(key, in: known) {
                message += "; did you mean \"\(suggestion)\"?"
            } else {
                message += "; expected one of: \(known.joined(separator: ", "))"
            }
            throw self.error(full, message)
        }
    }

    func requiredTable(_ root: TOMLTable, _ key: String) throws -> TOMLTable {
        guard let table = try self.optionalTable(root, key) else {
            throw ConfigurationError(path: self.path, key: key, "required: a [\(key)] section")
        }
        return table
    }

    func optionalTable(_ root: TOMLTable, _ key: String) throws -> TOMLTable? {
        guard let value = root[key] else { return nil }
        guard let table = value.table else {
            throw self.error(key, "expected a table ([\(key)]), found \(Self.phrase(value.type))")
        }
        return table
    }

    func string(_ table: TOMLTable, _ path: String, _ key: String) throws -> String? {
        guard let value = table[key] else { return nil }
        guard let string = value.string else {
            throw self.error("\(path).\(key)", "expected a string, found \(Self.phrase(value.type))")
        }
        return string
    }

    func integer(_ table: TOMLTable, _ path: String, _ key: String) throws -> Int? {
        guard let value = table[key] else { return nil }
        guard let integer = value.int else {
            throw self.error("\(path).\(key)", "expected an integer, found \(Self.phrase(value.type))")
        }
        return integer
    }

    /// An integer of at least `minimum` (a budget smaller than one read of 64 KiB would
    /// refuse a fast handler's stanzas under load).
    func positive(_ table: TOMLTable, _ path: String, _ key: String, atLeast minimum: Int = 1) throws -> Int? {
        guard let value = try self.integer(table, path, key) else { return nil }
        guard value >= minimum else {
            throw self.error("\(path).\(key)", "expected at least \(minimum), found \(value)")
        }
        return value
    }

    func boolean(_ table: TOMLTable, _ path: String, _ key: String) throws -> Bool? {
        guard let value = table[key] else { return nil }
        guard let boolean = value.bool else {
            throw self.error("\(path).\(key)", "expected true or false, found \(Self.phrase(value.type))")
        }
        return boolean
    }

    func stringArray(_ table: TOMLTable, _ path: String, _ key: String) throws -> [String]? {
        guard let value = table[key] else { return nil }
        guard let array = value.array else {
            throw self.error("\(path).\(key)", "expected an array of strings, found \(Self.phrase(value.type))")
        }
        return try array.map { element in
            guard let string = element.string else {
                throw self.error(
                    "\(path).\(key)", "expected an array of strings, found an array containing \(Self.phrase(element.type))")
            }
            return string
        }
    }

    func choice<Value: RawRepresentable & CaseIterable>(_ text: String, _ key: String, _: Value.Type) throws -> Value
    where Value.RawValue == String {
        guard let value = Value(rawValue: text) else {
            let allowed = Value.allCases.map(\.rawValue).joined(separator: ", ")
            throw self.error(key, "expected one of \(allowed); found \"\(text)\"")
        }
        return value
    }

    func checkDomain(_ text: String, _ key: String) throws {
        guard let jid = try? JID(text), jid.localpart == nil, jid.resourcepart == nil else {
            throw self.error(key, "expected a domain name (e.g. \"example.com\"), found \"\(text)\"")
        }
    }

    func resolvePath(_ file: String) -> String {
        guard !file.hasPrefix("/"), let path = self.path else { return file }
        return SystemCalls.parentDirectory(of: path) + "/" + file
    }

    /// The path of a systemd credential (`LoadCredential=NAME:…` in the unit):
    /// `$CREDENTIALS_DIRECTORY/NAME`.
    func credentialPath(_ name: String, _ key: String) throws -> String {
        guard !name.isEmpty, !name.contains("/"), name != ".", name != ".." else {
            throw self.error(key, "expected a credential name (as in LoadCredential=NAME:/path), found \"\(name)\"")
        }
        guard let directory = self.environment["CREDENTIALS_DIRECTORY"], directory.hasPrefix("/") else {
            throw self.error(
                key,
                "CREDENTIALS_DIRECTORY is not set: systemd sets it for a unit with LoadCredential=\(name):/path; "
                    + "outside systemd use password_file or secret_file instead")
        }
        return directory + "/" + name
    }

    func existingFile(_ file: String, _ key: String) throws -> String {
        let resolved = self.resolvePath(file)
        guard FileManager.default.isReadableFile(atPath: resolved) else {
            let reason = FileManager.default.fileExists(atPath: resolved) ? "is not readable" : "does not exist"
            throw self.error(key, "\(resolved) \(reason)")
        }
        return resolved
    }

    /// Reads a secret file: its content without the trailing newline. Errors name the
    /// file, never its content. Only a regular file of at most 64 KiB is read (not a device
    /// such as /dev/zero, not a FIFO that never ends).
    func readSecret(_ file: String, _ key: String) throws -> Secret {
        let limit = 64 << 10
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: file, isDirectory: &isDirectory) else {
            throw self.error(key, "cannot read \(file): \(SystemCalls.errorText(ENOENT))")
        }
        let attributes = try? FileManager.default.attributesOfItem(atPath: file)
        guard !isDirectory.boolValue, attributes?[.type] as? FileAttributeType == .typeRegular else {
            throw self.error(key, "\(file) is not a regular file")
        }
        guard let size = attributes?[.size] as? Int, size <= limit else {
            throw self.error(key, "\(file) is larger than \(limit) bytes; a secret file holds one line")
        }
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: file))
        } catch {
            throw self.error(key, "cannot read \(file): \(HostConfiguration.reason(error))")
        }
        guard var text = String(data: data, encoding: .utf8) else {
            throw self.error(key, "\(file) is not UTF-8 text")
        }
        while text.hasSuffix("\n") || text.hasSuffix("\r") {
            text.removeLast()
        }
        guard !text.isEmpty else {
            throw self.error(key, "\(file) is empty")
        }
        return Secret(text)
    }

    static func listenAddress(_ text: String) -> HostConfiguration.ListenAddress? {
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else { return nil }
            host = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
            if host.contains(":") { return nil }
        }
        guard !host.isEmpty, let port = Int(portText), (0...65535).contains(port) else { return nil }
        return HostConfiguration.ListenAddress(host: String(host), port: port)
    }

    static func phrase(_ type: TOMLType) -> String {
        switch type {
        case .table: "a table"
        case .array: "an array"
        case .string: "a string"
        case .int: "an integer"
        case .double: "a floating-point number"
        case .bool: "a boolean"
        case .date: "a date"
        case .time: "a time"
        case .dateTime: "a date-time"
        }
    }

    /// The known key nearest to a typo (edit distance at most 2), if any.
    static func closest(_ key: String, in known: [String]) -> String? {
        let scored = known.map { ($0, Self.distance(key, $0)) }.filter { $0.1 <= 2 }
        return scored.min { $0.1 < $1.1 }?.0
    }

    static func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a)
        let b = Array(b)
        guard !a.isEmpty else { return b.count }
        guard !b.isEmpty else { return a.count }
        var previous = Array(0...b.count)
        for i in 1...a.count {
            var current = [i] + Array(repeating: 0, count: b.count)
            for j in 1...b.count {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            previous = current
        }
        return previous[b.count]
    }
}

extension HostConfiguration {
    /// The admin socket a configuration file names (or the default), without reading
    /// secrets or checking the rest: what the admin subcommands need.
    /// - Parameters:
    ///   - path: The TOML file.
    ///   - environment: For the default path; the process environment when `nil`.
    /// - Throws: ``ConfigurationError`` when the file cannot be read or parsed.
    public static func adminSocketPath(configurationPath path: String, environment: [String: String]? = nil) throws -> String {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigurationError(path: path, "cannot read the configuration file: \(Self.reason(error))")
        }
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw ConfigurationError(path: path, line: error.source.begin.line, "TOML syntax: \(error.description)")
        }
        if let socket = table["admin"]?.table?["socket"]?.string {
            return socket
        }
        return self.defaultAdminSocketPath(
            environment: environment ?? ProcessInfo.processInfo.environment, isRoot: SystemCalls.isRoot)
    }
}
