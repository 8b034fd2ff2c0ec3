import Foundation
import Synchronization
import WeirCodec
import WeirControl
import WeirKafka

/// Why a worker stopped on its own: what no record can fix.
public struct WorkerError: Error, CustomStringConvertible, Sendable {
    /// What kind of thing stopped the worker, for callers that react by kind (never by text).
    public enum Kind: Sendable, Equatable {
        /// A setting or file the worker was given is unusable.
        case configuration
        /// Exactly-once: a newer producer with this worker's transactional id took over.
        case fenced
        /// The producer hit a fatal error and cannot go on.
        case producerFailed
        /// The broker refused an answer and nothing else can answer the event.
        case outputRefused
        /// Exactly-once: a transaction could not be begun, aborted or rewound.
        case transaction
        /// The control topic could not be read or written.
        case control
        /// Anything else.
        case other
    }

    public let kind: Kind
    public let description: String

    public init(_ description: String, kind: Kind = .other) {
        self.kind = kind
        self.description = description
    }
}

/// One Weir worker: consumes events, answers each with a prediction or a dead letter, and commits
/// only what was delivered. Everything Kafka-facing runs on the thread that calls `run()` (the poll
/// thread, `PollLoop`): polling, batching, inference, producing, delivery reports, commits,
/// pause/resume and rebalances, so librdkafka 2.0.2 never sees batch consume concurrently with any
/// of them. This type is what other threads hold: `stop()` and the read-only status properties.
public final class Worker: Sendable {
    public let settings: WorkerSettings
    /// The bundle the worker was started with (`--model`); the control topic may replace it.
    public let bundle: ModelBundle
    public let metrics: WorkerMetrics
    let log: WorkerLog
    private let shared: WorkerShared
    /// What `run` needs, built (and checked) by `init` and handed to the poll thread once.
    private let start: Mutex<LoopParts?>

    /// The parts `init` builds and `run` takes on the poll thread.
    struct LoopParts {
        let primary: ServingModel
        let control: ControlPlane
        let signal: EventSignal
    }

    /// Prepares a worker (clients are created by `run`). `log` receives one record per notable
    /// event, stamped with the worker id, model and version (and partition where there is one),
    /// including librdkafka's own lines for this worker's clients while `run` is running.
    public init(settings: WorkerSettings, bundle: ModelBundle, metrics: WorkerMetrics = WorkerMetrics(),
                log: @escaping @Sendable (LogRecord) -> Void = { _ in }) throws {
        guard settings.brokers != nil else {
            throw WorkerError("brokers: not set; the worker needs a bootstrap address", kind: .configuration)
        }
        self.settings = settings
        self.bundle = bundle
        self.metrics = metrics
        let log = WorkerLog(worker: settings.workerID, model: bundle.manifest.name, version: bundle.manifest.version, sink: log)
        self.log = log
        let signal = EventSignal()
        let primary = try ServingModel(bundle: bundle, ref: BundleRef(version: bundle.manifest.version, location: settings.model ?? bundle.directory.path,
                                                                      sha256: bundle.id),
                                       settings: settings, writerSchemas: WriterSchemas(),
                                       records: OutputRecords(format: settings.outputFormat), log: { log($0) })
        let control = try ControlPlane(settings: settings, base: primary, metrics: metrics, signal: signal, log: log)
        shared = WorkerShared(signal: signal)
        shared.recordServing(Routing(primary: primary), metrics: metrics, log: log)
        start = Mutex(LoopParts(primary: primary, control: control, signal: signal))
    }

    /// Ready: the model is loaded (always, once constructed) and the consumer owns partitions.
    public var isReady: Bool { shared.isRunning && shared.assignedCount > 0 }

    /// Why `/healthz` should fail, or nil while the worker is live: its poll loop turned within
    /// `health.max-poll-gap-ms`, and no consumed event has waited longer than
    /// `health.max-unanswered-age-ms` for its answer. Before the loop's first turn it is live.
    public func unhealthyReason() -> String? { unhealthyReason(now: monotonicNanoseconds()) }

    func unhealthyReason(now: UInt64) -> String? {
        let gap = metrics.pollLoopAgeSeconds(now: now)
        if gap * 1000 > Double(settings.healthMaxPollGapMs) {
            return "the poll loop has not turned for \(Int(gap)) s (health.max-poll-gap-ms \(settings.healthMaxPollGapMs))"
        }
        let waited = metrics.oldestUnansweredSeconds(now: now)
        if waited * 1000 > Double(settings.healthMaxUnansweredAgeMs) {
            return "an event consumed \(Int(waited)) s ago is still unanswered (health.max-unanswered-age-ms \(settings.healthMaxUnansweredAgeMs))"
        }
        return nil
    }

    /// Whether every consumed event is answered, delivered and its offset committed (benchmarks).
    public var committedEverything: Bool { shared.hasCommittedEverything }

    /// Whether `run` is in its loop.
    public var isRunning: Bool { shared.isRunning }

    /// The version answering on the primary route, and the candidate's (canary or shadow), if any.
    public var servingVersions: (primary: String, candidate: String?) { shared.servingVersions }

    #if DEBUG
    /// Tests only: makes librdkafka resume every owned partition while the worker still holds them
    /// paused, which librdkafka 2.0.2 does on its own after an incremental assign (docs/reliability.md).
    func resumeInsideLibrdkafkaForTesting() { shared.requestResume() }
    #endif

    /// Asks `run` to stop: finish the batch, flush, commit, leave the group. Safe from any thread.
    public func stop() { shared.requestStop() }

    /// Runs until `stop()` (returns normally) or a fatal error (throws). Call once, from one thread.
    public func run() throws {
        guard let parts = start.withLock({ $0.take() }) else {
            throw WorkerError("run: this worker has already run; create a new one", kind: .configuration)
        }
        Thread.current.name = "weir-poll"
        let route = KafkaLog.route(clientID: settings.workerID) { [log] line in log.kafka(line) }
        defer { withExtendedLifetime(route) {} }
        defer { shared.lifecycle(.stopped) }
        shared.lifecycle(.starting)
        let loop = try PollLoop(settings: settings, primary: parts.primary, control: parts.control, signal: parts.signal,
                                shared: shared, metrics: metrics, log: log)
        try loop.run()
    }
}

/// Where a worker is in its life. `idle` → `starting` (run called) → `running` (subscribed) →
/// `stopping` (stop asked, or a failure) → `stopped`; a start that fails goes from `starting`
/// straight to `stopped`.
enum Lifecycle: UInt8, AtomicRepresentable {
    case idle, starting, running, stopping, stopped

    /// Whether the worker may go from this state to `next`.
    func allows(_ next: Lifecycle) -> Bool {
        switch (self, next) {
        case (.idle, .starting), (.starting, .running), (.starting, .stopped), (.running, .stopping), (.stopping, .stopped):
            return true
        default:
            return false
        }
    }
}

/// What the poll thread shares with other threads: requests in (stop, test hooks) and status out
/// (lifecycle, assignment, serving versions). Atomics and a mutex: safe from any thread.
final class WorkerShared: Sendable {
    private let signal: EventSignal
    private let stopAsked = Atomic<Bool>(false)
    private let resumeAsked = Atomic<Bool>(false)
    private let state = Atomic<Lifecycle>(.idle)
    private let assigned = Atomic<Int>(0)
    private let committedAll = Atomic<Bool>(false)
    private let serving = Mutex<(primary: String, candidate: String?)>(("", nil))

    init(signal: EventSignal) { self.signal = signal }

    var stopRequested: Bool { stopAsked.load(ordering: .relaxed) }
    var isRunning: Bool { state.load(ordering: .relaxed) == .running }
    var assignedCount: Int { assigned.load(ordering: .relaxed) }
    var hasCommittedEverything: Bool { committedAll.load(ordering: .relaxed) }
    var servingVersions: (primary: String, candidate: String?) { serving.withLock { $0 } }

    func requestStop() {
        stopAsked.store(true, ordering: .relaxed)
        signal.raise()
    }

    func requestResume() {
        resumeAsked.store(true, ordering: .relaxed)
        signal.raise()
    }

    /// Whether a test asked for a resume behind the worker (cleared by reading).
    func takeResumeRequest() -> Bool { resumeAsked.exchange(false, ordering: .relaxed) }

    /// Moves to `next`; only the poll thread moves it, so load and store need no exchange.
    func lifecycle(_ next: Lifecycle) {
        let current = state.load(ordering: .relaxed)
        assert(current.allows(next), "worker lifecycle cannot go from \(current) to \(next)")
        state.store(next, ordering: .relaxed)
    }
    func assignedPartitions(_ count: Int) { assigned.store(count, ordering: .relaxed) }
    func committedEverything(_ value: Bool) { committedAll.store(value, ordering: .relaxed) }

    /// Publishes what serves: `weir_model_info` per route, the versions, and the log's version stamp.
    func recordServing(_ routing: Routing, metrics: WorkerMetrics, log: WorkerLog) {
        func entry(_ route: String, _ model: ServingModel) -> (String, String, String, String, String) {
            (route, model.version, model.ref.sha256, model.bundle.manifest.modelPrecision.rawValue, model.bundle.model.kernels.name)
        }
        var routes = [entry("primary", routing.primary)]
        if let candidate = routing.candidate, let mode = routing.mode { routes.append(entry(mode.rawValue, candidate)) }
        metrics.setServing(name: routing.primary.bundle.manifest.name, routes)
        let versions = (routing.primary.version, routing.candidate?.version)
        serving.withLock { $0 = versions }
        log.setServingVersion(routing.primary.version)
    }
}
