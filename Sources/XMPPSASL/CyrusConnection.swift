internal import CCyrusSASL

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// The one file of XMPPSASL that touches Cyrus SASL's memory: global initialisation, the
// C callbacks, the owned C strings, the password buffer and the `sasl_conn_t` owner.

/// The generic callback type of `sasl_callback_t.proc` (`int (*)(void)`); every real
/// callback is cast to it (NATIVE-LIBS §3 item 1).
typealias CyrusGenericCallback = @convention(c) () -> Int32

/// Library-wide state of Cyrus SASL.
enum CyrusSASL {
    /// The outcome of the one-time global initialisation.
    ///
    /// `sasl_client_init` and `sasl_server_init` run exactly once per process, the first time
    /// any ``SASLClient`` or ``SASLServer`` is created: a `static let` is initialised lazily
    /// and thread-safely by the Swift runtime (`swift_once`), so concurrent first uses are
    /// safe. Cyrus keeps the global callback array, so it is allocated once and never freed.
    /// The global callbacks only silence Cyrus' logging (it would go to syslog otherwise);
    /// all configuration is per connection (``SASLServer/Configuration``), nothing is read
    /// from `/etc` as long as the per-connection options cover it.
    private static let initialization: SASLError? = {
        let callbacks = UnsafeMutablePointer<sasl_callback_t>.allocate(capacity: 2)
        callbacks[0] = sasl_callback_t(
            id: UInt(SASL_CB_LOG),
            proc: unsafeBitCast(CyrusCallbacks.log, to: CyrusGenericCallback.self),
            context: nil
        )
        callbacks[1] = sasl_callback_t(id: UInt(SASL_CB_LIST_END), proc: nil, context: nil)
        let serverResult = sasl_server_init(callbacks, "xmpp-component")
        guard serverResult == SASL_OK else {
            return SASLError(.cyrus, detail: "sasl_server_init failed: \(CyrusSASL.errorString(serverResult))")
        }
        let clientResult = sasl_client_init(callbacks)
        guard clientResult == SASL_OK else {
            return SASLError(.cyrus, detail: "sasl_client_init failed: \(CyrusSASL.errorString(clientResult))")
        }
        return nil
    }()

    /// Runs the global initialisation once (thread-safe) and reports its failure, if any.
    static func ensureInitialized() throws(SASLError) {
        if let error = self.initialization {
            throw error
        }
    }

    /// Cyrus' text for a result code, e.g. `authentication failure`.
    static func errorString(_ code: Int32) -> String {
        guard let text = sasl_errstring(code, nil, nil) else { return "SASL error \(code)" }
        return "\(String(cString: text)) (\(code))"
    }
}

/// The C callbacks. They cannot capture; per-connection state arrives in `context`, an
/// unretained ``CyrusCallbackContext`` that the owning ``CyrusConnection`` keeps alive.
private enum CyrusCallbacks {
    static let log: @convention(c) (UnsafeMutableRawPointer?, Int32, UnsafePointer<CChar>?) -> Int32 = {
        _, _, _ in SASL_OK
    }

    static let getopt:
        @convention(c) (
            UnsafeMutableRawPointer?, UnsafePointer<CChar>?, UnsafePointer<CChar>?,
            UnsafeMutablePointer<UnsafePointer<CChar>?>?, UnsafeMutablePointer<UInt32>?
        ) -> Int32 = { context, _, option, result, length in
            result?.pointee = nil
            length?.pointee = 0
            guard let context, let option else { return SASL_FAIL }
            let owner = Unmanaged<CyrusCallbackContext>.fromOpaque(context).takeUnretainedValue()
            guard let value = owner.options[String(cString: option)] else { return SASL_FAIL }
            result?.pointee = UnsafePointer(value)
            length?.pointee = UInt32(strlen(value))
            return SASL_OK
        }

    /// `SASL_CB_PROXY_POLICY`: the same rule as Cyrus' default (an authorization identity must
    /// equal the authenticated identity), but answering `SASL_NOAUTHZ` instead of
    /// `SASL_BADAUTH`, so the failure becomes RFC 6120 `<invalid-authzid/>`.
    static let proxyPolicy:
        @convention(c) (
            OpaquePointer?, UnsafeMutableRawPointer?, UnsafePointer<CChar>?, UInt32, UnsafePointer<CChar>?, UInt32,
            UnsafePointer<CChar>?, UInt32, OpaquePointer?
        ) -> Int32 = { _, _, requested, requestedLength, authenticated, authenticatedLength, _, _, _ in
            guard let requested, requestedLength > 0 else { return SASL_OK }
            guard let authenticated, requestedLength == authenticatedLength,
                memcmp(requested, authenticated, Int(requestedLength)) == 0
            else { return SASL_NOAUTHZ }
            return SASL_OK
        }

    static let simple:
        @convention(c) (
            UnsafeMutableRawPointer?, Int32, UnsafeMutablePointer<UnsafePointer<CChar>?>?,
            UnsafeMutablePointer<UInt32>?
        ) -> Int32 = { context, id, result, length in
            guard let context, let result else { return SASL_BADPARAM }
            let owner = Unmanaged<CyrusCallbackContext>.fromOpaque(context).takeUnretainedValue()
            let value: UnsafeMutablePointer<CChar>?
            switch id {
            case SASL_CB_AUTHNAME: value = owner.authenticationName
            case SASL_CB_USER: value = owner.authorizationName
            default: return SASL_BADPARAM
            }
            guard let value else { return SASL_FAIL }
            result.pointee = UnsafePointer(value)
            length?.pointee = UInt32(strlen(value))
            return SASL_OK
        }

    static let password:
        @convention(c) (
            OpaquePointer?, UnsafeMutableRawPointer?, Int32, UnsafeMutablePointer<UnsafeMutablePointer<sasl_secret_t>?>?
        ) -> Int32 = { _, context, id, secret in
            guard let context, let secret, id == SASL_CB_PASS else { return SASL_BADPARAM }
            let owner = Unmanaged<CyrusCallbackContext>.fromOpaque(context).takeUnretainedValue()
            guard let buffer = owner.secret else { return SASL_FAIL }
            secret.pointee = buffer.assumingMemoryBound(to: sasl_secret_t.self)
            return SASL_OK
        }
}

/// Values served to Cyrus through the callbacks of one connection. Owns every C string it
/// hands out (Cyrus keeps the pointers) and the password buffer.
final class CyrusCallbackContext {
    /// Options for `SASL_CB_GETOPT`, e.g. `sasldb_path`, `mech_list`.
    private(set) var options: [String: UnsafeMutablePointer<CChar>] = [:]
    /// The `SASL_CB_AUTHNAME` answer.
    private(set) var authenticationName: UnsafeMutablePointer<CChar>?
    /// The `SASL_CB_USER` answer (empty string for none).
    private(set) var authorizationName: UnsafeMutablePointer<CChar>?
    /// A `sasl_secret_t` with the password, or `nil` once wiped.
    private(set) var secret: UnsafeMutableRawPointer?
    private var secretSize = 0

    init(options: [String: String] = [:]) {
        for (key, value) in options {
            self.options[key] = strdup(value)
        }
    }

    func setNames(authentication: String, authorization: String?) {
        free(self.authenticationName)
        free(self.authorizationName)
        self.authenticationName = strdup(authentication)
        self.authorizationName = strdup(authorization ?? "")
    }

    /// Copies the password into a freshly allocated `sasl_secret_t`
    /// (`{unsigned long len; unsigned char data[]}`, NATIVE-LIBS §3 item 3).
    func setPassword(_ password: String) {
        self.wipePassword()
        var bytes = Array(password.utf8)
        // The intermediate copy is wiped too (explicit_bzero), not only the C buffer.
        defer { bytes.withUnsafeMutableBytes { if let base = $0.baseAddress { secureZero(base, $0.count) } } }
        let dataOffset = MemoryLayout<sasl_secret_t>.offset(of: \.data)!
        let size = max(MemoryLayout<sasl_secret_t>.size, dataOffset + bytes.count + 1)
        let raw = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: MemoryLayout<sasl_secret_t>.alignment)
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: size)
        raw.storeBytes(of: UInt(bytes.count), as: UInt.self)
        bytes.withUnsafeBytes { source in
            if let base = source.baseAddress {
                (raw + dataOffset).copyMemory(from: base, byteCount: bytes.count)
            }
        }
        self.secret = raw
        self.secretSize = size
    }

    /// Overwrites the password buffer with zeros (a write the optimiser may not drop) and frees it.
    func wipePassword() {
        guard let secret = self.secret else { return }
        secureZero(secret, self.secretSize)
        secret.deallocate()
        self.secret = nil
        self.secretSize = 0
    }

    deinit {
        self.wipePassword()
        for value in self.options.values {
            free(value)
        }
        free(self.authenticationName)
        free(self.authorizationName)
    }
}

/// Zeroes memory in a way the compiler cannot elide.
func secureZero(_ pointer: UnsafeMutableRawPointer, _ count: Int) {
    #if canImport(Glibc) || canImport(Musl)
    explicit_bzero(pointer, count)
    #else
    memset_s(pointer, count, 0, count)
    #endif
}

/// One `sasl_conn_t`, with everything Cyrus borrows from the application for its lifetime:
/// the callback array, the callback context and the channel-binding structure.
/// `sasl_dispose` runs in `deinit`, before those are freed.
final class CyrusConnection {
    private var connection: OpaquePointer?
    private let callbacks: UnsafeMutablePointer<sasl_callback_t>
    private let callbackCount: Int
    /// The callback context; also owns the password.
    let context: CyrusCallbackContext
    private var binding: UnsafeMutablePointer<sasl_channel_binding_t>?
    private var bindingName: UnsafeMutablePointer<CChar>?
    private var bindingData: UnsafeMutablePointer<UInt8>?

    /// The connection handle for Cyrus calls.
    var handle: OpaquePointer { self.connection! }

    private init(context: CyrusCallbackContext, callbacks: [(Int32, CyrusGenericCallback)]) {
        self.context = context
        self.callbackCount = callbacks.count + 1
        self.callbacks = UnsafeMutablePointer<sasl_callback_t>.allocate(capacity: self.callbackCount)
        let opaque = Unmanaged.passUnretained(context).toOpaque()
        for (index, (id, proc)) in callbacks.enumerated() {
            self.callbacks[index] = sasl_callback_t(id: UInt(id), proc: proc, context: opaque)
        }
        self.callbacks[callbacks.count] = sasl_callback_t(id: UInt(SASL_CB_LIST_END), proc: nil, context: nil)
    }

    /// A client connection (`sasl_client_new` with `SASL_SUCCESS_DATA`) whose callbacks serve
    /// the names and the password from `context`.
    static func client(service: String, serverFQDN: String, context: CyrusCallbackContext) throws(SASLError)
        -> CyrusConnection
    {
        try CyrusSASL.ensureInitialized()
        let owner = CyrusConnection(
            context: context,
            callbacks: [
                (SASL_CB_AUTHNAME, unsafeBitCast(CyrusCallbacks.simple, to: CyrusGenericCallback.self)),
                (SASL_CB_USER, unsafeBitCast(CyrusCallbacks.simple, to: CyrusGenericCallback.self)),
                (SASL_CB_PASS, unsafeBitCast(CyrusCallbacks.password, to: CyrusGenericCallback.self)),
            ]
        )
        var connection: OpaquePointer?
        let result = sasl_client_new(
            service, serverFQDN, nil, nil, owner.callbacks, UInt32(SASL_SUCCESS_DATA), &connection
        )
        guard result == SASL_OK, let connection else {
            throw SASLError(.cyrus, detail: "sasl_client_new failed: \(CyrusSASL.errorString(result))")
        }
        owner.connection = connection
        return owner
    }

    /// A server connection (`sasl_server_new` with `SASL_SUCCESS_DATA`) whose `SASL_CB_GETOPT`
    /// serves the options of `context`. Cyrus asks the connection's GETOPT first (for
    /// `mech_list`, `sasldb_path`, `scram_iteration_counter`, …), so each connection can
    /// have its own database.
    static func server(service: String, serverFQDN: String, realm: String?, context: CyrusCallbackContext)
        throws(SASLError) -> CyrusConnection
    {
        try CyrusSASL.ensureInitialized()
        let owner = CyrusConnection(
            context: context,
            callbacks: [
                (SASL_CB_GETOPT, unsafeBitCast(CyrusCallbacks.getopt, to: CyrusGenericCallback.self)),
                (SASL_CB_PROXY_POLICY, unsafeBitCast(CyrusCallbacks.proxyPolicy, to: CyrusGenericCallback.self)),
            ]
        )
        var connection: OpaquePointer?
        let result = sasl_server_new(
            service, serverFQDN, realm, nil, nil, owner.callbacks, UInt32(SASL_SUCCESS_DATA), &connection
        )
        guard result == SASL_OK, let connection else {
            throw SASLError(.cyrus, detail: "sasl_server_new failed: \(CyrusSASL.errorString(result))")
        }
        owner.connection = connection
        return owner
    }

    /// Sets `SASL_CHANNEL_BINDING` (not critical). The structure, name and data are owned
    /// here until `deinit`, as Cyrus does not copy them (NATIVE-LIBS §3 item 8).
    func setChannelBinding(_ type: SASLChannelBindingType, data: [UInt8]) throws(SASLError) {
        precondition(self.binding == nil, "channel binding is set once per connection")
        let name = strdup(type.rawValue)!
        let bytes = UnsafeMutablePointer<UInt8>.allocate(capacity: max(data.count, 1))
        bytes.initialize(from: data, count: data.count)
        let binding = UnsafeMutablePointer<sasl_channel_binding_t>.allocate(capacity: 1)
        binding.initialize(
            to: sasl_channel_binding_t(name: name, critical: 0, len: UInt(data.count), data: UnsafePointer(bytes))
        )
        self.binding = binding
        self.bindingName = name
        self.bindingData = bytes
        let result = sasl_setprop(self.handle, SASL_CHANNEL_BINDING, binding)
        guard result == SASL_OK else {
            throw SASLError(.cyrus, detail: "setting the channel binding failed: \(self.errorDetail(result))")
        }
    }

    /// Sets `SASL_AUTH_EXTERNAL` (Cyrus copies the string), which enables EXTERNAL.
    func setExternalIdentity(_ identity: String) throws(SASLError) {
        let result = identity.withCString { sasl_setprop(self.handle, SASL_AUTH_EXTERNAL, $0) }
        guard result == SASL_OK else {
            throw SASLError(.cyrus, detail: "setting the external identity failed: \(self.errorDetail(result))")
        }
    }

    /// The mechanisms Cyrus offers on this (server) connection, `-PLUS` variants included.
    func listMechanisms() throws(SASLError) -> [String] {
        var list: UnsafePointer<CChar>?
        var length: UInt32 = 0
        var count: Int32 = 0
        let result = sasl_listmech(self.handle, nil, "", " ", "", &list, &length, &count)
        guard result == SASL_OK, let list else {
            throw SASLError(.cyrus, detail: "sasl_listmech failed: \(self.errorDetail(result))")
        }
        return String(cString: list).split(separator: " ").map(String.init)
    }

    /// `sasl_client_start` with `mechanisms` as the server's list.
    func clientStart(mechanisms: String) -> CyrusStepResult {
        var output: UnsafePointer<CChar>?
        var outputLength: UInt32 = 0
        var interaction: UnsafeMutablePointer<sasl_interact_t>?
        var mechanism: UnsafePointer<CChar>?
        let result = sasl_client_start(self.handle, mechanisms, &interaction, &output, &outputLength, &mechanism)
        return self.stepResult(result, output, outputLength)
    }

    /// `sasl_client_step` with the server's data (`nil`: none).
    func clientStep(_ input: [UInt8]?) -> CyrusStepResult {
        var output: UnsafePointer<CChar>?
        var outputLength: UInt32 = 0
        var interaction: UnsafeMutablePointer<sasl_interact_t>?
        let result = withCyrusInput(input) { pointer, length in
            sasl_client_step(self.handle, pointer, length, &interaction, &output, &outputLength)
        }
        return self.stepResult(result, output, outputLength)
    }

    /// `sasl_server_start` for `mechanism` with the initial response (`nil`: none).
    func serverStart(mechanism: String, _ input: [UInt8]?) -> CyrusStepResult {
        var output: UnsafePointer<CChar>?
        var outputLength: UInt32 = 0
        let result = withCyrusInput(input) { pointer, length in
            sasl_server_start(self.handle, mechanism, pointer, length, &output, &outputLength)
        }
        return self.stepResult(result, output, outputLength)
    }

    /// `sasl_server_step` with the client's data (`nil`: none).
    func serverStep(_ input: [UInt8]?) -> CyrusStepResult {
        var output: UnsafePointer<CChar>?
        var outputLength: UInt32 = 0
        let result = withCyrusInput(input) { pointer, length in
            sasl_server_step(self.handle, pointer, length, &output, &outputLength)
        }
        return self.stepResult(result, output, outputLength)
    }

    private func stepResult(_ code: Int32, _ output: UnsafePointer<CChar>?, _ length: UInt32) -> CyrusStepResult {
        switch code {
        case SASL_OK: .complete(cyrusOutput(output, length))
        case SASL_CONTINUE: .continue(cyrusOutput(output, length))
        default: .failed(CyrusFailure(code: code, detail: self.errorDetail(code)))
        }
    }

    /// Creates or replaces a user's password in the auxprop store (sasldb) of this server
    /// connection: `sasl_setpass` with `SASL_SET_CREATE`. The copy of the password handed
    /// to Cyrus is zeroed afterwards.
    func setPassword(user: String, password: String) throws(SASLError) {
        var bytes = Array(password.utf8)
        bytes.append(0)
        defer { bytes.withUnsafeMutableBytes { secureZero($0.baseAddress!, $0.count) } }
        let result = bytes.withUnsafeBufferPointer { buffer in
            buffer.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buffer.count) { pointer in
                sasl_setpass(self.handle, user, pointer, UInt32(buffer.count - 1), nil, 0, UInt32(SASL_SET_CREATE))
            }
        }
        guard result == SASL_OK else {
            throw SASLError(.cyrus, detail: "sasl_setpass failed: \(self.errorDetail(result))")
        }
    }

    /// The authorised user name (`SASL_USERNAME`) after a successful server exchange.
    var username: String? { self.stringProperty(SASL_USERNAME) }

    /// A string property such as `SASL_USERNAME`, or `nil`.
    func stringProperty(_ property: Int32) -> String? {
        var value: UnsafeRawPointer?
        guard sasl_getprop(self.handle, property, &value) == SASL_OK, let value else { return nil }
        return String(cString: value.assumingMemoryBound(to: CChar.self))
    }

    /// Cyrus' explanation of the last error (`sasl_errdetail`), or the result code's text.
    func errorDetail(_ code: Int32) -> String {
        if let detail = sasl_errdetail(self.handle) {
            let text = String(cString: detail)
            if !text.isEmpty { return text }
        }
        return CyrusSASL.errorString(code)
    }

    deinit {
        if self.connection != nil {
            sasl_dispose(&self.connection)
        }
        self.callbacks.deallocate()
        if let binding = self.binding {
            binding.deinitialize(count: 1)
            binding.deallocate()
        }
        free(self.bindingName)
        self.bindingData?.deallocate()
    }
}

/// The result of a Cyrus start or step call.
enum CyrusStepResult {
    /// `SASL_OK`, with the output (`nil`: none, `[]`: empty).
    case complete([UInt8]?)
    /// `SASL_CONTINUE`, with the output.
    case `continue`([UInt8]?)
    /// Any other result.
    case failed(CyrusFailure)
}

/// A Cyrus error: the result code and `sasl_errdetail`.
struct CyrusFailure: Error {
    /// The `SASL_*` result code.
    var code: Int32
    /// Cyrus' explanation.
    var detail: String

    /// The RFC 6120 condition a server reports for this error. Cyrus reports a channel-binding
    /// mismatch as `SASL_BADPROT`; that is an authentication failure, not a malformed request.
    var condition: SASLError.Kind {
        switch self.code {
        case SASL_NOMECH: return .invalidMechanism
        case SASL_NOAUTHZ: return .invalidAuthzid
        case SASL_TOOWEAK: return .mechanismTooWeak
        case SASL_ENCRYPT: return .encryptionRequired
        case SASL_EXPIRED: return .credentialsExpired
        case SASL_DISABLED: return .accountDisabled
        case SASL_TRYAGAIN, SASL_UNAVAIL, SASL_NOMEM, SASL_FAIL: return .temporaryAuthFailure
        case SASL_BADPROT, SASL_BADPARAM:
            return self.detail.lowercased().contains("channel binding") ? .notAuthorized : .malformedRequest
        default: return .notAuthorized
        }
    }
}

/// Runs `body` with a pointer to `bytes` followed by a NUL that the length does not count
/// (Cyrus requires it after step input, NATIVE-LIBS §3 item 7). `nil` passes a NULL pointer.
func withCyrusInput<R>(
    _ bytes: [UInt8]?,
    _ body: (UnsafePointer<CChar>?, UInt32) -> R
) -> R {
    guard let bytes else { return body(nil, 0) }
    var terminated = bytes
    terminated.append(0)
    let result = terminated.withUnsafeBufferPointer { buffer in
        buffer.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buffer.count) {
            body($0, UInt32(bytes.count))
        }
    }
    // Step input may be sensitive (e.g. a PLAIN response); clear the copy.
    terminated.withUnsafeMutableBytes { secureZero($0.baseAddress!, $0.count) }
    return result
}

/// Copies Cyrus output; `nil` when the pointer is NULL (no data, as opposed to empty data).
func cyrusOutput(_ pointer: UnsafePointer<CChar>?, _ length: UInt32) -> [UInt8]? {
    guard let pointer else { return nil }
    return pointer.withMemoryRebound(to: UInt8.self, capacity: Int(length)) {
        Array(UnsafeBufferPointer(start: $0, count: Int(length)))
    }
}
