import Foundation
import WeirCodec
import WeirControl
import WeirKafka
import WeirTracing
import WeirRegistry

/// The poll thread's loop: wakes on librdkafka's queue event, takes events into the batch, and at
/// one fixed point per turn applies what callbacks recorded (delivery reports, rebalances,
/// refused commits), closes due batches, swaps models, commits and adjusts pauses. The parts it
/// wires together each own one job: `OffsetLedger`, `Batcher`, `Outputs`, `PartitionFlow`, the
/// guarantee's `Committer`, `ControlPlane`. Confined to the thread that calls `run`.
final class PollLoop {
    private let settings: WorkerSettings
    private let shared: WorkerShared
    private let metrics: WorkerMetrics
    private let log: WorkerLog
    private let control: ControlPlane
    private let signal: EventSignal
    private let consumer: KafkaConsumer
    private let producer: KafkaProducer
    /// Exactly-once with shadow, drift or status topics: their records go through this plain
    /// producer, outside the transaction, so one that fails cannot abort it. nil otherwise.
    private let bestEffortProducer: KafkaProducer?
    private let inbox: DeliveryInbox
    private let ledger = OffsetLedger()
    private let outputs: Outputs
    private let batcher: Batcher
    private let flow: PartitionFlow
    private var committer: (any Committer)!
    /// Offsets whose asynchronous commit the coordinator refused, recorded inside `poll`.
    private var refusedCommits: [([TopicPartitionOffset], KafkaErrorCode)] = []
    @exclusivity(unchecked) private var polled: [RetainedMessage] = []
    @exclusivity(unchecked) private var latencyScratch: [UInt64] = []
    private var commitTimer: Periodic
    private var controlTimer = Periodic(milliseconds: 10)
    private var trialTimer = Periodic(milliseconds: 100)
    private var gaugeTimer = Periodic(milliseconds: 1_000)
    /// With a feedback topic: its reader and the outcome tracker.
    private let feedback: OutcomeFeed?
    private var failure: WorkerError?
    private let workerKey: [UInt8]
    /// The thread that made this loop: the only one that may run it.
    private let pollThread = PollThread()

    /// Opens the clients (nothing is consumed until `run`).
    init(settings: WorkerSettings, primary: ServingModel, control: ControlPlane, signal: EventSignal, shared: WorkerShared,
         metrics: WorkerMetrics, log: WorkerLog) throws {
        self.settings = settings
        self.shared = shared
        self.metrics = metrics
        self.log = log
        self.control = control
        self.signal = signal
        let clients = ClientSettings(settings)
        let inbox = DeliveryInbox(pollThread: pollThread)
        self.inbox = inbox
        var refused: (([TopicPartitionOffset], KafkaErrorCode) -> Void)?
        consumer = try KafkaConsumer(configuration: clients.consumer, signal: signal, rebalance: .deferred,
                                     onError: { [log] error in log("kafka consumer: \(error)", level: error.isFatal ? .error : .warning) },
                                     onCommitFailure: { offsets, error in refused?(offsets, error) })
        producer = try KafkaProducer(configuration: clients.producer, serving: .callerThread(wake: signal),
                                     onDelivery: { reports in inbox.record(reports) },
                                     onError: { [log] error in log("kafka producer: \(error)", level: error.isFatal ? .error : .warning) })
        if settings.guarantee == .exactlyOnce && (settings.driftTopic != nil || settings.statusTopic != nil || settings.shadowTopic != nil) {
            var plain = clients.producer
            plain.transactionalID = nil
            plain.clientID = settings.workerID + "-best-effort"
            bestEffortProducer = try KafkaProducer(configuration: plain, serving: .callerThread(wake: signal),
                                                   onDelivery: { reports in inbox.record(reports) },
                                                   onError: { [log] error in log("kafka producer (best effort): \(error)", level: .warning) })
        } else {
            bestEffortProducer = nil
        }
        outputs = try Outputs(producer: producer, bestEffort: bestEffortProducer, settings: settings, metrics: metrics, log: log)
        var gate: SchemaGate?
        if settings.inputFormat.isFramed, let registry = settings.registryConfiguration {
            let fetcher = SchemaFetcher(configuration: registry, schemas: primary.writerSchemas, format: settings.inputFormat, signal: signal,
                                        metrics: metrics, log: log)
            gate = SchemaGate(schemas: primary.writerSchemas, fetcher: fetcher, metrics: metrics)
        }
        feedback = try OutcomeFeed(settings: settings, manifest: primary.bundle.manifest, signal: signal, metrics: metrics, log: log)
        batcher = Batcher(primary: primary, settings: settings, ledger: ledger, outputs: outputs, metrics: metrics, gate: gate,
                          outcomes: feedback?.tracker,
                          tracer: settings.tracing == .otlp ? BatchTracer(try Self.startTracing(log: log), settings: settings) : nil)
        outputs.tracing = batcher.tracer?.tracing
        flow = PartitionFlow(consumer: consumer, ledger: ledger, settings: settings, metrics: metrics, log: log)
        commitTimer = Periodic(milliseconds: settings.commitIntervalMs)
        workerKey = Array(settings.workerID.utf8)
        polled.reserveCapacity(settings.batchMaxEvents)
        latencyScratch.reserveCapacity(1024)
        refused = { [unowned self] offsets, error in
            pollThread.check("a refused commit")
            refusedCommits.append((offsets, error))
        }
        committer = makeCommitter(settings, consumer: consumer, producer: producer, ledger: ledger, batcher: batcher,
                                  outputs: outputs, flow: flow, metrics: metrics, log: log,
                                  settle: { [unowned self] in applyDeliveries() })
    }

    /// Runs until `stop()` (returns normally) or something no record can fix (throws).
    /// The trace exporter (`tracing otlp`), its own reports written to the worker's log
    /// (`source: otel`); a configuration swift-otel refuses stops the start with one line.
    private static func startTracing(log: WorkerLog) throws -> WorkerTracing {
        do {
            return try WorkerTracing(serviceName: "weir") { diagnostic in
                log.external(diagnostic.message, level: diagnostic.isError ? .error : .warning, source: "otel")
            }
        } catch {
            throw WorkerError("tracing otlp: the exporter cannot start (\(error)); check the OTEL_* environment variables (docs/tracing.md)",
                              kind: .configuration)
        }
    }

    func run() throws {
        pollThread.check("the poll loop")
        try committer.start()
        if settings.controlTopic != nil {
            try control.replay(brokers: settings.brokers!, properties: settings.kafkaProperties(for: "consumer"))
            apply(control.plan)
        }
        if settings.outputFormat == .avro, let registry = settings.registryConfiguration {
            // Before anything is consumed: every answer needs its schema id.
            try batcher.routing.primary.answers.records.register(
                settings: settings, client: SchemaRegistryClient(registry), stopRequested: { [shared] in shared.stopRequested },
                wait: { [signal] in _ = signal.wait(timeoutMs: $0) }, log: log)
        }
        try feedback?.follow(batcher.routing)
        shared.lifecycle(.running)
        publishStatus(StatusNote(state: nil, reason: "started", message: nil))
        do { try consumer.subscribe(settings.input) } catch {
            failure = WorkerError("input: cannot subscribe to \(settings.input.joined(separator: ",")): \(error)", kind: .configuration)
        }
        log("worker \(settings.workerID): serving \(batcher.routing.primary.bundle.manifest.name) \(batcher.routing.primary.version) from \(settings.input.joined(separator: ",")) to \(settings.output)")
        while !shared.stopRequested && failure == nil {
            step()
        }
        shared.lifecycle(.stopping)
        shutDown()
        if let failure { throw failure }
    }

    // MARK: One turn

    private func step() {
        #if DEBUG
        if shared.takeResumeRequest() { flow.resumeInsideLibrdkafka() }
        #endif
        let now = monotonicNanoseconds()
        var timeoutMs = 100
        if let deadline = batcher.deadline {
            timeoutMs = deadline > now ? Int((deadline - now + 999_999) / 1_000_000) : 0
        }
        let consumed = consumer.poll(maxMessages: max(batcher.room, 1), timeoutMs: timeoutMs, retainingInto: &polled)
        if consumed > 0 {
            let takenAt = monotonicNanoseconds()
            // Before `take`, which may release messages (tombstones, dead letters).
            flow.noteConsumed(polled, at: takenAt)
            batcher.take(polled, now: takenAt)
            metrics.noteInFlight(ledger.inFlight)
        } else if consumer.pendingRebalance == nil {
            flow.wakeStalledFetcher(now: monotonicNanoseconds())
        }
        polled.removeAll(keepingCapacity: true)
        producer.serveDeliveryReports()
        bestEffortProducer?.serveDeliveryReports()
        settle(at: monotonicNanoseconds())
        metrics.pollTurns.add(1, ordering: .relaxed)
        metrics.lastTurnNanos.store(monotonicNanoseconds(), ordering: .relaxed)
    }

    /// The fixed point: everything recorded since the last turn is applied here, in this order,
    /// with no batch half answered and no callback running.
    private func settle(at now: UInt64) {
        pollThread.check("the loop's fixed point")
        skipUnreadable()
        if let gate = batcher.gate {
            let released = gate.released()
            if !released.isEmpty { batcher.takeReleased(released, now: now) }
            if gate.waitingChanged {
                gate.waitingChanged = false
                flow.holdForSchemas(gate.waitingPartitions)
            }
        }
        applyDeliveries()
        applyRefusedCommits()
        while let change = consumer.pendingRebalance { applyRebalance(change) }
        if batcher.isDue(at: now) { batcher.close() }
        outputs.resendRetries(now: now)
        if settings.controlTopic != nil && controlTimer.isDue(now) {
            control.poll(recent: { batcher.recentEvents })
        }
        if let feedback {
            let taken = feedback.take(at: now)
            publishOutcomes(taken.windows)
            if let decision = taken.decision {
                control.decide(decision.action, source: .outcomes, reason: decision.reason, evidence: decision.evidence)
            }
        }
        if trialTimer.isDue(now) { checkTrial() }
        if let ready = control.ready {
            // Between two batches: answer what is open with the old models, then swap.
            batcher.close()
            apply(ready.plan)
            control.didApply()
            publishStatus(ready.note)
        }
        if !control.outbox.isEmpty {
            for note in control.outbox { publishStatus(note) }
            control.outbox.removeAll()
        }
        if !control.statusRecords.isEmpty {
            for record in control.statusRecords { outputs.sendStatus(record.value, key: record.key) }
            control.statusRecords.removeAll()
        }
        flow.applyBackpressure()
        handOverOutputFaults()
        if commitTimer.isDue(now) || committer.wantsTurn {
            commitTimer.restart(now)
            committer.commit()
        }
        shared.committedEverything(ledger.inFlight == 0 && batcher.isEmpty && inbox.isEmpty && !ledger.hasUncommitted)
        if gaugeTimer.isDue(now) {
            flow.updateLagGauges()
            metrics.oldestUnansweredNanos.store(ledger.oldestUnansweredSince ?? 0, ordering: .relaxed)
        }
        noteFailures()
    }

    /// Moves partitions past records librdkafka cannot read (answered by `consume-error` dead
    /// letters in `Batcher.take`). A seek fails only for a partition no longer assigned here, whose
    /// next owner reads it afresh.
    private func skipUnreadable() {
        guard !batcher.unreadableSkips.isEmpty else { return }
        let skips = batcher.unreadableSkips
        batcher.clearUnreadableSkips()
        do { try consumer.seek(skips) } catch { log("cannot seek past an unreadable record: \(error)", level: .warning) }
    }

    /// Gives the committer what the outputs recorded since the last look: a producer-state
    /// refusal (a failed transaction) first, then a dead letter refused for good.
    private func handOverOutputFaults() {
        if let refusal = outputs.takeProducerRefusal() { committer.producerRefused(refusal) }
        if let fault = outputs.takeFault() { committer.sendRefused(fault) }
    }

    /// Stops the loop for what no record can fix: the committer's verdict, or a fatal producer.
    private func noteFailures() {
        guard failure == nil else { return }
        handOverOutputFaults()
        if let verdict = committer.failure {
            failure = verdict
        } else if let fatal = producer.fatalError() {
            failure = WorkerError("producer failed: \(fatal)", kind: fatal.code.isFencing ? .fenced : .producerFailed)
        }
    }

    /// Applies the recorded delivery reports: answered events leave the ledger (latency is
    /// recorded), failed answers go to the committer, failed best-effort records are logged.
    func applyDeliveries() {
        guard !inbox.isEmpty else { return }
        inbox.drain { delivered, runEnds, runTimes, failed, bestEffort in
            var index = 0
            for run in runEnds.indices {
                let wallMicros = runTimes[run]
                while index < runEnds[run] {
                    if let timestampMs = ledger.answer(delivered[index]), timestampMs > 0 {
                        recordLatency(wallMicros: wallMicros, timestampMs: timestampMs)
                    }
                    index += 1
                }
            }
            outputs.forgetAttempts(of: delivered)
            let now = monotonicNanoseconds()
            for failure in failed {
                committer.deliveryFailed(failure) { outputs.answerFailed($0, source: ledger.source(of: $0.context), now: now) }
            }
            for (topic, error) in bestEffort {
                log("a best-effort record was not delivered: \(error)", level: .warning, topic: topic)
            }
        }
        if !latencyScratch.isEmpty {
            latencyScratch.withUnsafeBufferPointer { values in
                metrics.latency.record(values)
                metrics.eventLatency.record(microseconds: values)
            }
            latencyScratch.removeAll(keepingCapacity: true)
        }
    }

    /// Event-to-delivery latency from the event's timestamp; timestamps that are not milliseconds
    /// of a plausible time (nanoseconds, the far future) are skipped rather than trapping.
    @inline(__always)
    private func recordLatency(wallMicros: Int64, timestampMs: Int64) {
        let (eventMicros, overflow) = timestampMs.multipliedReportingOverflow(by: 1000)
        guard !overflow, eventMicros <= wallMicros else { return }
        latencyScratch.append(UInt64(wallMicros - eventMicros))
    }

    private func applyRefusedCommits() {
        guard !refusedCommits.isEmpty else { return }
        for (offsets, error) in refusedCommits { committer.commitRefused(offsets, error) }
        refusedCommits.removeAll()
    }

    // MARK: Rebalances

    /// A new assignment, or partitions leaving: before they leave, the open batch is answered,
    /// their outputs delivered and their offsets committed; then librdkafka applies the change.
    private func applyRebalance(_ change: RebalanceEvent) {
        pollThread.check("a rebalance")
        switch change {
        case .assigned(let partitions):
            flow.assign(partitions)
            committer.assigned(partitions)
            shared.assignedPartitions(flow.assigned.count)
        case .revoked(let partitions, let lost):
            let leaving = Set(partitions)
            batcher.close()
            outputs.resendRetries(now: .max)
            let deadline = monotonicNanoseconds() + UInt64(settings.shutdownTimeoutMs) * 1_000_000
            applyDeliveries()
            while leaving.contains(where: { ledger.inFlight(of: $0) > 0 }) && monotonicNanoseconds() < deadline {
                do { try producer.flush(timeoutMs: 100) } catch {}
                applyDeliveries()
                handOverOutputFaults()
                outputs.resendRetries(now: .max)
            }
            let committed = committer.revoke(leaving, lost: lost, staying: flow.assigned.subtracting(leaving), deadline: deadline)
            if !committed { noteUncommittedHandover(leaving) }
            outputs.discardRetries { ledger.source(of: $0).map { leaving.contains($0.partition) } ?? true }
            ledger.remove(leaving)
            batcher.gate?.drop(partitions)
            flow.revoke(partitions, lost: lost)
            shared.assignedPartitions(flow.assigned.count)
        }
        consumer.completeRebalance()
    }

    /// Partitions leave this worker without their final commit: at most the events their
    /// assignments consumed are answered again by the next owner.
    private func noteUncommittedHandover(_ partitions: some Sequence<TopicPartition>) {
        metrics.uncommittedHandover(events: partitions.reduce(0) { $0 + ledger.consumedByAssignment($1) })
    }

    // MARK: Control

    private func apply(_ plan: ServingPlan) {
        batcher.apply(plan)
        flow.operatorPaused = plan.paused
        shared.recordServing(batcher.routing, metrics: metrics, log: log)
        if let feedback { publishOutcomes(feedback.servingChanged(batcher.routing)) }
    }

    /// Outcome windows go to the status topic, keyed like status records.
    private func publishOutcomes(_ windows: [[UInt8]]) {
        for window in windows { outputs.sendStatus(window, key: workerKey) }
    }

    /// Takes the model on trial out of service when its model-error share or p99 inference time
    /// passes the configured bound (after enough events to judge).
    private func checkTrial() {
        guard let trial = control.state.trial else { return }
        let routing = batcher.routing
        let model: ServingModel
        if let candidate = routing.candidate, candidate.ref == trial { model = candidate } else if routing.primary.ref == trial {
            model = routing.primary
        } else { return }
        guard model.trialEvents >= settings.rollbackMinEvents else { return }
        let rate = Double(model.trialErrors) / Double(model.trialEvents)
        if rate > settings.rollbackMaxErrorRate {
            control.decide(.rollback, source: .health,
                           reason: "model-error share \(String(format: "%.3f", rate)) over \(model.trialEvents) events is above control.rollback.max-error-rate \(settings.rollbackMaxErrorRate)",
                           evidence: [("events", Double(model.trialEvents)), ("model_errors", Double(model.trialErrors)), ("error_share", rate)])
            return
        }
        let p99 = model.inferenceP99Ms
        if model.inferenceSamples >= 20 && p99 > settings.rollbackMaxP99Ms {
            control.decide(.rollback, source: .health,
                           reason: "p99 batch inference time \(String(format: "%.2f", p99)) ms is above control.rollback.max-p99-ms \(settings.rollbackMaxP99Ms)",
                           evidence: [("events", Double(model.trialEvents)), ("p99_ms", p99)])
        }
    }

    /// Publishes a status record (keyed by worker id) when the worker has a status topic.
    private func publishStatus(_ note: StatusNote) {
        guard outputs.status != nil else { return }
        outputs.sendStatus(control.statusRecord(note), key: workerKey)
    }

    // MARK: Shutdown

    /// No new events from here on: pause everything, answer what is held, then commit. A commit
    /// refused while the group rebalances (or after this member was timed out of it) is retried
    /// with the consumer served in between, so the rebalance or rejoin can finish (answering any
    /// events it hands over before committing). One deadline bounds it all.
    private func shutDown() {
        let budget = settings.shutdownTimeoutMs
        let started = monotonicNanoseconds()
        // One deadline for the whole stop: answering, flushing and committing take up to three
        // quarters of shutdown-timeout-ms; leaving the group and closing the producers share what is left.
        let end = started + UInt64(budget) * 1_000_000
        let deadline = started + UInt64(budget * 3 / 4) * 1_000_000
        flow.pauseAll()
        if let feedback { publishOutcomes(feedback.closeWindows()) }
        // Events still waiting for a schema were never begun: they stay uncommitted, read again later.
        batcher.gate?.dropAll()
        while true {
            batcher.close()
            batcher.publishDrift(of: batcher.routing.primary)
            outputs.resendRetries(now: .max)
            // An older asynchronous commit that librdkafka is still retrying would land after the
            // final one and move the group back: let those finish first.
            while consumer.asyncCommitsInFlight > 0 && monotonicNanoseconds() < deadline {
                serveWhileStopping(timeoutMs: 20)
            }
            if !batcher.isEmpty { continue }
            let left = millisecondsLeft(until: deadline)
            do { try producer.flush(timeoutMs: max(left, 100)) } catch { log("flush at stop: \(error)", level: .warning) }
            applyDeliveries()
            let mayRetry = monotonicNanoseconds() < deadline
            let outcome = committer.commitAtStop(timeoutMs: max(millisecondsLeft(until: deadline), 100), mayRetry: mayRetry)
            if outcome == .gaveUp { noteUncommittedHandover(flow.assigned) }
            if outcome != .retry { break }
            serveWhileStopping(timeoutMs: 100)
            flow.pauseAll()
        }
        noteFailures()
        do {
            if try !consumer.close(timeoutMs: max(millisecondsLeft(until: end) / 2, 100)) {
                log("leaving the group took longer than shutdown-timeout-ms allows; the group reassigns the partitions after the session timeout", level: .warning)
            }
        } catch { log("leaving the group: \(error)", level: .warning) }
        feedback?.close()
        do { try producer.close(timeoutMs: max(millisecondsLeft(until: end) * 2 / 3, 100)) } catch {
            log("closing the producer: \(error)", level: .warning)
        }
        do { try bestEffortProducer?.close(timeoutMs: max(millisecondsLeft(until: end), 100)) } catch {
            log("closing the best-effort producer: \(error)", level: .warning)
        }
        batcher.tracer?.tracing.shutdown(timeoutSeconds: max(Double(millisecondsLeft(until: end)) / 1000, 0.5))
        log("worker \(settings.workerID) stopped: \(metrics.consumedTotal.load(ordering: .relaxed)) consumed, \(metrics.predictionTotal.load(ordering: .relaxed)) predicted, \(metrics.deadLetterTotal.load(ordering: .relaxed)) dead letters")
    }

    /// Serves the consumer at stop: events it still hands over are taken (and answered before the
    /// last commit), rebalances and reports applied.
    private func serveWhileStopping(timeoutMs: Int) {
        let got = consumer.poll(maxMessages: settings.batchMaxEvents, timeoutMs: timeoutMs, retainingInto: &polled)
        if got > 0 { batcher.take(polled, now: monotonicNanoseconds()) }
        skipUnreadable()
        polled.removeAll(keepingCapacity: true)
        producer.serveDeliveryReports()
        applyDeliveries()
        applyRefusedCommits()
        while let change = consumer.pendingRebalance { applyRebalance(change) }
    }
}

/// A timer read by the loop: due once `interval` has passed since it last fired.
struct Periodic {
    let interval: UInt64
    private var last: UInt64 = 0

    init(milliseconds: Int) { interval = UInt64(milliseconds) * 1_000_000 }

    /// Whether the interval has passed; if so, the timer restarts at `now`.
    mutating func isDue(_ now: UInt64) -> Bool {
        guard now &- last >= interval else { return false }
        last = now
        return true
    }

    mutating func restart(_ now: UInt64) { last = now }
}

@inline(__always)
func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}

@inline(__always)
func wallClockMicroseconds() -> Int64 {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return Int64(now.tv_sec) * 1_000_000 + Int64(now.tv_nsec) / 1000
}
