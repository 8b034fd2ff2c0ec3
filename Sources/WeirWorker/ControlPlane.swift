import Foundation
import Synchronization
import WeirCodec
import WeirControl
import WeirKafka
import WeirStore

/// What the worker serves: the primary model, an optional candidate on trial, and whether an
/// operator paused consumption. Applied by the worker between two batches.
struct ServingPlan {
    let primary: ServingModel
    let candidate: ServingModel?
    let mode: RolloutMode?
    let percent: Double?
    let paused: Bool
}

/// The worker's side of the control topic (docs/control.md). Runs on the poll thread, except
/// bundle loading, which runs on its own queue and hands finished models back through a mailbox.
/// Every worker reads the whole topic with its own consumer (no group), so all of them see every
/// message and replay the same history on start.
final class ControlPlane {
    private let settings: WorkerSettings
    /// The keys messages are checked with (public keys re-read when their file changes).
    private var keyring: ControlKeyring?
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
    private var queue: [VerifiedControl] = []
    private var loading: (message: VerifiedControl, next: RolloutState)?
    /// A load that failed for a reason waiting may fix (a store that did not answer): tried again
    /// at `due`, with backoff, until `bundle-store.retry-for-ms` after the first failure.
    private var retry: (message: VerifiedControl, next: RolloutState, attempt: Int, since: UInt64, due: UInt64, last: ControlRejection)?
    /// The highest sequence a checkpoint record holds for this model (published or read back).
    private var checkpointedSequence: Int64 = 0
    /// Keyed records to publish on the status topic: checkpoints and decisions.
    var statusRecords: [(key: [UInt8], value: [UInt8])] = []
    /// Follows the status topic for other workers' decisions (opened by `replay`).
    private var statusFollower: KafkaConsumer?
    /// Rejections not yet reported in a status record. Each rejected record gets its own status
    /// record while tokens last (10, one more each second); past that they are counted and
    /// reported together, so a flood of junk on the control topic is not a flood on the status topic.
    private var unreportedRejections = 0
    private var rejectionTokens = 10.0
    private var tokensRefilledAt: UInt64 = 0
    /// The manifests of the loaded bundles, for the download cache's eviction (read off the poll thread).
    private let loadedIdentities = IdentitySet()
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
        let loaded = loadedIdentities
        bundles = BundleLoader(settings: settings, modelName: modelName, writerSchemas: base.writerSchemas,
                               records: base.answers.records, log: log, store: BundleStore(settings: settings.bundleStoreSettings),
                               inUse: { loaded.current })
        state = RolloutState(active: base.ref)
        models = [base.ref.sha256: base]
        loadedIdentities.current = [base.ref.sha256]
        if settings.controlTopic != nil { keyring = try ControlKeyring(settings: settings) }
    }

    var plan: ServingPlan { makePlan(state) }

    private func makePlan(_ state: RolloutState) -> ServingPlan {
        ServingPlan(primary: models[state.active.sha256]!, candidate: state.candidate.flatMap { models[$0.bundle.sha256] },
                    mode: state.candidate?.mode, percent: state.candidate?.percent, paused: state.paused)
    }

    // MARK: Start: replay

    /// Reads the control topic to its end (and this model's checkpoint from the status topic),
    /// folds the verified messages for this model into the desired state in sequence order, and
    /// loads what it names. Records are checked as they stream in: junk is counted, never kept, and
    /// never fails a start. Runs before the worker consumes events (blocking is fine).
    func replay(brokers: String, properties: [String: String]) throws {
        guard let topic = settings.controlTopic, let keyring, case let intake = keyring.intake else { return }
        let accepted = (keyring.publicKeyIDs.isEmpty ? [] : ["Ed25519 keys \(keyring.publicKeyIDs.joined(separator: ", "))"])
            + (intake.verifier.hmacKey == nil ? [] : ["the HMAC key"])
        log("control: accepting messages signed with \(accepted.joined(separator: " and "))")
        var configuration = ConsumerConfiguration(bootstrapServers: brokers, groupID: "weir-control-\(settings.workerID)")
        configuration.clientID = settings.workerID
        configuration.properties = properties
        configuration.autoOffsetReset = .earliest
        var verified = [VerifiedControl]()
        var lastDecision: ControlDecision?
        if let statusTopic = settings.statusTopic {
            // Checkpoints and decisions; then it stays assigned, following new decisions.
            var statusConfiguration = configuration
            statusConfiguration.groupID = "weir-status-\(settings.workerID)"
            let follower = try KafkaConsumer(configuration: statusConfiguration, signal: signal, onError: { [log] error in
                log("kafka status follower: \(error)", level: error.isFatal ? .error : .warning)
            })
            statusFollower = follower
            try streamTopic(follower, topic: statusTopic, setting: "status-topic", required: false, idleTimeoutMs: 30_000) { record in
                if let checkpoint = ControlCheckpoint.message(in: record, model: modelName, intake: intake),
                   checkpoint.message.sequence > checkpointedSequence {
                    checkpointedSequence = checkpoint.message.sequence
                    verified.removeAll()
                    verified.append(checkpoint)
                } else if let decision = ControlDecision.parse(record, model: modelName) {
                    lastDecision = decision
                }
            }
        }
        let consumer = try KafkaConsumer(configuration: configuration, signal: signal, onError: { [log] error in
            log("kafka control consumer: \(error)", level: error.isFatal ? .error : .warning)
        })
        self.consumer = consumer
        var rejected = [ControlRejection.Code: Int]()
        let count = try streamTopic(consumer, topic: topic, setting: "control-topic", idleTimeoutMs: 30_000) { record in
            switch intake.check(record) {
            case .success(let checked): if checked.message.model == modelName { verified.append(checked) }
            case .failure(let rejection): rejected[rejection.code, default: 0] += 1
            }
        }
        // Sequence order (stable): a checkpoint of a message compacted away sits where it belongs,
        // and an older message republished after it is stale, as it would be while running.
        verified.sort { $0.message.sequence < $1.message.sequence }
        var history = [state]
        var vetted = [base.ref.sha256: base.version]
        var skipped = 0
        var lastApplied: VerifiedControl?
        for checked in verified {
            let message = checked.message
            guard case .success(let next) = state.applying(message) else {
                if checked != lastApplied { skipped += 1 }
                continue
            }
            if let problem = versionConflict(next.bundles, known: vetted)
                ?? next.bundles.lazy.filter({ vetted[$0.sha256] == nil }).compactMap({ [bundles] in bundles.vet($0) }).first {
                log("control replay: sequence \(message.sequence) (\(message.action.rawValue)) was not applied: \(problem.reason)")
                skipped += 1
                continue
            }
            for ref in next.bundles { vetted[ref.sha256] = ref.version }
            state = next
            history.append(next)
            lastApplied = checked
        }
        if let lastApplied { checkpoint(lastApplied) }
        // A decision the group made about the trial this history ends on: a restarted worker
        // does not try a failed candidate again.
        if let decision = lastDecision, let next = decided(decision, in: state) {
            log("control replay: \(decision.action.rawValue) of \(decision.trial.version) decided by \(decision.worker): \(decision.reason)")
            state = next
            history.append(next)
        }
        let junk = rejected.values.reduce(0, +)
        if junk > 0 {
            let codes = rejected.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.value) \($0.key.rawValue)" }.joined(separator: ", ")
            metrics.controlMessage(result: "rejected", reason: "replay")
            log("control replay: rejected \(junk) of \(count) records of '\(topic)' (\(codes))", level: .warning)
            outbox.append(StatusNote(state: "rejected", reason: "replay rejected \(junk) of \(count) control records (\(codes))", message: nil))
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
        log("control: replayed \(count) messages of '\(topic)' (\(skipped) not applied"
            + (checkpointedSequence > 0 ? ", checkpoint at sequence \(checkpointedSequence)" : "") + "); serving \(state.active.version)"
            + (state.candidate.map { ", \($0.mode.rawValue) \($0.bundle.version)" } ?? "") + (state.paused ? ", paused" : ""))
    }

    // MARK: Following

    /// Takes new control messages and finished loads; starts the next load. `recent` gives the
    /// last events the primary model decoded, for the candidate's schema check and warm-up.
    func poll(recent: () -> [[UInt8]]) {
        if let consumer, var keyring {
            let now = monotonicNanoseconds()
            if let change = keyring.refresh(now: now) { log(change.line, level: change.isProblem ? .warning : .info) }
            self.keyring = keyring
            consumer.poll(maxMessages: 100, timeoutMs: 0) { batch in
                for message in batch where message.error == nil { receive(message, intake: keyring.intake) }
            }
            if unreportedRejections > 0 && takeRejectionToken(now: now) { noteRejections() }
        }
        followDecisions()
        if let outcome = mailbox.take(),
           let (message, next) = loading {
            loading = nil
            switch outcome {
            case .success(let loaded):
                retry = nil
                for model in loaded { models[model.ref.sha256] = model }
                commit(next, message: message)
            case .failure(let rejection):
                retryOrReject(message, next, rejection)
            }
        }
        if let pending = retry, loading == nil {
            if !queue.isEmpty {
                // A newer message waits: this one gives up rather than hold the topic back.
                retry = nil
                reject(pending.message.message, ControlRejection(pending.last.code, pending.last.reason + " (gave up: a newer control message arrived)"))
            } else if monotonicNanoseconds() >= pending.due {
                load(pending.message, pending.next, recent: recent)
            }
        }
        while loading == nil && retry == nil && ready == nil && !queue.isEmpty {
            start(queue.removeFirst(), recent: recent)
        }
    }

    /// A failed load is retried with backoff (1 s doubling to 60 s) while waiting may fix it, the
    /// current model serving meanwhile and the status record saying why; otherwise it is rejected.
    private func retryOrReject(_ checked: VerifiedControl, _ next: RolloutState, _ rejection: ControlRejection) {
        let message = checked.message
        let now = monotonicNanoseconds()
        let previous = retry?.message == checked ? retry : nil
        let since = previous?.since ?? now
        let attempt = (previous?.attempt ?? 0) + 1
        let limit = UInt64(settings.bundleStoreRetryForMs) * 1_000_000
        guard rejection.retryable, queue.isEmpty, now &- since < limit else {
            retry = nil
            reject(message, rejection)
            return
        }
        let delaySeconds = min(60, 1 << min(attempt - 1, 6))
        retry = (checked, next, attempt, since, now + UInt64(delaySeconds) * 1_000_000_000, rejection)
        metrics.controlMessage(result: "retrying", reason: rejection.code.rawValue)
        log("control: sequence \(message.sequence): \(rejection); retrying in \(delaySeconds) s (attempt \(attempt + 1))", level: .warning,
            version: message.version)
        outbox.append(StatusNote(state: "loading", reason: "retrying in \(delaySeconds) s (attempt \(attempt + 1)): \(rejection)", message: message))
        loaderQueue.asyncAfter(deadline: .now() + .seconds(delaySeconds)) { [signal] in signal.raise() }
    }

    private func receive(_ record: KafkaMessage, intake: ControlIntake) {
        switch intake.check(record) {
        case .failure(let rejection):
            metrics.controlMessage(result: "rejected", reason: rejection.code.rawValue)
            if takeRejectionToken(now: monotonicNanoseconds()) {
                log("control: rejected a message: \(rejection.reason)", level: .warning,
                    topic: settings.controlTopic ?? "", partition: record.partition, offset: record.offset)
                outbox.append(StatusNote(state: "rejected", reason: "\(rejection.code.rawValue): \(rejection.reason) (offset \(record.offset))", message: nil))
            } else {
                unreportedRejections += 1
            }
        case .success(let checked):
            if checked.message.model != modelName {
                metrics.controlMessage(result: "ignored", reason: "other-model")
                return
            }
            queue.append(checked)
        }
    }

    /// One status record for the rejections counted since tokens ran out.
    private func noteRejections() {
        log("control: rejected \(unreportedRejections) more control records", level: .warning)
        outbox.append(StatusNote(state: "rejected", reason: "rejected \(unreportedRejections) more control records (see weir_control_messages_total)", message: nil))
        unreportedRejections = 0
    }

    /// Whether a rejection may have a status record of its own now (token bucket: 10, +1 a second).
    private func takeRejectionToken(now: UInt64) -> Bool {
        rejectionTokens = min(10, rejectionTokens + Double(now &- tokensRefilledAt) / 1e9)
        tokensRefilledAt = now
        guard rejectionTokens >= 1 else { return false }
        rejectionTokens -= 1
        return true
    }

    /// Publishes `applied` as this model's checkpoint unless one at least as new is known.
    private func checkpoint(_ applied: VerifiedControl) {
        guard applied.message.sequence > checkpointedSequence, settings.statusTopic != nil else { return }
        checkpointedSequence = applied.message.sequence
        statusRecords.append((ControlCheckpoint.key(model: modelName), ControlCheckpoint.record(applied, worker: settings.workerID)))
    }

    private func start(_ checked: VerifiedControl, recent: () -> [[UInt8]]) {
        let message = checked.message
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
        if next.bundles.allSatisfy({ models[$0.sha256] != nil }) {
            commit(next, message: checked)
            return
        }
        load(checked, next, recent: recent)
    }

    /// Starts loading the bundles `next` needs on the loader queue.
    private func load(_ checked: VerifiedControl, _ next: RolloutState, recent: () -> [[UInt8]]) {
        let message = checked.message
        let needed = next.bundles.filter { models[$0.sha256] == nil }
        loading = (checked, next)
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

    private func commit(_ next: RolloutState, message checked: VerifiedControl) {
        let message = checked.message
        checkpoint(checked)
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

    /// Decides about the bundle on trial (a health bound failed: `.health`; the outcome test:
    /// `.outcomes`): applies it here from the next batch and publishes it on the status topic,
    /// where every worker of the group applies it too and a restarted worker finds it.
    func decide(_ action: ControlAction, source: ControlDecision.Source, reason: String, evidence: [(String, Double)]) {
        guard let trial = state.trial else { return }
        let decision = ControlDecision(model: modelName, action: action, source: source, trial: trial, trialSince: state.trialSince,
                                       worker: settings.workerID, reason: reason, evidence: evidence)
        guard let next = decided(decision, in: state) else { return }
        metrics.controlMessage(result: "decided", reason: action.rawValue)
        if settings.statusTopic != nil { statusRecords.append((ControlDecision.key(model: modelName), decision.record())) }
        apply(decision, next)
    }

    /// The state after `decision`, when it is about the trial `state` runs (the same bundle, begun
    /// by the same deploy); a promotion only where this worker promotes on outcomes too.
    private func decided(_ decision: ControlDecision, in state: RolloutState) -> RolloutState? {
        guard decision.trialSince == state.trialSince, decision.trial.sha256 == state.trial?.sha256 else { return nil }
        switch decision.action {
        case .rollback: return state.rolledBackAutomatically()
        case .promote: return settings.promoteWhen == nil ? nil : state.promotedAutomatically()
        default: return nil
        }
    }

    private func apply(_ decision: ControlDecision, _ next: RolloutState) {
        state = next
        prune()
        if decision.action == .rollback {
            metrics.automaticRollbacks.increment()
            metrics.automaticRollbackTotal.add(1, ordering: .relaxed)
        }
        let by = decision.worker == settings.workerID ? "" : " (decided by \(decision.worker))"
        let text = switch decision.source {
        case .health: "automatic \(decision.action.rawValue) of \(decision.trial.version)\(by): \(decision.reason)"
        case .outcomes: "applied \(decision.action.rawValue) of \(decision.trial.version) (automatic\(by.isEmpty ? "" : ", " + by.dropFirst(2).dropLast())): \(decision.reason)"
        }
        ready = (makePlan(next), StatusNote(state: nil, reason: text, message: nil))
        log("control: \(text)", level: decision.action == .promote ? .info : .warning, version: next.active.version)
    }

    /// Applies other workers' decisions read from the status topic.
    private func followDecisions() {
        guard let statusFollower else { return }
        var decisions = [ControlDecision]()
        statusFollower.poll(maxMessages: 100, timeoutMs: 0) { [modelName] batch in
            for record in batch where record.error == nil {
                if let decision = ControlDecision.parse(record, model: modelName) { decisions.append(decision) }
            }
        }
        for decision in decisions where ready == nil {
            if let next = decided(decision, in: state) { apply(decision, next) }
        }
    }

    private func prune() {
        let keep = Set(state.bundles.map(\.sha256))
        models = models.filter { keep.contains($0.key) || $0.key == base.ref.sha256 }
        let identities = Set(models.keys)
        loadedIdentities.current = identities
    }

    // MARK: Status records

    /// A status record (docs/contracts.md) for the current state.
    func statusRecord(_ note: StatusNote) -> [UInt8] {
        encodeStatusRecord(note, state: state, worker: settings.workerID, model: modelName, into: writer)
    }
}
