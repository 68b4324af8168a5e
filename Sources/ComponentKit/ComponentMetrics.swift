import CoreMetrics
import Metrics

/// The swift-metrics instruments of one connection, created once.
///
/// Names follow Prometheus conventions. Dimensions are bounded: the hostname (from the
/// configuration or an operator's bind), never a stanza id or a user address. The SDK
/// never bootstraps a metrics backend; the application (e.g. `component-host`) does.
struct ComponentMetrics: Sendable {
    let connects: Counter
    let connectFailures: Counter
    let bindsSucceeded: Counter
    let bindsRefused: Counter
    let bindsFailed: Counter
    let handlerErrors: Counter
    let bounced: Counter
    let iqLatency: Timer
    let iqTimeouts: Counter
    let queueOverflows: Counter
    let queueExpired: Counter
    /// Inbound stanzas that no handler saw and that got no answer (presences, results and
    /// errors to a hostname not served here, or over its budget; stanzas without a `to`).
    let dropped: Counter
    /// Times reading paused because every mailbox together held the connection's budget.
    let readPauses: Counter

    init(identity: String) {
        let dimensions = [("identity", identity)]
        self.connects = Counter(label: "xmpp_component_connects_total", dimensions: dimensions)
        self.connectFailures = Counter(label: "xmpp_component_connect_failures_total", dimensions: dimensions)
        self.bindsSucceeded = Counter(label: "xmpp_component_binds_total", dimensions: dimensions + [("result", "bound")])
        self.bindsRefused = Counter(label: "xmpp_component_binds_total", dimensions: dimensions + [("result", "refused")])
        self.bindsFailed = Counter(label: "xmpp_component_binds_total", dimensions: dimensions + [("result", "failed")])
        self.handlerErrors = Counter(label: "xmpp_component_handler_errors_total", dimensions: dimensions)
        self.bounced = Counter(label: "xmpp_component_bounced_total", dimensions: dimensions)
        self.iqLatency = Timer(label: "xmpp_component_iq_request_duration_seconds", dimensions: dimensions)
        self.iqTimeouts = Counter(label: "xmpp_component_iq_timeouts_total", dimensions: dimensions)
        self.queueOverflows = Counter(
            label: "xmpp_component_outbound_dropped_total", dimensions: dimensions + [("reason", "queue_full")])
        self.queueExpired = Counter(
            label: "xmpp_component_outbound_dropped_total", dimensions: dimensions + [("reason", "expired")])
        self.dropped = Counter(label: "xmpp_component_inbound_dropped_total", dimensions: dimensions)
        self.readPauses = Counter(label: "xmpp_component_read_pauses_total", dimensions: dimensions)
    }
}

/// Per-hostname instruments, created when a hostname is registered.
struct HostnameMetrics: Sendable {
    let stanzasIn: Counter
    let stanzasOut: Counter
    /// Stanzas refused because the hostname's mailbox was over its budget (answered with
    /// `resource-constraint`, or dropped for presences).
    let overBudget: Counter

    init(hostname: String) {
        self.overBudget = Counter(label: "xmpp_component_over_budget_total", dimensions: [("hostname", hostname)])
        self.stanzasIn = Counter(label: "xmpp_component_stanzas_in_total", dimensions: [("hostname", hostname)])
        self.stanzasOut = Counter(label: "xmpp_component_stanzas_out_total", dimensions: [("hostname", hostname)])
    }
}
