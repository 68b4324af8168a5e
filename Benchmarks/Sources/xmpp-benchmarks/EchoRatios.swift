extension Suite {
    /// The ratios of every echo row, each against the rows of the same placement (same
    /// sitting): to the reflector (the ceiling), to the fastest peer, and to libstrophe
    /// (echoes/s, and CPU per echo).
    static func computeRatios(_ echo: inout [EchoFigures]) {
        for placement in Set(echo.map(\.placement)) {
            let rows = echo.filter { $0.placement == placement && $0.ran }
            let ceiling = rows.first { $0.target == "reflector" }?.stanzasPerSecond
            let fastestPeer = rows.filter { ["libstrophe", "gloox", "slixmpp"].contains($0.target) }
                .map(\.stanzasPerSecond).max()
            let libstrophe = rows.first { $0.target == "libstrophe" }
            for index in echo.indices where echo[index].placement == placement && echo[index].ran {
                if let ceiling { echo[index].ratioToCeiling = echo[index].stanzasPerSecond / ceiling }
                if let fastestPeer { echo[index].ratioToFastestPeer = echo[index].stanzasPerSecond / fastestPeer }
                if let libstrophe, echo[index].target == "host-external-libstrophe" {
                    echo[index].addedCPUMicrosecondsPerStanza =
                        echo[index].cpuMicrosecondsPerStanza - libstrophe.cpuMicrosecondsPerStanza
                    echo[index].addedP50Milliseconds = echo[index].p50Milliseconds - libstrophe.p50Milliseconds
                    echo[index].addedP99Milliseconds = echo[index].p99Milliseconds - libstrophe.p99Milliseconds
                }
                if let libstrophe {
                    echo[index].ratioToLibstrophe = echo[index].stanzasPerSecond / libstrophe.stanzasPerSecond
                    // Not when libstrophe's CPU rounds to 0 ticks (a smoke run): JSON has no infinity.
                    let cpuRatio = echo[index].cpuMicrosecondsPerStanza / libstrophe.cpuMicrosecondsPerStanza
                    echo[index].cpuRatioToLibstrophe = cpuRatio.isFinite ? cpuRatio : nil
                }
            }
        }
    }
}
