/// Random stream ids (RFC 6120 §4.7.3: unpredictable, unique per stream).
enum StreamID {
    /// 128 random bits as 32 lowercase hexadecimal characters.
    static func make() -> String {
        var generator = SystemRandomNumberGenerator()
        let digits = Array("0123456789abcdef")
        return String((0..<32).map { _ in digits[Int(generator.next() % 16)] })
    }
}
