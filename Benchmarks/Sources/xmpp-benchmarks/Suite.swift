import Foundation
import NIOCore
import NIOPosix
import ReferenceServer
import XMPPCore
import XMPPSASL
import XMPPTLS

/// `xmpp-benchmarks all`: every measurement in one run, a table on stdout and JSON.
struct Suite {
    struct Options {
        var smoke = false
        var hostBinary = ".build/release/component-host"
        var peers = ".build/peers"
        var json = "results/latest.json"
        var logs = "results/logs"
        var stanzas = 100_000
        var window = 1_000
        var bindCount = 1_000
        var pluginCount = 100
        var only: Set<String>? = nil
        /// The echo runs are repeated in each placement, in this order.
        var placements: [Placement] = [.pinned, .unpinned]
    }

    static let domain = "bench.test"
    static let identity = "component.bench.test"
    static let password = "bench-password-1"
    /// 150 bytes of body text.
    static let body = String(repeating: "0123456789abcdefghijklmnopqrstuvwxyz ", count: 5).prefix(150).description

    let options: Options
    let directory: String
    /// The components' output, kept after the run.
    var logs: String { self.options.logs }
    let harnessCore = 0
    let componentCore = 1

    init(options: Options) throws {
        self.options = options
        self.directory = NSTemporaryDirectory() + "xmpp-bench-\(getpid())"
        // 0700: the hosts' admin sockets live here, and component-host refuses a socket
        // directory others can enter (issue #13 item 7).
        try FileManager.default.createDirectory(
            atPath: self.directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        try FileManager.default.setAttributes([.posixPermissions: 0o700], ofItemAtPath: self.directory)
        try? FileManager.default.removeItem(atPath: options.logs)
        try FileManager.default.createDirectory(atPath: options.logs, withIntermediateDirectories: true)
    }

    // MARK: Results

    struct EchoFigures: Codable {
        var target: String
        var transport: String
        var ran: Bool
        var note: String?
        var stanzas: Int = 0
        var stanzasPerSecond: Double = 0
        var p50Milliseconds: Double = 0
        var p99Milliseconds: Double = 0
        var p999Milliseconds: Double = 0
        var cpuMicrosecondsPerStanza: Double = 0
        var halfRateStanzasPerSecond: Double = 0
        var halfRateP99Milliseconds: Double = 0
        var ratioToFastestPeer: Double?
        var ratioToCeiling: Double?
        /// `pinned` or `unpinned` (see ``Placement``); ratios are within one placement.
        var placement: String = ""
        /// Voluntary + nonvoluntary context switches of the component's threads during the
        /// peak run, divided by `stanzas`.
        var contextSwitchesPerStanza: Double = 0
        var voluntaryContextSwitchesPerStanza: Double = 0
        var nonvoluntaryContextSwitchesPerStanza: Double = 0
        /// Threads of the component at the end of the peak run, and those that ended during it
        /// (their switches are not counted).
        var componentThreads: Int = 0
        var componentThreadsEnded: Int = 0
        /// `Cpus_allowed_list` of the component process.
        var componentCPUs: String?
        /// Echoes/s and CPU per echo divided by libstrophe's in the same placement.
        var ratioToLibstrophe: Double?
        var cpuRatioToLibstrophe: Double?
        /// For `host-external-libstrophe`: what carrying libstrophe through component-host's
        /// `external` plugin adds per echoed stanza to libstrophe connected directly (same
        /// placement): CPU µs (host + libstrophe against libstrophe alone) and latency.
        var addedCPUMicrosecondsPerStanza: Double?
        var addedP50Milliseconds: Double?
        var addedP99Milliseconds: Double?
    }

    struct BindFigures: Codable {
        var mode: String
        var ran: Bool
        var note: String?
        var hostnames: Int
        var secondsFromStart: Double = 0
        var secondsFirstToLast: Double = 0
        var residentMiB: Double = 0
        /// `pinned` or `unpinned`: the placement it ran in (see ``Placement``).
        var placement: String?
    }

    struct DecodeFigures: Codable {
        var megabytes: Double
        var bareExpatMiBPerSecond: Double
        var streamParserMiBPerSecond: Double
        var ratio: Double
        var placement: String?
    }

    struct Report: Codable {
        var machine: [String: String]
        var smoke: Bool
        var stanzasPerRun: Int
        var window: Int
        var bodyBytes: Int
        var echo: [EchoFigures]
        var binds: [BindFigures]
        var decode: DecodeFigures?
        var targets: [String: String]
        /// Selected targets that did not run (target: reason). Any entry fails the run.
        var notRun: [String: String] = [:]
    }

    // MARK: Set-up

    func makeServer(group: any EventLoopGroup, legacyHostnames: [String]) async throws -> ReferenceServer {
        let files = try DevelopmentCertificateAuthority().issue(dnsNames: [Self.domain])
            .write(toDirectory: self.directory, name: "server")
        let sasldb = self.directory + "/sasldb"
        try SASLDatabase.setPassword(path: sasldb, user: Self.identity, realm: Self.domain, password: Self.password)
        try Self.password.write(toFile: self.directory + "/password", atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: self.directory + "/password")
        try (try String(contentsOfFile: files.caCertificateFile, encoding: .utf8))
            .write(toFile: self.directory + "/ca.pem", atomically: true, encoding: .utf8)
        var configuration = ReferenceServerConfiguration(
            domain: Self.domain, tls: files.serverConfiguration, sasl: .init(sasldbPath: sasldb))
        configuration.allowedHostnames = [Self.identity: ["*.\(Self.domain)"]]
        configuration.legacyPort = 0
        configuration.legacySecrets = Dictionary(uniqueKeysWithValues: legacyHostnames.map { ($0, Self.password) })
        return try await ReferenceServer.start(configuration: configuration, group: group)
    }

    /// A component-host configuration with `hostnames`, all on the echo plugin (or, with
    /// `external`, on the `external` plugin running that command against a local listener).
    func hostConfiguration(
        name: String, server: ReferenceServer, legacy: Bool, hostnames: [String], external: [String]? = nil,
        acknowledgements: Bool = true
    ) throws -> String {
        var text = """
            [server]
            host = "127.0.0.1"
            port = \(legacy ? server.legacyPort! : server.port)
            domain = "\(Self.domain)"
            protocol = "\(legacy ? "xep0114" : "xep0225")"
            tls = "\(legacy ? "none" : "starttls")"
            ca_file = "\(self.directory)/ca.pem"
            acknowledgements = \(acknowledgements)

            [auth]
            identity = "\(Self.identity)"
            password_file = "\(self.directory)/password"

            [admin]
            socket = "\(self.directory)/\(name).sock"

            [logging]
            level = "warning"

            """
        for hostname in hostnames {
            guard let external else {
                text += "\n[[component]]\nhostname = \"\(hostname)\"\nplugin = \"echo\"\n"
                continue
            }
            let command = external.map { "\"\($0)\"" }.joined(separator: ", ")
            text += """

                [[component]]
                hostname = "\(hostname)"
                plugin = "external"
                [component.options]
                listen = "127.0.0.1:\(try Self.freePort())"
                secret_file = "\(self.directory)/password"
                command = [\(command)]
                restart = "always"

                """
        }
        let path = self.directory + "/\(name).toml"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    // MARK: Run

    func run() async throws -> Report {
        let bindHostnames = (0..<self.options.bindCount).map { "b\($0).bind.\(Self.domain)" }
        let legacyBindHostnames = (0..<self.options.bindCount).map { "l\($0).legacy.\(Self.domain)" }
        let multiHostnames = (0..<self.options.pluginCount).map { "m\($0).multi.\(Self.domain)" }
        let legacyTargets = ["reflector", "libstrophe", "gloox", "slixmpp", "host-xep0114"].map { "\($0).\(Self.domain)" }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        // The XEP-0114 bind run gets a server of its own: the reference server looks up its
        // XEP-0114 secrets linearly when it routes to users, and 1 000 of them would make it
        // the bottleneck of the echo runs.
        let server = try await self.makeServer(group: group, legacyHostnames: legacyTargets)
        defer { ChildProcess.killAll() }

        func wanted(_ name: String) -> Bool { self.options.only.map { $0.contains(name) } ?? true }
        // Every name `--only` accepts; an unknown one is a target that did not run.
        let known: Set<String> = [
            "reflector", "host-xep0225-tls", "host-noacks", "host-xep0114", "libstrophe", "host-external-libstrophe",
            "gloox", "slixmpp", "host-100-plugins", "binds", "decode",
        ]
        var notRun: [String: String] = [:]
        for name in (self.options.only ?? []).subtracting(known) {
            notRun[name] = "no such target (known: \(known.sorted().joined(separator: ", ")))"
        }

        var echo: [EchoFigures] = []
        let peers = self.options.peers
        let host = self.options.hostBinary
        let legacyPort = String(server.legacyPort!)
        typealias Launch = (name: String, transport: String, hostnames: [String], start: () throws -> ChildProcess)
        var launches: [Launch] = []
        func legacyPeer(_ name: String, _ executable: String, _ prefix: [String] = []) -> Launch {
            let hostname = "\(name).\(Self.domain)"
            return (
                name, "XEP-0114", [hostname],
                {
                    try ChildProcess(
                        name: name, core: self.componentCore, executable: executable,
                        arguments: prefix + ["127.0.0.1", legacyPort, hostname, Self.password],
                        log: self.logs + "/\(name).log")
                }
            )
        }
        func hostLaunch(
            _ name: String, transport: String, legacy: Bool, hostnames: [String], acknowledgements: Bool = true
        ) -> Launch {
            (
                name, transport, hostnames,
                {
                    let configuration = try self.hostConfiguration(
                        name: name, server: server, legacy: legacy, hostnames: hostnames, acknowledgements: acknowledgements)
                    return try ChildProcess(
                        name: name, core: self.componentCore, executable: host, arguments: ["run", "--config", configuration],
                        log: self.logs + "/\(name).log")
                }
            )
        }
        launches.append(legacyPeer("reflector", peers + "/reflector"))
        launches.append(
            hostLaunch("host-xep0225-tls", transport: "XEP-0225+TLS", legacy: false, hostnames: ["host-xep0225.\(Self.domain)"]))
        // The same without XEP-0198 acknowledgements (the reference server offers them): the
        // difference to the row above is what acknowledging handled stanzas costs.
        launches.append(
            hostLaunch(
                "host-noacks", transport: "0225+TLS noack", legacy: false,
                hostnames: ["host-noacks.\(Self.domain)"], acknowledgements: false))
        launches.append(
            hostLaunch("host-xep0114", transport: "XEP-0114", legacy: true, hostnames: ["host-xep0114.\(Self.domain)"]))
        launches.append(legacyPeer("libstrophe", peers + "/strophe-echo"))
        // The same libstrophe echo, started by component-host (`external` plugin) and carried
        // upstream on its XEP-0225+TLS stream: the difference to the row above is the cost of
        // the host as a connection manager.
        launches.append(
            (
                "host-external-libstrophe", "local 0114→0225", ["external-libstrophe.\(Self.domain)"],
                {
                    let wrapper =
                        #"exec "$0" "${COMPONENT_LISTEN%:*}" "${COMPONENT_LISTEN##*:}" "$COMPONENT_HOSTNAME" "$COMPONENT_SECRET""#
                    let configuration = try self.hostConfiguration(
                        name: "host-external-libstrophe", server: server, legacy: false,
                        hostnames: ["external-libstrophe.\(Self.domain)"],
                        external: [
                            "/bin/sh", "-c", wrapper.replacingOccurrences(of: "\"", with: "\\\""), peers + "/strophe-echo",
                        ])
                    return try ChildProcess(
                        name: "host-external-libstrophe", core: self.componentCore, executable: host,
                        arguments: ["run", "--config", configuration], log: self.logs + "/host-external-libstrophe.log")
                }
            ))
        launches.append(legacyPeer("gloox", peers + "/gloox-echo"))
        launches.append(legacyPeer("slixmpp", "/usr/bin/python3", [peers + "/slixmpp_echo.py"]))
        launches.append(hostLaunch("host-100-plugins", transport: "XEP-0225+TLS", legacy: false, hostnames: multiHostnames))

        // Every target in the first placement, then every target in the next (pinned, unpinned).
        let rounds = self.options.placements.enumerated().flatMap { round, placement in
            launches.enumerated().map { (placement: placement, run: round * 100 + $0.offset, launch: $0.element) }
        }
        for (placement, index, launch) in rounds where wanted(launch.name) {
            if Placement.current != placement { try Placement.apply(placement, harnessCore: self.harnessCore) }
            var figures = EchoFigures(target: launch.name, transport: launch.transport, ran: false)
            do {
                figures = try await self.echoRun(
                    launch: launch, server: server, loop: loop, run: index)
            } catch {
                figures.note = "\(error)"
            }
            figures.placement = placement.rawValue
            log(
                "echo \(launch.name) \(placement.rawValue): \(figures.ran ? "\(Int(figures.stanzasPerSecond))/s, \(String(format1: figures.cpuMicrosecondsPerStanza)) µs, \(String(format3: figures.contextSwitchesPerStanza)) cs per echo" : "failed: \(figures.note ?? "")")"
            )
            echo.append(figures)
        }
        Self.computeRatios(&echo)
        // Binds and decode once, in the first placement.
        let bindsAndDecodePlacement = self.options.placements.first ?? .pinned
        if (wanted("binds") || wanted("decode")) && Placement.current != bindsAndDecodePlacement {
            try Placement.apply(bindsAndDecodePlacement, harnessCore: self.harnessCore)
        }

        var binds: [BindFigures] = []
        if wanted("binds") {
            binds.append(
                await self.bindRun(
                    mode: "XEP-0225+TLS, one stream", server: server,
                    launch: hostLaunch("binds-xep0225", transport: "", legacy: false, hostnames: bindHostnames)))
            let legacyServer = try await self.makeServer(group: group, legacyHostnames: legacyBindHostnames)
            binds.append(
                await self.bindRun(
                    mode: "XEP-0114, one connection each", server: legacyServer,
                    launch: (
                        "binds-xep0114", "", legacyBindHostnames,
                        {
                            let configuration = try self.hostConfiguration(
                                name: "binds-xep0114", server: legacyServer, legacy: true, hostnames: legacyBindHostnames)
                            return try ChildProcess(
                                name: "binds-xep0114", core: self.componentCore, executable: host,
                                arguments: ["run", "--config", configuration], log: self.logs + "/binds-xep0114.log")
                        }
                    )))
            await legacyServer.stop()
        }

        var decode: DecodeFigures?
        if wanted("decode") {
            let megabytes = self.options.smoke ? 2 : 50
            let figures = Decode(megabytes: megabytes, chunkSize: 4096, runs: self.options.smoke ? 1 : 3).measure()
            decode = DecodeFigures(
                megabytes: figures.megabytes, bareExpatMiBPerSecond: figures.megabytes / figures.bareSeconds,
                streamParserMiBPerSecond: figures.megabytes / figures.streamSeconds,
                ratio: figures.bareSeconds / figures.streamSeconds, placement: Placement.current?.rawValue)
        }
        await server.stop()
        try? await group.shutdownGracefully()
        try? FileManager.default.removeItem(atPath: self.directory)
        for row in echo where !row.ran { notRun["echo \(row.target) (\(row.placement))"] = row.note ?? "did not run" }
        for row in binds where !row.ran { notRun["binds \(row.mode)"] = row.note ?? "did not run" }

        return Report(
            machine: Self.machine(), smoke: self.options.smoke, stanzasPerRun: self.options.stanzas,
            window: self.options.window, bodyBytes: Self.body.utf8.count, echo: echo, binds: binds, decode: decode,
            targets: [
                "throughput":
                    ">= 2x libstrophe's echoes/s and <= 0.5x its CPU per echo, >= 40% of the reflector, in each placement",
                "latency": "p99 < 5 ms at half the peak rate",
                "binds": "1000 binds < 1 s and < 100 MB RSS",
                "decode": ">= 70% of bare expat",
            ],
            notRun: notRun)
    }

    func echoRun(
        launch: (name: String, transport: String, hostnames: [String], start: () throws -> ChildProcess),
        server: ReferenceServer, loop: any EventLoop, run: Int
    ) async throws -> EchoFigures {
        let process = try launch.start()
        defer { process.stop() }
        for hostname in launch.hostnames {
            try await server.waitUntilBound(hostname, timeout: .seconds(30))
        }
        let total = self.options.stanzas
        let timeout = TimeAmount.seconds(Int64(max(60, total / 1_000)))
        func go(_ count: Int, _ mode: LoadGenerator.Mode, _ index: Int) async throws -> LoadGenerator.Result {
            let result = try await LoadGenerator.run(
                server: server, loop: loop, targets: launch.hostnames, userDomain: Self.domain, body: Self.body,
                total: count, mode: mode, timeout: timeout, run: run * 10 + index)
            if result.timedOut {
                throw BenchmarkError("\(launch.name): \(result.stanzas) of \(count) echoes within \(timeout)")
            }
            return result
        }
        // Warm-up (not recorded), then the closed-loop run with CPU accounting.
        _ = try await go(max(100, total / 10), .closedLoop(window: self.options.window), 0)
        let switchesBefore = process.contextSwitches
        let cpuBefore = process.treeCPUSeconds
        let peak = try await go(total, .closedLoop(window: self.options.window), 1)
        let cpuAfter = process.treeCPUSeconds
        let switchesAfter = process.contextSwitches
        let switches = switchesAfter.since(switchesBefore)
        // Half the peak rate, open loop, for as long as the peak run took.
        let halfRate = peak.stanzasPerSecond / 2
        let half = try await go(max(100, total / 2), .openLoop(rate: halfRate), 2)
        guard process.isRunning else { throw BenchmarkError("\(launch.name) exited") }
        return EchoFigures(
            target: launch.name, transport: launch.transport, ran: true, note: nil, stanzas: total,
            stanzasPerSecond: peak.stanzasPerSecond, p50Milliseconds: peak.percentileMilliseconds(50),
            p99Milliseconds: peak.percentileMilliseconds(99), p999Milliseconds: peak.percentileMilliseconds(99.9),
            cpuMicrosecondsPerStanza: (cpuAfter - cpuBefore) * 1e6 / Double(total),
            halfRateStanzasPerSecond: half.stanzasPerSecond, halfRateP99Milliseconds: half.percentileMilliseconds(99),
            contextSwitchesPerStanza: Double(switches.voluntary + switches.nonvoluntary) / Double(total),
            voluntaryContextSwitchesPerStanza: Double(switches.voluntary) / Double(total),
            nonvoluntaryContextSwitchesPerStanza: Double(switches.nonvoluntary) / Double(total),
            componentThreads: switches.threads, componentThreadsEnded: switchesAfter.ended(since: switchesBefore),
            componentCPUs: process.allowedCPUs)
    }

    func bindRun(
        mode: String, server: ReferenceServer,
        launch: (name: String, transport: String, hostnames: [String], start: () throws -> ChildProcess)
    ) async -> BindFigures {
        var figures = BindFigures(
            mode: mode, ran: false, hostnames: launch.hostnames.count, placement: Placement.current?.rawValue)
        let events = server.hostnameEvents()
        let clock = ContinuousClock()
        let started = clock.now
        var process: ChildProcess?
        do {
            process = try launch.start()
            var first: ContinuousClock.Instant?
            var last = started
            var remaining = Set(launch.hostnames)
            let deadline = Task {
                try await Task.sleep(for: .seconds(60))
                server.sendStreamError(.init(.systemShutdown))
            }
            for await event in events {
                guard case .bound(let hostname) = event, remaining.remove(hostname) != nil else { continue }
                if first == nil { first = clock.now }
                last = clock.now
                if remaining.isEmpty { break }
            }
            deadline.cancel()
            guard remaining.isEmpty else { throw BenchmarkError("\(remaining.count) hostnames never bound") }
            figures.secondsFromStart = (last - started).seconds
            figures.secondsFirstToLast = (last - (first ?? started)).seconds
            try await Task.sleep(for: .milliseconds(500))
            figures.residentMiB = process!.residentMiB
            figures.ran = true
        } catch {
            figures.note = "\(error)"
        }
        process?.stop()
        // Wait until the server has seen the streams go.
        let deadline = clock.now + .seconds(10)
        while !server.boundHostnames.isEmpty && clock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        log("binds \(mode): \(figures.ran ? "\(figures.secondsFirstToLast) s, \(figures.residentMiB) MiB" : figures.note ?? "")")
        return figures
    }

    static func machine() -> [String: String] {
        var machine: [String: String] = [:]
        machine["nproc"] = String(ProcessInfo.processInfo.activeProcessorCount)
        machine["memoryGiB"] = String(format: "%.1f", Double(ProcessInfo.processInfo.physicalMemory) / 1_073_741_824)
        if let cpuinfo = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
            let line = cpuinfo.split(separator: "\n").first(where: { $0.hasPrefix("model name") })
        {
            machine["cpu"] = line.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) }
        }
        machine["kernel"] = ProcessInfo.processInfo.operatingSystemVersionString
        return machine
    }
}

extension Suite {
    /// A free loopback TCP port (bound to port 0, then released).
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw BenchmarkError("socket() failed") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
            }
        }
        guard bound else { throw BenchmarkError("cannot find a free port") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

struct BenchmarkError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

func log(_ message: String) {
    FileHandle.standardError.write(Data(("· " + message + "\n").utf8))
}
