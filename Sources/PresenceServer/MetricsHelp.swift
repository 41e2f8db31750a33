import CoreMetrics
import Prometheus

/// The `# HELP` text of every metric the server exports, by its swift-metrics label.
enum MetricsHelp {
    static let texts: [String: String] = [
        "hb.requests": "HTTP requests answered, by route, method and status (snapshots and message posts served by the fast path are in presence_snapshot_fast_path_total and presence_post_fast_path_total instead).",
        "http.server.request.duration": "Time from a request's arrival to its answer, by route, method and status.",
        "hb.request.errors": "HTTP requests answered with a status of 400 or more, by route, method and status (error_type).",
        "http.server.active_requests": "HTTP requests being answered now, by method.",
        "presence_events_appended_total": "Presence events appended to the log (gateways' posts, the node's own heartbeats, leases and sockets).",
        "presence_commit_seconds": "Time from an append's request to its durable acknowledgement and projection.",
        "presence_apply_seconds": "Time the commit thread holds the node's lock for a commit: applying it to the projection and noting the watched users' changes.",
        "presence_fan_out_seconds": "Time each fan-out takes to queue the frames of the commits waiting for it to every watching WebSocket session (on the push queue; on the commit thread when too many frames wait).",
        "presence_websockets_open": "WebSocket sessions open now.",
        "presence_pushes_sent_total": "Presence pushes queued to WebSocket sessions.",
        "presence_snapshot_fast_path_total": "Conversation snapshots answered on the event loop, ahead of the HTTP codec.",
        "presence_post_fast_path_total": "Message posts taken ahead of the HTTP codec (answered once durable, in request order).",
    ]
}

/// `PrometheusMetricsFactory` with `# HELP` lines: metrics whose label has a text in `help` are made
/// with it (swift-metrics' API has no place for one), every other metric as the factory makes it.
/// A name must always come with the same help text (the registry insists), so it is decided here, once.
public struct HelpfulMetricsFactory: MetricsFactory {
    private let base: PrometheusMetricsFactory
    private let help: [String: String]

    public init(registry: PrometheusCollectorRegistry) {
        base = PrometheusMetricsFactory(registry: registry)
        help = MetricsHelp.texts
    }

    private func descriptor(_ label: String) -> MetricNameDescriptor? {
        help[label].map { MetricNameDescriptor(metricName: label, unitName: "", helpText: $0) }
    }

    public func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        guard let descriptor = descriptor(label) else { return base.makeCounter(label: label, dimensions: dimensions) }
        return base.registry.makeCounter(descriptor: descriptor, labels: dimensions)
    }

    public func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        base.makeFloatingPointCounter(label: label, dimensions: dimensions)
    }

    public func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        guard !aggregate, let descriptor = descriptor(label) else { return base.makeRecorder(label: label, dimensions: dimensions, aggregate: aggregate) }
        return base.registry.makeGauge(descriptor: descriptor, labels: dimensions)
    }

    public func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        guard let descriptor = descriptor(label) else { return base.makeMeter(label: label, dimensions: dimensions) }
        return base.registry.makeGauge(descriptor: descriptor, labels: dimensions)
    }

    public func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        guard let descriptor = descriptor(label) else { return base.makeTimer(label: label, dimensions: dimensions) }
        let buckets = base.durationHistogramBuckets[label] ?? base.defaultDurationHistogramBuckets
        return base.registry.makeDurationHistogram(descriptor: descriptor, labels: dimensions, buckets: buckets)
    }

    public func destroyCounter(_ handler: any CounterHandler) { base.destroyCounter(handler) }
    public func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) { base.destroyFloatingPointCounter(handler) }
    public func destroyRecorder(_ handler: any RecorderHandler) { base.destroyRecorder(handler) }
    public func destroyMeter(_ handler: any MeterHandler) { base.destroyMeter(handler) }
    public func destroyTimer(_ handler: any TimerHandler) { base.destroyTimer(handler) }
}
