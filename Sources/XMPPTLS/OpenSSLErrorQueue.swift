import COpenSSL

/// Helpers around OpenSSL's thread-local error queue.
enum OpenSSLErrorQueue {
    /// Empties the queue and returns its entries as text, oldest first, joined with `"; "`.
    ///
    /// Each entry reads like `"error:0A000086:SSL routines::certificate verify failed"`.
    /// Returns `fallback` when the queue was empty.
    static func drain(fallback: String) -> String {
        var messages: [String] = []
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            var buffer = [CChar](repeating: 0, count: 256)
            let text = buffer.withUnsafeMutableBufferPointer { pointer -> String in
                ERR_error_string_n(code, pointer.baseAddress, pointer.count)
                return String(cString: pointer.baseAddress!)
            }
            messages.append(text)
        }
        return messages.isEmpty ? fallback : messages.joined(separator: "; ")
    }

    /// Discards any stale entries before a new OpenSSL call.
    static func clear() {
        ERR_clear_error()
    }
}
