import Foundation

/// The human table and the JSON file.
enum Table {
    static func render(_ report: Suite.Report) -> String {
        var lines: [String] = []
        let machine = report.machine
        lines.append(
            "machine: \(machine["cpu"] ?? "?"), \(machine["nproc"] ?? "?") cores, \(machine["memoryGiB"] ?? "?") GiB")
        lines.append(
            "echo: \(report.stanzasPerRun) message stanzas per run, \(report.bodyBytes)-byte bodies, \(report.window) in flight"
                + (report.smoke ? " (SMOKE: figures are not meaningful)" : ""))
        let header = [
            pad("target", 18), pad("transport", 13), lpad("stanzas/s", 10), lpad("×lstr", 6), lpad("×ceil", 6),
            lpad("p50 ms", 8), lpad("p99 ms", 8), lpad("p999 ms", 8), lpad("CPU µs", 7), lpad("CPU×lstr", 8),
            lpad("cs/echo", 8), lpad("½rate/s", 9), lpad("½ p99 ms", 9),
        ].joined(separator: " ")
        for placement in Self.placements(report) {
            lines.append("")
            lines.append("echo, " + (Placement(rawValue: placement)?.summary ?? placement))
            lines.append(header)
            lines.append(String(repeating: "-", count: header.count))
            for row in report.echo where row.placement == placement {
                guard row.ran else {
                    lines.append(pad(row.target, 18) + " " + pad(row.transport, 13) + " did not run: " + (row.note ?? ""))
                    continue
                }
                lines.append(
                    [
                        pad(row.target, 18), pad(row.transport, 13), lpad(String(Int(row.stanzasPerSecond)), 10),
                        lpad(fixed(row.ratioToLibstrophe, 2), 6), lpad(fixed(row.ratioToCeiling, 2), 6),
                        lpad(fixed(row.p50Milliseconds, 2), 8), lpad(fixed(row.p99Milliseconds, 2), 8),
                        lpad(fixed(row.p999Milliseconds, 2), 8), lpad(fixed(row.cpuMicrosecondsPerStanza, 1), 7),
                        lpad(fixed(row.cpuRatioToLibstrophe, 2), 8), lpad(fixed(row.contextSwitchesPerStanza, 3), 8),
                        lpad(String(Int(row.halfRateStanzasPerSecond)), 9), lpad(fixed(row.halfRateP99Milliseconds, 2), 9),
                    ].joined(separator: " "))
            }
        }
        lines.append("×lstr: echoes/s ÷ libstrophe's; ×ceil: echoes/s ÷ the reflector's; CPU×lstr: CPU per echo ÷ libstrophe's")
        lines.append("  (all ratios within one placement of this run);")
        lines.append("CPU µs: CPU time (user+system, all threads) of the component process per echoed stanza;")
        lines.append("cs/echo: voluntary + nonvoluntary context switches of the component's threads per echoed stanza;")
        lines.append("½rate: open-loop run at half the peak rate, with its p99.")
        lines.append(
            "host-external-libstrophe: libstrophe started by component-host (`external` plugin), CPU µs = host + libstrophe.")
        for row in report.echo where row.target == "host-external-libstrophe" && row.ran {
            guard let cpu = row.addedCPUMicrosecondsPerStanza else { continue }
            lines.append(
                "  added by component-host per echo (\(row.placement)): \(fixed(cpu, 1)) µs CPU, "
                    + "p50 +\(fixed(row.addedP50Milliseconds, 3)) ms, p99 +\(fixed(row.addedP99Milliseconds, 3)) ms "
                    + "(\(Int(row.stanzasPerSecond)) echoes/s vs libstrophe direct)")
        }
        if let placement = report.binds.first?.placement ?? report.decode?.placement {
            lines.append("")
            lines.append("binds and decode: " + (Placement(rawValue: placement)?.summary ?? placement))
        }
        if !report.binds.isEmpty {
            lines.append("")
            lines.append(
                [pad("binds", 32), lpad("hostnames", 9), lpad("first→last s", 13), lpad("from start s", 13), lpad("RSS MiB", 8)]
                    .joined(separator: " "))
            for row in report.binds {
                guard row.ran else {
                    lines.append(pad(row.mode, 32) + " did not run: " + (row.note ?? ""))
                    continue
                }
                lines.append(
                    [
                        pad(row.mode, 32), lpad(String(row.hostnames), 9), lpad(fixed(row.secondsFirstToLast, 3), 13),
                        lpad(fixed(row.secondsFromStart, 3), 13), lpad(fixed(row.residentMiB, 1), 8),
                    ].joined(separator: " "))
            }
        }
        if let decode = report.decode {
            lines.append("")
            lines.append(
                "decode (\(fixed(decode.megabytes, 1)) MiB): bare expat \(fixed(decode.bareExpatMiBPerSecond, 1)) MiB/s, "
                    + "XMLStreamParser \(fixed(decode.streamParserMiBPerSecond, 1)) MiB/s = \(fixed(decode.ratio * 100, 1))% of expat"
            )
        }
        lines.append("")
        lines.append("targets:")
        lines.append(contentsOf: verdicts(report).map { "  " + $0 })
        return lines.joined(separator: "\n")
    }

    /// One line per target: met, missed or not measured. Never fails anything.
    static func verdicts(_ report: Suite.Report) -> [String] {
        func mark(_ met: Bool?) -> String { met.map { $0 ? "met   " : "MISSED" } ?? "n/a   " }
        var lines: [String] = []
        for placement in Self.placements(report) {
            for target in ["host-xep0225-tls", "host-xep0114"] {
                guard let row = report.echo.first(where: { $0.target == target && $0.placement == placement && $0.ran })
                else { continue }
                let name = "\(target) (\(placement))"
                lines.append(
                    "\(mark(row.ratioToLibstrophe.map { $0 >= 2 })) \(name) ≥ 2× libstrophe's echoes/s: \(fixed(row.ratioToLibstrophe, 2))×"
                )
                lines.append(
                    "\(mark(row.cpuRatioToLibstrophe.map { $0 <= 0.5 })) \(name) ≤ 0.5× libstrophe's CPU per echo: \(fixed(row.cpuRatioToLibstrophe, 2))× (\(fixed(row.cpuMicrosecondsPerStanza, 1)) µs)"
                )
                lines.append(
                    "\(mark(row.ratioToCeiling.map { $0 >= 0.4 })) \(name) ≥ 40% of reflector: \(fixed(row.ratioToCeiling.map { $0 * 100 }, 1))%"
                )
                lines.append(
                    "\(mark(row.halfRateP99Milliseconds < 5)) \(name) p99 < 5 ms at half peak: \(fixed(row.halfRateP99Milliseconds, 2)) ms"
                )
            }
        }
        if let bind = report.binds.first, bind.ran {
            lines.append(
                "\(mark(bind.secondsFirstToLast < 1)) \(bind.hostnames) binds < 1 s: \(fixed(bind.secondsFirstToLast, 3)) s (\(fixed(bind.secondsFromStart, 3)) s from process start)"
            )
            lines.append(
                "\(mark(bind.residentMiB < 100)) \(bind.hostnames) bound < 100 MB RSS: \(fixed(bind.residentMiB, 1)) MiB")
        }
        if let decode = report.decode {
            lines.append("\(mark(decode.ratio >= 0.7)) decode ≥ 70% of expat: \(fixed(decode.ratio * 100, 1))%")
        }
        return lines
    }

    /// The placements of the echo rows, in the order they ran.
    static func placements(_ report: Suite.Report) -> [String] {
        var seen: [String] = []
        for row in report.echo where !seen.contains(row.placement) { seen.append(row.placement) }
        return seen
    }

    static func writeJSON(_ report: Suite.Report, to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try encoder.encode(report)
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        try data.write(to: URL(fileURLWithPath: path))
    }

    static func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
    }
    static func lpad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text : String(repeating: " ", count: width - text.count) + text
    }
    static func fixed(_ value: Double?, _ digits: Int) -> String {
        guard let value, value.isFinite else { return "–" }
        return String(format: "%.\(digits)f", value)
    }
}
