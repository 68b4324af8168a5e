import Testing
import XMPPTLS

/// Issue #13 item 6: an empty server name would skip SNI and make `SSL_set1_host("")` accept
/// any trusted certificate; it is a configuration error instead.
@Suite struct EmptyServerNameTests {
    @Test func anEmptyServerNameIsAConfigurationError() {
        for name in ["", " "] {
            let error = #expect(throws: TLSError.self, "\"\(name)\"") {
                try OpenSSLContext(client: TLSClientConfiguration(serverName: name))
            }
            #expect(error?.kind == .configuration)
            #expect(error?.description.contains("server name") == true, "\(String(describing: error))")
        }
    }

    @Test func withoutVerificationAnEmptyNameIsAllowed() throws {
        _ = try OpenSSLContext(
            client: TLSClientConfiguration(serverName: "", certificateVerification: .noVerificationInsecureDevelopmentOnly))
    }
}
