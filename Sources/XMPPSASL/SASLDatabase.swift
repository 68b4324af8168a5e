/// Writing accounts into a Cyrus sasldb file without `saslpasswd2` and without `/etc`.
///
/// Meant for development servers and tests (the reference server creates its identities
/// with it). The file is a Berkeley DB created on first use; only the plaintext
/// `userPassword` is stored (SCRAM derives its keys from it), as `saslpasswd2` does, so
/// protect the file accordingly.
public enum SASLDatabase {
    /// Creates the account `user@realm` or replaces its password: Cyrus `sasl_setpass` with
    /// `SASL_SET_CREATE` on a server connection whose `SASL_CB_GETOPT` points at `path`.
    ///
    /// A ``SASLServer`` configured with the same path and realm then authenticates `user`.
    /// - Parameters:
    ///   - path: The sasldb file; created if missing.
    ///   - user: The user name, e.g. a component identity `component.example.com`.
    ///   - realm: The realm (``SASLServer/Configuration/realm``, or its server FQDN).
    ///   - password: The password.
    /// - Throws: ``SASLError`` of kind ``SASLError/Kind/cyrus`` when Cyrus refuses.
    public static func setPassword(path: String, user: String, realm: String, password: String) throws(SASLError) {
        guard !user.isEmpty, !password.isEmpty else {
            throw SASLError(.cyrus, detail: "sasl_setpass needs a non-empty user name and password")
        }
        let connection = try CyrusConnection.server(
            service: "xmpp",
            serverFQDN: realm,
            realm: realm,
            context: CyrusCallbackContext(options: [
                "sasldb_path": path,
                "auxprop_plugin": "sasldb",
                "pwcheck_method": "auxprop",
                "mech_list": "PLAIN",
            ])
        )
        try connection.setPassword(user: user, password: password)
    }
}
