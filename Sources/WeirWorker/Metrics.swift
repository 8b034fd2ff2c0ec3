import CoreMetrics
import Foundation
import Metrics
import Prometheus
import Synchronization
import WeirDrift

/// A worker's metrics: swift-metrics handles backed by a Prometheus registry of its own (so tests
/// can run several workers in one process), plus plain counters for the live summary.
public final class WorkerMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    let factory: PrometheusMetricsFactory
    let eventsIn: CoreMetrics.Counter
    let tombstones: CoreMetrics.Counter
    let deliveryRetries: CoreMetrics.Counter
    /// Offset commits the coordinator refused (sent again on the next tick).
    let commitFailures: CoreMetrics.Counter
    private let uncommittedHandoverEvents: CoreMetrics.Counter
    /// Events whose timestamp is missing or not a plausible time (`weir_implausible_timestamps_total`):
    /// latency and drift windows leave their time out.
    let implausibleTimestamps: CoreMetrics.Counter
    public let implausibleTimestampTotal = Atomic<Int>(0)
    /// Monotonic nanoseconds of the poll loop's last turn (0: it has not turned yet).
    let lastTurnNanos = Atomic<UInt64>(0)
    /// When the oldest consumed, unanswered event was consumed (monotonic nanoseconds; 0: none),
    /// refreshed by the poll loop each second.
    let oldestUnansweredNanos = Atomic<UInt64>(0)
    private let pollLoopAge: CoreMetrics.Gauge
    private let oldestUnanswered: CoreMetrics.Gauge

    /// Seconds since the poll loop last turned (0 before its first turn).
    func pollLoopAgeSeconds(now: UInt64) -> Double {
        let last = lastTurnNanos.load(ordering: .relaxed)
        return last == 0 || now < last ? 0 : Double(now - last) / 1e9
    }

    /// Seconds the oldest consumed, unanswered event has waited (0 when none waits).
    func oldestUnansweredSeconds(now: UInt64) -> Double {
        let since = oldestUnansweredNanos.load(ordering: .relaxed)
        return since == 0 || now < since ? 0 : Double(now - since) / 1e9
    }
    /// Times the worker woke librdkafka's fetcher, stalled on its full prefetch queue (`Worker.wakeStalledFetcher`).
    let fetcherWakeups: CoreMetrics.Counter
    private let transactionsCommitted: CoreMetrics.Counter
    private let transactionsAborted: CoreMetrics.Counter
    /// Transactions aborted in exactly-once mode (their events were answered again).
    public let transactionAbortTotal = Atomic<Int>(0)
    public let transactionCommitTotal = Atomic<Int>(0)
    /// The most events consumed and not yet answered at once, read after each poll: what the
    /// `max-in-flight-events` bound held the worker to (it can pass the bound by one poll's events).
    public let inFlightPeak = Atomic<Int>(0)
    /// Turns of the poll loop: tests wait for the loop to have had its chances, not for time.
    public let pollTurns = Atomic<Int>(0)
    /// Events consumed by assignments that left this worker without their final commit (lost to the
    /// group, or their commit refused): the most that the next owners can answer a second time
    /// (`weir_uncommitted_handover_events_total`).
    public let uncommittedHandoverEventTotal = Atomic<Int>(0)

    /// Counts the events of assignments that left without their final commit.
    func uncommittedHandover(events: Int64) {
        let count = Int(clamping: events)
        uncommittedHandoverEvents.increment(by: Int64(count))
        uncommittedHandoverEventTotal.add(count, ordering: .relaxed)
    }

    /// Notes the in-flight count after a poll.
    func noteInFlight(_ count: Int) {
        if count > inFlightPeak.load(ordering: .relaxed) { inFlightPeak.store(count, ordering: .relaxed) }
    }
    let batchSize: Recorder
    /// `weir_event_latency_seconds`: recorded once per batch of delivery reports, without a lock per event.
    let eventLatency = BatchedHistogram(name: "weir_event_latency_seconds",
                                        boundsMicros: [1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 250_000, 500_000,
                                                       1_000_000, 2_500_000, 5_000_000, 10_000_000])
    let inFlight: CoreMetrics.Gauge
    let pausedPartitions: CoreMetrics.Gauge
    /// Framed inputs: 1 while the Schema Registry answers, 0 while a fetch keeps failing.
    let schemaRegistryAvailable: CoreMetrics.Gauge
    /// Writer schemas known (fetched, or known not to exist).
    let schemasKnown: CoreMetrics.Gauge
    /// Partitions paused because their next event waits for its writer schema.
    let schemaWaitingPartitions: CoreMetrics.Gauge
    /// Schema fetches that got no answer (down, slow, refused), each retried.
    let schemaRegistryErrors: CoreMetrics.Counter
    /// Per-prediction metrics by model, version and route, made when a model takes a route.
    private let routeTable = Mutex<[String: RouteMetrics]>([:])
    private let lagGauges: Mutex<[String: CoreMetrics.Gauge]>
    private let infoGauges: Mutex<[String: CoreMetrics.Gauge]>
    private let controlCounters: Mutex<[String: CoreMetrics.Counter]>
    let automaticRollbacks: CoreMetrics.Counter
    /// Control messages applied, rejected, and automatic rollbacks (for tests and summaries).
    public let controlAppliedTotal = Atomic<Int>(0)
    public let controlRejectedTotal = Atomic<Int>(0)
    public let automaticRollbackTotal = Atomic<Int>(0)
    /// Shadow records produced.
    public let shadowTotal = Atomic<Int>(0)
    private let driftGauges: Mutex<[String: (CoreMetrics.Gauge, CoreMetrics.Gauge)]>
    let driftWindows: CoreMetrics.Counter
    /// Drift windows closed and published.
    public let driftWindowTotal = Atomic<Int>(0)
    /// Poll-thread time spent on drift windows (adding rows, closing, encoding, publishing): what
    /// drift costs, measured inside the run that pays for it.
    public let driftNanosecondsTotal = Atomic<Int>(0)
    private let driftTime: CoreMetrics.FloatingPointCounter

    /// Totals for summaries and tests (the same numbers as the Prometheus counters).
    public let consumedTotal = Atomic<Int>(0)
    /// Times the worker woke librdkafka's stalled fetcher (`weir_fetcher_wakeups_total`).
    public let fetcherWakeupTotal = Atomic<Int>(0)
    public let predictionTotal = Atomic<Int>(0)
    public let deadLetterTotal = Atomic<Int>(0)
    public let tombstoneTotal = Atomic<Int>(0)
    /// Event-to-delivery latency in microseconds, for p50/p99 in the live summary.
    public let latency = LatencySketch()

    public init() {
        registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        let fine: [Duration] = [50, 100, 250, 500, 1000, 2500, 5000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000]
            .map { Duration.microseconds($0) }
        factory.durationHistogramBuckets = ["weir_inference_seconds": fine]
        factory.valueHistogramBuckets = ["weir_batch_size_events": [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096]]
        self.factory = factory
        eventsIn = Counter(label: "weir_events_consumed_total", factory: factory)
        tombstones = Counter(label: "weir_tombstones_total", factory: factory)
        deliveryRetries = Counter(label: "weir_delivery_retries_total", factory: factory)
        commitFailures = Counter(label: "weir_commit_failures_total", factory: factory)
        uncommittedHandoverEvents = Counter(label: "weir_uncommitted_handover_events_total", factory: factory)
        implausibleTimestamps = Counter(label: "weir_implausible_timestamps_total", factory: factory)
        pollLoopAge = CoreMetrics.Gauge(label: "weir_poll_loop_age_seconds", factory: factory)
        oldestUnanswered = CoreMetrics.Gauge(label: "weir_oldest_unanswered_seconds", factory: factory)
        fetcherWakeups = Counter(label: "weir_fetcher_wakeups_total", factory: factory)
        transactionsCommitted = Counter(label: "weir_transactions_total", dimensions: [("result", "committed")], factory: factory)
        transactionsAborted = Counter(label: "weir_transactions_total", dimensions: [("result", "aborted")], factory: factory)
        batchSize = Recorder(label: "weir_batch_size_events", factory: factory)
        inFlight = CoreMetrics.Gauge(label: "weir_events_in_flight", factory: factory)
        pausedPartitions = CoreMetrics.Gauge(label: "weir_paused_partitions", factory: factory)
        schemaRegistryAvailable = CoreMetrics.Gauge(label: "weir_schema_registry_available", factory: factory)
        schemasKnown = CoreMetrics.Gauge(label: "weir_schema_registry_schemas", factory: factory)
        schemaWaitingPartitions = CoreMetrics.Gauge(label: "weir_schema_waiting_partitions", factory: factory)
        schemaRegistryErrors = Counter(label: "weir_schema_registry_errors_total", factory: factory)
        lagGauges = Mutex([:])
        infoGauges = Mutex([:])
        controlCounters = Mutex([:])
        automaticRollbacks = Counter(label: "weir_automatic_rollbacks_total", factory: factory)
        driftGauges = Mutex([:])
        driftWindows = Counter(label: "weir_drift_windows_total", factory: factory)
        driftTime = FloatingPointCounter(label: "weir_drift_seconds_total", factory: factory)
    }

    /// Outcome figures per route and metric (`weir_outcome_accuracy{route="canary"}`, ...).
    private let outcomeGauges = Mutex<[String: CoreMetrics.Gauge]>([:])
    private let outcomeCounters = Mutex<[Int: CoreMetrics.Counter]>([:])
    /// Outcomes joined to their predictions, and feedback records that matched none.
    public let outcomeTotal = Atomic<Int>(0)
    public let unmatchedOutcomeTotal = Atomic<Int>(0)

    /// Sets `weir_outcome_<name>{route}` (accuracy, log_loss, auc, mae, rmse of the last window).
    func recordOutcome(_ name: String, route: String, value: Double) {
        guard value.isFinite else { return }
        let key = name + "\u{0}" + route
        let gauge = outcomeGauges.withLock { table in
            if let existing = table[key] { return existing }
            let made = CoreMetrics.Gauge(label: "weir_outcome_" + name, dimensions: [("route", route)], factory: factory)
            table[key] = made
            return made
        }
        gauge.record(value)
    }

    /// Counts `weir_outcomes_total{result}` (with `route` for joined and unknown-label outcomes).
    /// Counters are looked up by a small number: nothing is allocated per outcome.
    func countOutcome(_ result: OutcomeResult, route: Route? = nil) {
        let key = Int(result.rawValue) * 8 + Int(route?.rawValue ?? 7)
        let counter = outcomeCounters.withLock { table in
            if let existing = table[key] { return existing }
            let dimensions = [("result", result.name)] + (route.map { [("route", $0.name)] } ?? [])
            let made = Counter(label: "weir_outcomes_total", dimensions: dimensions, factory: factory)
            table[key] = made
            return made
        }
        counter.increment()
        if result == .joined { outcomeTotal.add(1, ordering: .relaxed) }
        if result == .unmatched { unmatchedOutcomeTotal.add(1, ordering: .relaxed) }
    }

    /// Predictions waiting for their outcomes (`weir_outcome_pending_predictions`).
    func recordPendingPredictions(_ count: Int) {
        let gauge = outcomeGauges.withLock { table in
            if let existing = table["pending"] { return existing }
            let made = CoreMetrics.Gauge(label: "weir_outcome_pending_predictions", factory: factory)
            table["pending"] = made
            return made
        }
        gauge.record(Double(count))
    }

    /// Adds poll-thread time spent on drift windows.
    func addDriftTime(nanoseconds: UInt64) {
        driftNanosecondsTotal.add(Int(nanoseconds), ordering: .relaxed)
        driftTime.increment(by: Double(nanoseconds) / 1e9)
    }

    /// Counts a dead letter of `code` answered on `route`.
    func deadLetter(code: DeadLetterCode, route: RouteMetrics) {
        route.deadLetter(code)
        deadLetterTotal.add(1, ordering: .relaxed)
    }

    /// The metrics of `model` `version` on `route` (made once, then shared).
    func route(model: String, version: String, route: Route) -> RouteMetrics {
        let key = "\(model)\u{0}\(version)\u{0}\(route.name)"
        return routeTable.withLock { table in
            if let existing = table[key] { return existing }
            let made = RouteMetrics(model: model, version: version, route: route, factory: factory)
            table[key] = made
            return made
        }
    }

    func setLag(topic: String, partition: Int32, lag: Int64) {
        let key = "\(topic)\u{0}\(partition)"
        let gauge = lagGauges.withLock { table in
            if let existing = table[key] { return existing }
            let made = CoreMetrics.Gauge(label: "weir_consumer_lag", dimensions: [("topic", topic), ("partition", String(partition))], factory: factory)
            table[key] = made
            return made
        }
        gauge.record(Double(lag))
    }

    /// Drops the lag gauge of a partition that left this worker (its new owner reports it).
    func removeLag(topic: String, partition: Int32) {
        let key = "\(topic)\u{0}\(partition)"
        lagGauges.withLock { $0.removeValue(forKey: key) }?.destroy()
    }

    /// Sets `weir_model_info` to 1 for the bundles serving now (by route) and 0 for earlier ones;
    /// `precision` is the bundle's manifest precision (`auto`, `int8`, `fp32`), `kernels` the CPU
    /// kernels it runs on (`avx512`, `avx2`, `portable`): together they say how its layers are planned.
    func setServing(name: String, _ routes: [(route: String, version: String, bundle: String, precision: String, kernels: String)]) {
        infoGauges.withLock { table in
            for gauge in table.values { gauge.record(0) }
            for entry in routes {
                let key = "\(entry.route)\u{0}\(entry.version)\u{0}\(entry.bundle)"
                let gauge = table[key] ?? CoreMetrics.Gauge(
                    label: "weir_model_info",
                    dimensions: [("model", name), ("version", entry.version), ("bundle", entry.bundle), ("route", entry.route),
                                 ("precision", entry.precision), ("kernels", entry.kernels)],
                    factory: factory)
                table[key] = gauge
                gauge.record(1)
            }
        }
    }

    /// Counts a control message by result (`applied`, `rejected`, `ignored`) and reason code.
    /// Counts an exactly-once transaction by outcome (`committed` or `aborted`).
    /// How a transaction ended.
    enum TransactionOutcome { case committed, aborted }

    func transactions(_ outcome: TransactionOutcome) {
        if outcome == .aborted {
            transactionsAborted.increment()
            transactionAbortTotal.add(1, ordering: .relaxed)
        } else {
            transactionsCommitted.increment()
            transactionCommitTotal.add(1, ordering: .relaxed)
        }
    }

    func controlMessage(result: String, reason: String) {
        let key = "\(result)\u{0}\(reason)"
        let counter = controlCounters.withLock { table in
            if let existing = table[key] { return existing }
            let made = Counter(label: "weir_control_messages_total", dimensions: [("result", result), ("reason", reason)], factory: factory)
            table[key] = made
            return made
        }
        counter.increment()
        if result == "applied" { controlAppliedTotal.add(1, ordering: .relaxed) }
        if result == "rejected" { controlRejectedTotal.add(1, ordering: .relaxed) }
    }

    /// Per-feature drift gauges of the last closed window, and a window counter.
    func recordDrift(_ window: WindowDrift) {
        driftWindows.increment()
        driftWindowTotal.add(1, ordering: .relaxed)
        let columns = window.features.map { ("feature", $0) } + window.predictions.map { ("prediction", $0) }
        for (kind, column) in columns {
            let gauges = driftGauges.withLock { table in
                if let existing = table[column.name] { return existing }
                let dimensions = [(kind, column.name)]
                let made = (CoreMetrics.Gauge(label: "weir_drift_psi", dimensions: dimensions, factory: factory),
                            CoreMetrics.Gauge(label: "weir_drift_flag", dimensions: dimensions, factory: factory))
                table[column.name] = made
                return made
            }
            gauges.0.record(column.psi)
            gauges.1.record(column.drift ? 1 : 0)
        }
    }

    /// The Prometheus text exposition of every metric; the liveness gauges are read at this moment.
    public func exposition() -> [UInt8] {
        let now = monotonicNanoseconds()
        pollLoopAge.record(pollLoopAgeSeconds(now: now))
        oldestUnanswered.record(oldestUnansweredSeconds(now: now))
        var text = registry.emitToBuffer()
        eventLatency.emit(into: &text)
        return text
    }

    /// The OpenMetrics text of every metric, with trace exemplars on `weir_inference_seconds`
    /// (`tracing otlp`: the newest sampled batch of each model, version and route).
    public func openMetricsExposition() -> [UInt8] {
        let routes = routeTable.withLock { Array($0.values) }
        let traced = routes.compactMap { route in route.tracedInference.withLock { $0 }.map { (labels: route.seriesLabels, exemplar: $0) } }
        return openMetricsText(exposition(), exemplars: traced.isEmpty ? [:] : ["weir_inference_seconds": traced])
    }
}

/// A Prometheus histogram of microsecond values that the poll thread records a batch at a time:
/// each value finds its bucket with no lock, and the batch's counts are added under one lock
/// (swift-prometheus's histogram takes its lock for every value). Rendered into the exposition in
/// the text format, in seconds.
final class BatchedHistogram: Sendable {
    private let name: String
    private let boundsMicros: [UInt64]
    private let boundTexts: [String]
    /// Per bucket (the last is above every bound), not cumulative; the sum in microseconds.
    private let state: Mutex<(counts: [UInt64], sumMicros: UInt64)>

    init(name: String, boundsMicros: [UInt64]) {
        self.name = name
        self.boundsMicros = boundsMicros
        boundTexts = boundsMicros.map { "\(Double($0) / 1e6)" }
        state = Mutex((counts: [UInt64](repeating: 0, count: boundsMicros.count + 1), sumMicros: 0))
    }

    /// Counts a batch of observations.
    func record(microseconds values: UnsafeBufferPointer<UInt64>) {
        guard !values.isEmpty else { return }
        let buckets = boundsMicros.count + 1
        withUnsafeTemporaryAllocation(of: UInt64.self, capacity: buckets) { local in
            local.initialize(repeating: 0)
            var sum: UInt64 = 0
            boundsMicros.withUnsafeBufferPointer { bounds in
                for value in values {
                    var bucket = 0
                    while bucket < bounds.count && value > bounds[bucket] { bucket &+= 1 }
                    local[bucket] &+= 1
                    sum &+= value
                }
            }
            state.withLock { state in
                for bucket in 0..<buckets { state.counts[bucket] &+= local[bucket] }
                state.sumMicros &+= sum
            }
        }
    }

    /// Appends the histogram in the Prometheus text format (cumulative buckets, `+Inf`, sum, count).
    func emit(into buffer: inout [UInt8]) {
        let (counts, sumMicros) = state.withLock { ($0.counts, $0.sumMicros) }
        var text = "# TYPE \(name) histogram\n"
        var cumulative: UInt64 = 0
        for (index, bound) in boundTexts.enumerated() {
            cumulative &+= counts[index]
            text += "\(name)_bucket{le=\"\(bound)\"} \(cumulative)\n"
        }
        cumulative &+= counts[boundTexts.count]
        text += "\(name)_bucket{le=\"+Inf\"} \(cumulative)\n\(name)_sum \(Double(sumMicros) / 1e6)\n\(name)_count \(cumulative)\n"
        buffer.append(contentsOf: text.utf8)
    }
}

/// A log-bucketed histogram of microsecond values with cheap recording and approximate quantiles
/// (within 1/16 of a power of two).
public final class LatencySketch: Sendable {
    private static let subBuckets = 16
    private let counts: Mutex<[Int]>

    public init() { counts = Mutex(Array(repeating: 0, count: 64 * Self.subBuckets)) }

    static func bucket(_ value: UInt64) -> Int {
        if value < UInt64(subBuckets) { return Int(value) }
        let exponent = 63 - value.leadingZeroBitCount
        let shift = exponent - 4
        let sub = Int((value >> UInt64(shift)) & 15)
        return (exponent - 3) * subBuckets + sub
    }

    static func lowerBound(_ bucket: Int) -> UInt64 {
        if bucket < subBuckets { return UInt64(bucket) }
        let exponent = bucket / subBuckets + 3
        let sub = UInt64(bucket % subBuckets)
        return (UInt64(16) + sub) << UInt64(exponent - 4)
    }

    /// Records many values under one lock.
    func record(_ values: UnsafeBufferPointer<UInt64>) {
        counts.withLock { counts in
            for value in values { counts[Self.bucket(value)] += 1 }
        }
    }

    /// Takes the counts recorded since the last call (for per-second summaries) or all (`reset` false).
    public func snapshot(reset: Bool) -> LatencySnapshot {
        counts.withLock { counts in
            let copy = counts
            if reset { for index in counts.indices { counts[index] = 0 } }
            return LatencySnapshot(counts: copy)
        }
    }
}

/// Counts by bucket, with quantiles.
public struct LatencySnapshot: Sendable {
    let counts: [Int]
    public var count: Int { counts.reduce(0, +) }

    /// The value below which `q` of the recorded values fall (bucket lower bound), in microseconds.
    public func quantile(_ q: Double) -> UInt64? {
        let total = count
        guard total > 0 else { return nil }
        let rank = Int((Double(total) * q).rounded(.up))
        var seen = 0
        for (bucket, count) in counts.enumerated() where count > 0 {
            seen += count
            if seen >= max(rank, 1) { return LatencySketch.lowerBound(bucket) }
        }
        return nil
    }
}

/// One serving model's per-prediction metrics on one route, labelled `model`, `version` and `route`
/// so a canary and the primary compare on one dashboard: `weir_predictions_total` (shadow answers:
/// `weir_shadow_predictions_total`), `weir_model_executions_total` (model runs: predictions over
/// executions is the average batch), `weir_inference_seconds` (one run) and
/// `weir_dead_letters_total{code}` (every code made at once, each 0 until it happens).
final class RouteMetrics: Sendable {
    let predictions: CoreMetrics.Counter
    let executions: CoreMetrics.Counter
    let inference: CoreMetrics.Timer
    private let deadLetters: [DeadLetterCode: CoreMetrics.Counter]
    /// The series' labels as the exposition writes them, and its newest traced inference run
    /// (`weir_inference_seconds`' exemplar in OpenMetrics).
    let seriesLabels: [String]
    let tracedInference = Mutex<TraceExemplar?>(nil)

    init(model: String, version: String, route: Route, factory: PrometheusMetricsFactory) {
        let labels = [("model", model), ("version", version), ("route", route.name)]
        seriesLabels = labels.map { "\($0.0)=\(jsonString($0.1))" }
        predictions = route == .shadow
            ? Counter(label: "weir_shadow_predictions_total", dimensions: [("model", model), ("version", version)], factory: factory)
            : Counter(label: "weir_predictions_total", dimensions: labels, factory: factory)
        executions = Counter(label: "weir_model_executions_total", dimensions: labels, factory: factory)
        inference = Timer(label: "weir_inference_seconds", dimensions: labels, factory: factory)
        deadLetters = Dictionary(uniqueKeysWithValues: DeadLetterCode.allCases.map { code in
            (code, Counter(label: "weir_dead_letters_total", dimensions: [("code", code.rawValue)] + labels, factory: factory))
        })
    }

    func deadLetter(_ code: DeadLetterCode) { deadLetters[code]!.increment() }
}
