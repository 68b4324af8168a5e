import CoreMetrics
import Metrics
import Synchronization

/// The host's metrics, created once through swift-metrics (whatever backend the
/// application bootstrapped; `component-host` uses Prometheus).
///
/// | metric | type | labels | source |
/// | --- | --- | --- | --- |
/// | `xmpp_component_connected` | gauge | | 1 while a stream is up (``/ComponentKit/ComponentEvent``s) |
/// | `xmpp_component_reconnects_total` | counter | | connection attempts after the first |
/// | `xmpp_component_disconnects_total` | counter | | streams that closed |
/// | `xmpp_component_bind_errors_total` | counter | | binds the server refused or that failed |
/// | `xmpp_component_stanzas_in_total` | counter | `hostname` | stanzas routed to the hostname (ComponentKit status) |
/// | `xmpp_component_stanzas_out_total` | counter | `hostname` | stanzas sent from the hostname (ComponentKit status) |
/// | `xmpp_component_iq_handling_seconds` | timer | `hostname` | time a handler takes over an IQ get/set |
/// | `xmpp_component_queue_depth` | gauge | `hostname` | stanzas routed but not yet started by the handler |
/// | `xmpp_component_handler_hangs_total` | counter | `hostname` | stanzas in progress longer than the watchdog threshold |
/// | `xmpp_component_handler_hung` | gauge | `hostname` | 1 while a stanza is hung |
public final class HostMetrics: Sendable {
    /// The per-hostname metrics.
    public struct Hostname: Sendable {
        let stanzasIn: Counter
        let stanzasOut: Counter
        let iqLatency: Metrics.Timer
        let queueDepth: Gauge
        let hangs: Counter
        let hung: Gauge
    }

    private struct Seen {
        var stanzasIn = 0
        var stanzasOut = 0
    }

    let connected: Gauge
    let reconnects: Counter
    let disconnects: Counter
    let bindErrors: Counter
    private let hostnames = Mutex<[String: Hostname]>([:])
    private let seen = Mutex<[String: Seen]>([:])

    /// Creates the host-wide metrics.
    public init() {
        self.connected = Gauge(label: "xmpp_component_connected")
        self.reconnects = Counter(label: "xmpp_component_reconnects_total")
        self.disconnects = Counter(label: "xmpp_component_disconnects_total")
        self.bindErrors = Counter(label: "xmpp_component_bind_errors_total")
    }

    /// The metrics of one hostname, created on first use and kept.
    func hostname(_ hostname: String) -> Hostname {
        let key = hostnameKey(hostname)
        return self.hostnames.withLock { cache in
            if let existing = cache[key] { return existing }
            let dimensions = [("hostname", key)]
            let metrics = Hostname(
                stanzasIn: Counter(label: "xmpp_component_stanzas_in_total", dimensions: dimensions),
                stanzasOut: Counter(label: "xmpp_component_stanzas_out_total", dimensions: dimensions),
                iqLatency: Metrics.Timer(label: "xmpp_component_iq_handling_seconds", dimensions: dimensions),
                queueDepth: Gauge(label: "xmpp_component_queue_depth", dimensions: dimensions),
                hangs: Counter(label: "xmpp_component_handler_hangs_total", dimensions: dimensions),
                hung: Gauge(label: "xmpp_component_handler_hung", dimensions: dimensions))
            cache[key] = metrics
            return metrics
        }
    }

    /// Turns ComponentKit's cumulative per-binding counters into counter increments
    /// (a binding made again starts from zero).
    func observe(hostname: String, stanzasIn: Int, stanzasOut: Int, started: Int) {
        let key = hostnameKey(hostname)
        let metrics = self.hostname(key)
        let (deltaIn, deltaOut) = self.seen.withLock { seen -> (Int, Int) in
            let previous = seen[key] ?? Seen()
            seen[key] = Seen(stanzasIn: stanzasIn, stanzasOut: stanzasOut)
            let deltaIn = stanzasIn >= previous.stanzasIn ? stanzasIn - previous.stanzasIn : stanzasIn
            let deltaOut = stanzasOut >= previous.stanzasOut ? stanzasOut - previous.stanzasOut : stanzasOut
            return (deltaIn, deltaOut)
        }
        if deltaIn > 0 { metrics.stanzasIn.increment(by: deltaIn) }
        if deltaOut > 0 { metrics.stanzasOut.increment(by: deltaOut) }
        metrics.queueDepth.record(max(0, stanzasIn - started))
    }

    /// Forgets a hostname's last seen counters (it was unbound).
    func forget(hostname: String) {
        let key = hostnameKey(hostname)
        _ = self.seen.withLock { $0.removeValue(forKey: key) }
        self.hostname(key).queueDepth.record(0)
    }
}
