import Foundation
import Testing
import XMPPCore

@testable import XMPPSASL

@Suite struct SASLDatabaseTests {
    @Test func setPasswordCreatesAnAccountTheServerAuthenticates() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/sasldb"
        try SASLDatabase.setPassword(path: path, user: Account.user, realm: Account.realm, password: "first")
        #expect(FileManager.default.fileExists(atPath: path))
        // Replacing the password works too.
        try SASLDatabase.setPassword(path: path, user: Account.user, realm: Account.realm, password: Account.password)

        let server = try makeServer(.tls13(), mechanisms: ["SCRAM-SHA-256"], sasldbPath: path)
        let client = try makeClient(.tls13())
        let result = try exchange(client: client, server: server)
        #expect(result.auth["mechanism"] == "SCRAM-SHA-256")
        #expect(try result.clientOutcome.get().mechanism == "SCRAM-SHA-256")
        #expect(result.serverIdentity == Account.user)

        let wrong = try exchange(
            client: try makeClient(.tls13(), password: "first"),
            server: try makeServer(.tls13(), mechanisms: ["SCRAM-SHA-256"], sasldbPath: path))
        #expect(wrong.serverError?.kind == .notAuthorized)
    }

    @Test func emptyPasswordIsRefused() {
        #expect(throws: SASLError.self) {
            try SASLDatabase.setPassword(path: "/nonexistent/sasldb", user: "u", realm: "r", password: "")
        }
    }
}
