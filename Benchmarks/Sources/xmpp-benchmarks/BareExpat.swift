import CExpatBenchmark

/// The ceiling: expat over the same bytes and chunks, with callbacks that only count
/// elements (and top-level elements), reparse deferral off.
final class BareExpat {
    private(set) var elements = 0
    private(set) var topLevel = 0
    private var depth = 0

    func run(_ bytes: [UInt8], chunkSize: Int) -> Int {
        guard let parser = XML_ParserCreateNS("UTF-8", 0x20) else { fatalError("XML_ParserCreateNS") }
        defer { XML_ParserFree(parser) }
        XML_SetUserData(parser, Unmanaged.passUnretained(self).toOpaque())
        _ = cxmppbench_disable_reparse_deferral(parser)
        XML_SetElementHandler(
            parser,
            { userData, _, _ in
                let this = Unmanaged<BareExpat>.fromOpaque(userData!).takeUnretainedValue()
                this.elements += 1
                this.depth += 1
            },
            { userData, _ in
                let this = Unmanaged<BareExpat>.fromOpaque(userData!).takeUnretainedValue()
                this.depth -= 1
                if this.depth == 1 { this.topLevel += 1 }
            }
        )
        XML_SetCharacterDataHandler(parser) { _, _, _ in }
        bytes.withUnsafeBytes { all in
            var offset = 0
            while offset < all.count {
                let count = min(chunkSize, all.count - offset)
                let buffer = XML_GetBuffer(parser, Int32(count))!
                buffer.copyMemory(from: all.baseAddress! + offset, byteCount: count)
                guard XML_ParseBuffer(parser, Int32(count), 0) == XML_STATUS_OK else {
                    fatalError("expat: \(String(cString: XML_ErrorString(XML_GetErrorCode(parser))))")
                }
                offset += count
            }
        }
        return self.topLevel
    }
}
