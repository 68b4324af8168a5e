// reference-server: a development XMPP server for XEP-0225 / XEP-0114 components.
//
//   reference-server [--port N] [--legacy-port N] [--domain D] [--state-dir DIR]
//                    [--routing DOMAIN=ALGORITHM]... [--default-routing ALGORITHM]
//                    [--user JID=PASSWORD]... [--c2s-port N|off]
//
// --user adds a client account (a bare JID at the domain); with at least one, the client
// (c2s) port listens on 5222 unless --c2s-port says otherwise; without any, it is off.
// Passwords are never printed.
//
// Generates a development CA + certificate and a sasldb with one identity in the state
// directory, prints how to connect, and runs until SIGINT or SIGTERM. ALGORITHM: all, mostactive, roundrobin,
// weighted or affinity (the default for a domain with several instances).
//
// Commands on standard input, one a line (an administrator's control surface):
//   instances                              the bound instances and their weights
//   routing DOMAIN [ALGORITHM]             show or change a domain's algorithm
//   transfer HOSTNAME HOST[:PORT] [DOMAIN] XEP-0051: move that stream to another server
//   disconnect HOSTNAME                    drop the stream that bound HOSTNAME
//   sessions                               the users' client sessions (full JIDs)
//   acks                                   XEP-0198: unacknowledged stanzas routed again, answers dropped

import Dispatch
import Foundation
import Logging
import NIOCore
import NIOPosix
import ReferenceServer
import XMPPCore
import XMPPSASL
import XMPPTLS

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

struct Options {
    var port = 5270
    var legacyPort: Int? = 5275
    var domain = "localhost"
    var stateDirectory = "./reference-server-state"
    var routing: [String: RoutingAlgorithm] = [:]
    var defaultRouting: RoutingAlgorithm = .affinity
    var users: [String: String] = [:]
    /// `nil`: 5222 when users are given, else off; `.some(nil)`: off.
    var c2sPort: Int?? = nil

    static func parse(_ arguments: [String]) -> Options {
        var options = Options()
        var iterator = arguments.makeIterator()
        func value(_ flag: String) -> String {
            guard let value = iterator.next() else { fail("\(flag) needs a value") }
            return value
        }
        while let argument = iterator.next() {
            switch argument {
            case "--port":
                guard let port = Int(value(argument)) else { fail("--port needs a number") }
                options.port = port
            case "--legacy-port":
                let text = value(argument)
                if text == "off" {
                    options.legacyPort = nil
                } else {
                    guard let port = Int(text) else { fail("--legacy-port needs a number or 'off'") }
                    options.legacyPort = port
                }
            case "--domain": options.domain = value(argument)
            case "--state-dir": options.stateDirectory = value(argument)
            case "--routing":
                let text = value(argument)
                let parts = text.split(separator: "=", maxSplits: 1).map(String.init)
                guard parts.count == 2, let algorithm = RoutingAlgorithm(name: parts[1]) else {
                    fail("--routing needs DOMAIN=ALGORITHM (all, mostactive, roundrobin, weighted, affinity), not '\(text)'")
                }
                options.routing[parts[0]] = algorithm
            case "--default-routing":
                let text = value(argument)
                guard let algorithm = RoutingAlgorithm(name: text) else {
                    fail("--default-routing needs all, mostactive, roundrobin, weighted or affinity, not '\(text)'")
                }
                options.defaultRouting = algorithm
            case "--user":
                let text = value(argument)
                let parts = text.split(separator: "=", maxSplits: 1).map(String.init)
                guard parts.count == 2, parts[0].contains("@"), !parts[1].isEmpty else {
                    fail("--user needs JID=PASSWORD (e.g. alice@localhost=secret)")
                }
                options.users[parts[0]] = parts[1]
            case "--c2s-port":
                let text = value(argument)
                if text == "off" {
                    options.c2sPort = .some(nil)
                } else {
                    guard let port = Int(text) else { fail("--c2s-port needs a number or 'off'") }
                    options.c2sPort = .some(port)
                }
            case "-h", "--help":
                print(
                    "usage: reference-server [--port N] [--legacy-port N|off] [--domain D] [--state-dir DIR] "
                        + "[--routing DOMAIN=ALGORITHM]... [--default-routing ALGORITHM] [--user JID=PASSWORD]... [--c2s-port N|off]"
                )
                exit(0)
            default: fail("unknown argument \(argument)")
            }
        }
        return options
    }
}

func fail(_ message: String) -> Never {
    FileHandleStderr.write("reference-server: \(message)\n")
    exit(2)
}

enum FileHandleStderr {
    static func write(_ text: String) {
        _ = text.withCString { Glibc.write(2, $0, strlen($0)) }
    }
}

/// Dispatch signal sources yielding to `continuation`; made outside top-level code so the
/// handlers are not main-actor isolated (they run on a Dispatch worker).
nonisolated func signalSources(
    _ numbers: [Int32], _ continuation: AsyncStream<Int32>.Continuation
) -> [any DispatchSourceSignal] {
    numbers.map { number in
        let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
        source.setEventHandler { continuation.yield(number) }
        source.resume()
        return source
    }
}

/// Standard input's lines, read on a thread of their own.
nonisolated func standardInputLines() -> AsyncStream<String> {
    AsyncStream { continuation in
        Thread.detachNewThread {
            while let line = readLine() { continuation.yield(line) }
            continuation.finish()
        }
    }
}

/// The administrator's commands (see the top of this file); answers on standard output.
nonisolated func runCommands(_ server: ReferenceServer) async {
    for await line in standardInputLines() {
        let words = line.split(separator: " ").map(String.init)
        do {
            switch (words.first, words.count) {
            case ("instances", 1):
                for instance in server.instances { say("\(instance.hostname) weight=\(instance.weight)") }
            case ("routing", 2):
                say(server.routingAlgorithm(for: words[1]).shortName)
            case ("routing", 3):
                guard let algorithm = RoutingAlgorithm(name: words[2]) else {
                    say("error: unknown algorithm '\(words[2])'")
                    continue
                }
                try server.setRoutingAlgorithm(algorithm, for: words[1])
                say("ok")
            case ("transfer", 3), ("transfer", 4):
                let answer = try await server.transfer(
                    hostname: words[1], to: words[2], domain: words.count == 4 ? words[3] : nil)
                say(answer.type == .result ? "ok" : "refused: \(answer.error.map { "\($0)" } ?? "error")")
            case ("sessions", 1):
                for jid in server.clientSessions { say(jid.description) }
            case ("disconnect", 2):
                try await server.disconnect(hostname: words[1])
                say("ok")
            case ("acks", 1):
                say(
                    "rerouted=\(server.reroutedUnacknowledgedStanzas) dropped-answers=\(server.droppedUnacknowledgedAnswers)")
            case (nil, _):
                continue
            default:
                say(
                    "error: commands are instances | routing DOMAIN [ALGORITHM] | transfer HOSTNAME HOST[:PORT] [DOMAIN] | disconnect HOSTNAME | sessions | acks"
                )
            }
        } catch {
            say("error: \(error)")
        }
    }
}

/// Writes a line to standard output at once, without stdio: `fflush` would wait for the
/// lock on stdin that the reader thread holds while it waits for the next line.
nonisolated func say(_ line: String) {
    _ = (line + "\n").withCString { Glibc.write(1, $0, strlen($0)) }
}

func randomSecret() -> String {
    var generator = SystemRandomNumberGenerator()
    let alphabet = Array("abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789")
    return String((0..<20).map { _ in alphabet[Int(generator.next() % UInt64(alphabet.count))] })
}

let options = Options.parse(Array(CommandLine.arguments.dropFirst()))
mkdir(options.stateDirectory, 0o700)
let state = options.stateDirectory
let identity = "component.\(options.domain)"
let password = randomSecret()
let legacySecret = randomSecret()
let logger = Logger(label: "reference-server")

do {
    // FOR DEVELOPMENT ONLY: a throwaway CA and certificate.
    let ca = try DevelopmentCertificateAuthority()
    let files = try ca.issue(dnsNames: [options.domain], ipAddresses: ["127.0.0.1", "::1"])
        .write(toDirectory: state, name: "server")
    let sasldb = state + "/sasldb"
    unlink(sasldb)
    try SASLDatabase.setPassword(path: sasldb, user: identity, realm: options.domain, password: password)

    var configuration = ReferenceServerConfiguration(
        domain: options.domain, tls: files.serverConfiguration, sasl: .init(sasldbPath: sasldb))
    configuration.port = options.port
    configuration.legacyPort = options.legacyPort
    configuration.allowedHostnames = [identity: [identity, "*.\(identity)"]]
    configuration.legacySecrets = ["legacy.\(options.domain)": legacySecret]
    configuration.routingAlgorithms = options.routing
    configuration.defaultRoutingAlgorithm = options.defaultRouting
    configuration.users = options.users
    configuration.c2sPort = options.c2sPort ?? (options.users.isEmpty ? nil : 5222)

    let server = try await ReferenceServer.start(configuration: configuration, logger: logger)
    print(
        """
        reference-server for \(options.domain) (DEVELOPMENT ONLY)
          XEP-0225 port:  \(server.port)  (STARTTLS required)
          XEP-0114 port:  \(server.legacyPort.map(String.init) ?? "off")
          CA certificate: \(files.caCertificateFile)
          SASL identity:  \(identity)
          SASL password:  \(password)
          may bind:       \(identity), *.\(identity)
          XEP-0114:       \(server.legacyPort == nil ? "off" : "legacy.\(options.domain) with secret \(legacySecret)")
          c2s port:       \(server.c2sPort.map { "\($0)  (STARTTLS required)" } ?? "off")
          users:          \(options.users.isEmpty ? "none (--user JID=PASSWORD)" : options.users.keys.sorted().joined(separator: ", "))
        """)
    fflush(nil)

    signal(SIGINT, SIG_IGN)
    signal(SIGTERM, SIG_IGN)
    let (stopSignal, continuation) = AsyncStream<Int32>.makeStream()
    let sources = signalSources([SIGINT, SIGTERM], continuation)
    let commands = Task { await runCommands(server) }
    for await _ in stopSignal { break }
    commands.cancel()
    sources.forEach { $0.cancel() }
    print("stopping")
    server.sendStreamError(StreamError(.systemShutdown))
    await server.stop()
} catch {
    fail("\(error)")
}
