import Foundation

/// Writes runtime binds back to the configuration file (`--persist`), keeping everything
/// else in the file (comments included) as it is.
enum ConfigurationFileEditor {
    /// The text with a `[[component]]` entry appended.
    static func appending(
        _ text: String, hostname: String, plugin: String, options: [String: PluginOptionValue], weight: Int? = nil
    ) -> String {
        var result = text
        if !result.isEmpty && !result.hasSuffix("\n") { result += "\n" }
        result += "\n[[component]]\n"
        result += "hostname = \(PluginOptionValue.quoted(hostname))\n"
        result += "plugin = \(PluginOptionValue.quoted(plugin))\n"
        if let weight { result += "weight = \(weight)\n" }
        if !options.isEmpty {
            result += "[component.options]\n"
            for (key, value) in options.sorted(by: { $0.key < $1.key }) {
                result += "\(Self.bareKey(key)) = \(value)\n"
            }
        }
        return result
    }

    /// The text without the `[[component]]` entry of a hostname (and its
    /// `[component.options]`), or `nil` when the file has no such entry.
    static func removing(_ text: String, hostname: String) -> String? {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var blockStart: Int?
        var blocks: [(Range<Int>, String?)] = []
        var currentHostname: String?
        func close(at end: Int) {
            if let start = blockStart {
                blocks.append((start..<end, currentHostname))
            }
            blockStart = nil
            currentHostname = nil
        }
        for (index, line) in lines.enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.hasPrefix("[[") {
                close(at: index)
                if trimmed.replacingOccurrences(of: " ", with: "").hasPrefix("[[component]]") {
                    blockStart = index
                }
            } else if trimmed.hasPrefix("[") {
                let name = trimmed.replacingOccurrences(of: " ", with: "")
                if !name.hasPrefix("[component.") {
                    close(at: index)
                }
            } else if blockStart != nil, currentHostname == nil, let equals = trimmed.firstIndex(of: "=") {
                let key = trimmed[..<equals].trimmingCharacters(in: .whitespaces)
                if key == "hostname" {
                    let value =
                        trimmed[trimmed.index(after: equals)...]
                        .split(separator: "#", maxSplits: 1).first.map(String.init) ?? ""
                    currentHostname = value.trimmingCharacters(in: .whitespaces)
                        .trimmingCharacters(in: CharacterSet(charactersIn: "\"'"))
                }
            }
        }
        close(at: lines.count)
        guard let (range, _) = blocks.first(where: { $0.1.map(hostnameKey) == hostnameKey(hostname) }) else {
            return nil
        }
        var end = range.upperBound
        // Keep a blank line or comment that introduces the next section.
        while end > range.lowerBound + 1, lines[end - 1].trimmingCharacters(in: .whitespaces).hasPrefix("#") {
            end -= 1
        }
        lines.removeSubrange(range.lowerBound..<end)
        return lines.joined(separator: "\n")
    }

    /// Replaces a file's content atomically, keeping its mode and owner: a temporary file
    /// created with `O_EXCL` (random name, never following a link) next to it, renamed over it
    /// (``SystemCalls/replaceFile(_:with:)``). The directory must be writable: under systemd,
    /// keep the file in the unit's `StateDirectory=` (see `Examples/config/component-host.service`).
    static func write(_ text: String, to path: String) throws {
        do {
            try SystemCalls.replaceFile(path, with: Array(text.utf8))
        } catch {
            throw HostError("cannot write the configuration file \(path): \(error)")
        }
    }

    private static func bareKey(_ key: String) -> String {
        let bare = key.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") }
        return bare && !key.isEmpty ? key : PluginOptionValue.quoted(key)
    }
}
