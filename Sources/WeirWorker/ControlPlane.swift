import Foundation
import Synchronization
import WeirCodec
import WeirControl
import WeirKafka

/// What the worker serves: the primary model, an optional candidate on trial, and whether an
/// operator paused consumption. Applied by the worker between two batches.
struct ServingPlan {
    let primary: ServingModel
    let candidate: ServingModel?
    let mode: RolloutMode?
    let percent: Double?
    let paused: Bool
}

/// A status record to publish (docs/contracts.md): the state word, why, and the message it answers.
struct StatusNote {
    /// `serving`, `loading`, `rejected` or `paused` (`serving`/`paused` follow the rollout state).
    var state: String?
    var reason: String
    var message: ControlMessage?
}

/// The worker's side of the control topic (docs/control.md). Runs on the poll thread, except
/// bundle loading, which runs on its own queue and hands finished models back through a mailbox.
/// Every worker reads the whole topic with its own consumer (no group), so all of them see every
/// message and replay the same history on start.
final class ControlPlane {
    private let settings: WorkerSettings
    private let key: [UInt8]
    private let modelName: String
    private let metrics: WorkerMetrics
    private let log: WorkerLog
    private let signal: EventSignal
    private let base: ServingModel
    private(set) var state: RolloutState
    /// Loaded bundles by manifest sha256: the ones `state` names (plus the base).
    private var models: [String: ServingModel]
    private var consumer: KafkaConsumer?
    /// Verified messages for this model, waiting for the one being loaded.
    private var queue: [ControlMessage] = []
    private var loading: (message: ControlMessage, next: RolloutState)?
    private let mailbox = LoadMailbox()
    private let loaderQueue = DispatchQueue(label: "weir-model-loader", qos: .utility)
    /// Loads and vets bundles; `Sendable`, so the loader queue needs nothing of this plane.
    private let bundles: BundleLoader
    /// A serving change to apply at the next batch boundary, and the status to publish after it.
    private(set) var ready: (plan: ServingPlan, note: StatusNote)?
    /// Status records to publish now.
    var outbox: [StatusNote] = []
    private let writer = JSONWriter(capacity: 1024)

    init(settings: WorkerSettings, base: ServingModel, metrics: WorkerMetrics, signal: EventSignal,
         log: WorkerLog) throws {
        self.settings = settings
        self.base = base
        self.metrics = metrics
        self.signal = signal
        self.log = log
        modelName = base.bundle.manifest.name
        bundles = BundleLoader(settings: settings, modelName: modelName, writerSchemas: base.writerSchemas,
                               records: base.answers.records, log: log)
        state = RolloutState(active: base.ref)
        models = [base.ref.sha256: base]
        if settings.controlTopic != nil {
            guard let path = settings.controlKeyFile else {
                throw WorkerError("control.key-file: required with control-topic; give the file holding the shared HMAC key")
            }
            do { key = try readControlKey(path: path) } catch { throw WorkerError("\(error)") }
        } else {
            key = []
        }
    }

    var plan: ServingPlan { makePlan(state) }

    private func makePlan(_ state: RolloutState) -> ServingPlan {
        ServingPlan(primary: models[state.active.sha256]!, candidate: state.candidate.flatMap { models[$0.bundle.sha256] },
                    mode: state.candidate?.mode, percent: state.candidate?.percent, paused: state.paused)
    }

    // MARK: Start: replay

    /// Reads the control topic to its end, folds the messages for this model into the desired
    /// state, and loads what it names. Runs before the worker consumes events (blocking is fine).
    func replay(brokers: String, properties: [String: String]) throws {
        guard let topic = settings.controlTopic else { return }
        var configuration = ConsumerConfiguration(bootstrapServers: brokers, groupID: "weir-control-\(settings.workerID)")
        configuration.clientID = settings.workerID
        configuration.properties = properties
        configuration.autoOffsetReset = .earliest
        let consumer = try KafkaConsumer(configuration: configuration, signal: signal, onError: { [log] error in
            log("kafka control consumer: \(error)", level: error.isFatal ? .error : .warning)
        })
        self.consumer = consumer
        let records = try readControlTopic(consumer, topic: topic, timeoutMs: 30_000)
        var history = [state]
        var vetted = [base.ref.sha256: base.version]
        var skipped = 0
        for record in records {
            guard case .success(let message) = verifiedControlMessage(record, key: key), message.model == modelName else { continue }
            guard case .success(let next) = state.applying(message) else { skipped += 1; continue }
            if let problem = versionConflict(next.bundles, known: vetted)
                ?? next.bundles.lazy.filter({ vetted[$0.sha256] == nil }).compactMap({ [bundles] in bundles.vet($0) }).first {
                log("control replay: sequence \(message.sequence) (\(message.action.rawValue)) was not applied: \(problem.reason)")
                skipped += 1
                continue
            }
            for ref in next.bundles { vetted[ref.sha256] = ref.version }
            state = next
            history.append(next)
        }
        // Load the newest state whose bundles all load; an older one if a bundle went bad since.
        let lastSequence = state.lastSequence
        for candidate in history.reversed() {
            switch bundles.loadAll(candidate.bundles.filter { models[$0.sha256] == nil }, recent: [], active: base.bundle.manifest) {
            case .failure(let rejection):
                log("control replay: cannot serve sequence \(candidate.lastSequence)'s bundles: \(rejection.reason)")
                continue
            case .success(let loaded):
                for model in loaded { models[model.ref.sha256] = model }
                state = candidate
                state.lastSequence = lastSequence
            }
            break
        }
        prune()
        log("control: replayed \(records.count) messages of '\(topic)' (\(skipped) not applied); serving \(state.active.version)"
            + (state.candidate.map { ", \($0.mode.rawValue) \($0.bundle.version)" } ?? "") + (state.paused ? ", paused" : ""))
    }

    // MARK: Following

    /// Takes new control messages and finished loads; starts the next load. `recent` gives the
    /// last events the primary model decoded, for the candidate's schema check and warm-up.
    func poll(recent: () -> [[UInt8]]) {
        if let consumer {
            var records = [ConsumedRecord]()
            consumer.poll(maxMessages: 100, timeoutMs: 0) { batch in
                for message in batch { records.append(message.record()) }
            }
            for record in records { receive(record) }
        }
        if let outcome = mailbox.take(),
           let (message, next) = loading {
            loading = nil
            switch outcome {
            case .success(let loaded):
                for model in loaded { models[model.ref.sha256] = model }
                commit(next, message: message)
            case .failure(let rejection):
                reject(message, rejection)
            }
        }
        while loading == nil && ready == nil && !queue.isEmpty {
            start(queue.removeFirst(), recent: recent)
        }
    }

    private func receive(_ record: ConsumedRecord) {
        switch verifiedControlMessage(record, key: key) {
        case .failure(let rejection):
            metrics.controlMessage(result: "rejected", reason: rejection.code.rawValue)
            log("control: rejected a message: \(rejection.reason)", level: .warning,
                topic: record.topic, partition: record.partition, offset: record.offset)
            outbox.append(StatusNote(state: "rejected", reason: "\(rejection.code.rawValue): \(rejection.reason) (offset \(record.offset))", message: nil))
        case .success(let message):
            if message.model != modelName {
                metrics.controlMessage(result: "ignored", reason: "other-model")
                return
            }
            queue.append(message)
        }
    }

    private func start(_ message: ControlMessage, recent: () -> [[UInt8]]) {
        let next: RolloutState
        switch state.applying(message) {
        case .failure(let rejection): reject(message, rejection); return
        case .success(let value): next = value
        }
        if next.candidate?.mode == .shadow && settings.shadowTopic == nil {
            reject(message, ControlRejection(.invalidTransition, "shadow-topic is not set on worker \(settings.workerID)"))
            return
        }
        if let conflict = versionConflict(next.bundles, known: models.mapValues(\.version)) {
            reject(message, conflict)
            return
        }
        let needed = next.bundles.filter { models[$0.sha256] == nil }
        if needed.isEmpty {
            commit(next, message: message)
            return
        }
        loading = (message, next)
        outbox.append(StatusNote(state: "loading", reason: "loading \(needed.map(\.version).joined(separator: ", ")) for \(message.action.rawValue) (sequence \(message.sequence))", message: message))
        log("control: loading \(needed.map { "\($0.version) from \($0.location)" }.joined(separator: ", ")) for sequence \(message.sequence)")
        let events = recent()
        let active = models[state.active.sha256]!.bundle.manifest
        loaderQueue.async { [bundles, mailbox, signal] in
            let outcome = bundles.loadAll(needed, recent: events, active: active)
            mailbox.put(outcome)
            signal.raise()
        }
    }

    /// A bundle already known (loaded, or vetted on replay) is identified by its manifest's sha256:
    /// a message naming that sha256 must agree on its version.
    private func versionConflict(_ refs: [BundleRef], known: [String: String]) -> ControlRejection? {
        for ref in refs {
            if let version = known[ref.sha256], version != ref.version {
                return ControlRejection(.bundleHash, "sha256 \(ref.sha256) is the manifest of \(version), not \(ref.version)")
            }
        }
        return nil
    }

    private func commit(_ next: RolloutState, message: ControlMessage) {
        state = next
        prune()
        metrics.controlMessage(result: "applied", reason: message.action.rawValue)
        // A deploy starts a trial afresh; other actions (pause, resume...) keep its counts.
        if message.action == .deploy, let trial = next.trial { models[trial.sha256]?.resetTrial() }
        let plan = makePlan(next)
        ready = (plan, StatusNote(state: nil, reason: "applied \(message.action.rawValue) (sequence \(message.sequence))" + (message.reason.map { ": " + $0 } ?? ""),
                                  message: message))
        log("control: applied \(message.action.rawValue) sequence \(message.sequence): serving \(next.active.version)"
            + (next.candidate.map { ", \($0.mode.rawValue) \($0.bundle.version)" } ?? "") + (next.paused ? ", paused" : ""))
    }

    private func reject(_ message: ControlMessage, _ rejection: ControlRejection) {
        metrics.controlMessage(result: "rejected", reason: rejection.code.rawValue)
        log("control: rejected \(message.action.rawValue) sequence \(message.sequence): \(rejection)", level: .warning,
            version: message.version)
        outbox.append(StatusNote(state: "rejected", reason: rejection.description, message: message))
    }

    /// The worker applied `ready`.
    func didApply() { ready = nil }

    /// Takes the trial bundle out of service (automatic rollback): the primary (or the previous
    /// version after an unpromoted replace) answers alone from the next batch.
    func rollBackAutomatically(reason: String) {
        guard let next = state.rolledBackAutomatically() else { return }
        let leaving = state.trial?.version ?? "?"
        state = next
        prune()
        metrics.automaticRollbacks.increment()
        metrics.automaticRollbackTotal.add(1, ordering: .relaxed)
        ready = (makePlan(next), StatusNote(state: nil, reason: "automatic rollback of \(leaving): \(reason)", message: nil))
        log("control: automatic rollback of \(leaving): \(reason)", level: .warning, version: state.active.version)
    }

    /// Acts on the outcome test's decision about the candidate: writes the signed message every
    /// worker follows (so the fleet moves together and a replay keeps it); it applies when read
    /// back. (A candidate only exists through the control topic.)
    func decideAutomatically(_ action: ControlAction, reason: String) {
        guard let candidate = state.candidate, let topic = settings.controlTopic, let brokers = settings.brokers else { return }
        metrics.controlMessage(result: "decided", reason: action.rawValue)
        log("control: \(reason); writing a \(action.rawValue) of \(candidate.bundle.version) to \(topic)",
            level: action == .promote ? .info : .warning, version: state.active.version)
        let message = ControlMessage(action: action, model: modelName, version: candidate.bundle.version, bundle: candidate.bundle.location,
                                     sha256: candidate.bundle.sha256, sequence: state.lastSequence + 1, issuedAt: rfc3339Now(),
                                     reason: reason)
        outbox.append(StatusNote(state: nil, reason: "requested \(action.rawValue) of \(candidate.bundle.version) on \(topic): \(reason)", message: nil))
        let properties = settings.kafkaProperties(for: "producer")
        loaderQueue.async { [log, key] in
            let client = ControlClient(brokers: brokers, topic: topic, key: key, properties: properties)
            do { try client.send(message) } catch {
                log("control: could not write the \(action.rawValue) decided by the outcome test to \(topic): \(error)", level: .warning)
            }
        }
    }

    private func prune() {
        let keep = Set(state.bundles.map(\.sha256))
        models = models.filter { keep.contains($0.key) || $0.key == base.ref.sha256 }
    }

    // MARK: Status records

    /// A status record (docs/contracts.md) for the current state.
    func statusRecord(_ note: StatusNote) -> [UInt8] {
        writer.reset()
        writer.raw("{\"worker\":")
        writer.string(settings.workerID)
        writer.raw(",\"model\":")
        writer.string(modelName)
        writer.raw(",\"active\":{\"version\":")
        writer.string(state.active.version)
        writer.raw(",\"sha256\":")
        writer.string(state.active.sha256)
        writer.raw("},\"candidate\":")
        if let candidate = state.candidate {
            writer.raw("{\"version\":")
            writer.string(candidate.bundle.version)
            writer.raw(",\"sha256\":")
            writer.string(candidate.bundle.sha256)
            writer.raw(",\"mode\":")
            writer.string(candidate.mode.rawValue)
            writer.raw(",\"percent\":")
            if let percent = candidate.percent { writer.double(percent) } else { writer.raw("null") }
            writer.raw(UInt8(ascii: "}"))
        } else {
            writer.raw("null")
        }
        writer.raw(",\"previous\":")
        if let previous = state.previous { writer.string(previous.version) } else { writer.raw("null") }
        writer.raw(",\"last_sequence\":")
        writer.integer(state.lastSequence)
        writer.raw(",\"state\":")
        writer.string(note.state ?? (state.paused ? "paused" : "serving"))
        writer.raw(",\"reason\":")
        writer.string(note.reason)
        writer.raw(",\"message\":")
        if let message = note.message {
            writer.raw("{\"action\":")
            writer.string(message.action.rawValue)
            writer.raw(",\"sequence\":")
            writer.integer(message.sequence)
            writer.raw(UInt8(ascii: "}"))
        } else {
            writer.raw("null")
        }
        writer.raw(",\"ts\":")
        writer.string(rfc3339Now())
        writer.raw(UInt8(ascii: "}"))
        return writer.array
    }
}

/// The current UTC time as RFC 3339 with milliseconds.
func rfc3339Now() -> String {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    var parts = tm()
    var seconds = now.tv_sec
    gmtime_r(&seconds, &parts)
    func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
    let millis = Int(now.tv_nsec) / 1_000_000
    let fraction = millis < 10 ? "00\(millis)" : millis < 100 ? "0\(millis)" : "\(millis)"
    return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)).\(fraction)Z"
}

/// Hands one load's outcome from the loader queue to the poll thread. The models inside are not
/// `Sendable`: they cross over whole (`sending`), and only the poll thread touches them after.
/// Unchecked: `outcome` is read and written only while `lock` is held.
final class LoadMailbox: @unchecked Sendable {
    private let lock = Mutex(())
    private var outcome: Result<[ServingModel], ControlRejection>?

    func put(_ value: sending Result<[ServingModel], ControlRejection>) {
        lock.withLock { _ in outcome = value }
    }

    func take() -> sending Result<[ServingModel], ControlRejection>? {
        lock.withLock { _ in
            defer { outcome = nil }
            return outcome
        }
    }
}
