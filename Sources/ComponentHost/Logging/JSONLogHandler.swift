import Foundation
public import Logging
import Synchronization

/// A `LogHandler` writing one JSON object per line to standard error:
/// `{"time":"…","level":"info","label":"…","message":"…","metadata":{…}}`.
///
/// Use it through ``HostLogging/makeHandler(label:format:level:)`` when bootstrapping.
public struct JSONLogHandler: LogHandler {
    /// Handler-level metadata.
    public var metadata: Logger.Metadata = [:]
    /// The lowest level written.
    public var logLevel: Logger.Level
    let label: String

    private static let output = Mutex<Void>(())

    /// Creates a handler.
    /// - Parameters:
    ///   - label: The logger's label.
    ///   - level: The lowest level written.
    public init(label: String, level: Logger.Level = .info) {
        self.label = label
        self.logLevel = level
    }

    /// Handler-level metadata by key.
    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    /// Writes one line.
    public func log(event: LogEvent) {
        var merged = self.metadata
        if let extra = event.metadata {
            merged.merge(extra) { _, new in new }
        }
        let line = Self.line(
            time: Date(), level: event.level, label: self.label, message: "\(event.message)", metadata: merged)
        Self.output.withLock { _ in
            FileHandle.standardError.write(Data((line + "\n").utf8))
        }
    }

    static func line(time: Date, level: Logger.Level, label: String, message: String, metadata: Logger.Metadata) -> String {
        var fields = [
            "\"time\":\(Self.quote(time.formatted(.iso8601)))",
            "\"level\":\(Self.quote(level.rawValue))",
            "\"label\":\(Self.quote(label))",
            "\"message\":\(Self.quote(message))",
        ]
        if !metadata.isEmpty {
            let pairs = metadata.sorted { $0.key < $1.key }.map { "\(Self.quote($0.key)):\(Self.json($0.value))" }
            fields.append("\"metadata\":{\(pairs.joined(separator: ","))}")
        }
        return "{\(fields.joined(separator: ","))}"
    }

    private static func json(_ value: Logger.Metadata.Value) -> String {
        switch value {
        case .string(let string): return Self.quote(string)
        case .stringConvertible(let convertible): return Self.quote(convertible.description)
        case .array(let array): return "[\(array.map(Self.json).joined(separator: ","))]"
        case .dictionary(let dictionary):
            let pairs = dictionary.sorted { $0.key < $1.key }.map { "\(Self.quote($0.key)):\(Self.json($0.value))" }
            return "{\(pairs.joined(separator: ","))}"
        }
    }

    static func quote(_ string: String) -> String {
        var result = "\""
        for scalar in string.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    result += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    result.unicodeScalars.append(scalar)
                }
            }
        }
        return result + "\""
    }
}

/// Log handler factories for applications to bootstrap swift-log with (the library
/// itself never bootstraps).
public enum HostLogging {
    /// A handler for a label: readable lines or JSON lines on standard error.
    /// - Parameters:
    ///   - label: The logger's label.
    ///   - format: `human` or `json`.
    ///   - level: The lowest level written.
    public static func makeHandler(
        label: String, format: HostConfiguration.Logging.Format, level: Logger.Level
    ) -> any LogHandler {
        switch format {
        case .human:
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        case .json:
            return JSONLogHandler(label: label, level: level)
        }
    }
}
