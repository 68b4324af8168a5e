import Foundation

/// Finds the line of a key in TOML text, for error messages: TOMLKit reports lines for
/// syntax errors only, so this scans the text for table headers and `key =` lines.
///
/// Keys are dotted paths with array-of-tables indices: `server.port`,
/// `component[1].options.prefix`; a header's own path (`component[1]`) maps to its line.
struct TOMLSourceMap: Sendable {
    private var lines: [String: Int] = [:]

    init(_ text: String) {
        var header = ""
        var arrayIndices: [String: Int] = [:]
        var inMultilineString = false
        for (offset, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let number = offset + 1
            let quoteCount =
                rawLine.components(separatedBy: "\"\"\"").count - 1 + rawLine.components(separatedBy: "'''").count - 1
            if inMultilineString {
                if quoteCount % 2 == 1 { inMultilineString = false }
                continue
            }
            if quoteCount % 2 == 1 { inMultilineString = true }
            let line = Self.stripComment(rawLine).trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("[[") {
                let name = Self.normalise(String(line.dropFirst(2).prefix { $0 != "]" }))
                let resolved = Self.resolve(name, arrayIndices)
                let index = (arrayIndices[resolved] ?? -1) + 1
                arrayIndices[resolved] = index
                header = "\(resolved)[\(index)]"
                self.record(header, number)
            } else if line.hasPrefix("[") {
                let name = Self.normalise(String(line.dropFirst().prefix { $0 != "]" }))
                header = Self.resolve(name, arrayIndices)
                self.record(header, number)
            } else if let equals = line.firstIndex(of: "=") {
                let key = Self.normalise(String(line[..<equals]))
                guard !key.isEmpty else { continue }
                self.record(header.isEmpty ? key : "\(header).\(key)", number)
            }
        }
    }

    /// The line of a key, or of the closest enclosing table that has one.
    func line(for key: String) -> Int? {
        var candidate = key
        while true {
            if let line = self.lines[candidate] { return line }
            guard let cut = candidate.lastIndex(where: { $0 == "." || $0 == "[" }) else { return nil }
            candidate = String(candidate[..<cut])
        }
    }

    private mutating func record(_ key: String, _ line: Int) {
        if self.lines[key] == nil {
            self.lines[key] = line
        }
    }

    /// `component.options` inside the 2nd `[[component]]` becomes `component[1].options`.
    private static func resolve(_ name: String, _ arrays: [String: Int]) -> String {
        let parts = name.split(separator: ".").map(String.init)
        var resolved: [String] = []
        var prefix = ""
        for part in parts {
            prefix = prefix.isEmpty ? part : "\(prefix).\(part)"
            let joined = resolved.isEmpty ? part : "\(resolved.joined(separator: ".")).\(part)"
            if let index = arrays[joined], prefix != name {
                resolved.append("\(part)[\(index)]")
            } else {
                resolved.append(part)
            }
        }
        return resolved.joined(separator: ".")
    }

    /// `"a" . b` becomes `a.b`.
    private static func normalise(_ key: String) -> String {
        key.split(separator: ".").map {
            $0.trimmingCharacters(in: .whitespaces).trimmingCharacters(in: CharacterSet(charactersIn: "\"'"))
        }.joined(separator: ".")
    }

    private static func stripComment(_ line: Substring) -> Substring {
        var quote: Character?
        for index in line.indices {
            let character = line[index]
            if let open = quote {
                if character == open { quote = nil }
            } else if character == "\"" || character == "'" {
                quote = character
            } else if character == "#" {
                return line[..<index]
            }
        }
        return line
    }
}
