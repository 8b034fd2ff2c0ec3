import WeirCodec
import WeirControl
import WeirDrift
import WeirKafka
import WeirModel

/// Which model answers which event, decided per event when it is consumed.
struct Routing {
    /// The model answering every event the candidate does not take.
    var primary: ServingModel
    /// A canary or shadow candidate on trial.
    var candidate: ServingModel?
    var mode: RolloutMode?
    /// Canary keys are those whose bucket (0..<10000) is below this.
    var canaryThreshold = 0

    init(primary: ServingModel) { self.primary = primary }

    init(_ plan: ServingPlan) {
        primary = plan.primary
        candidate = plan.candidate
        mode = plan.candidate == nil ? nil : plan.mode
        canaryThreshold = Int(((plan.percent ?? 0) * 100).rounded())
    }
}

/// The open batch: decodes consumed events into the answering model's rows (routing each to the
/// primary or a canary, and to a shadow too), then runs the models and answers every event in
/// consumption order. Poll thread only.
final class Batcher {
    /// An event in the open batch: the consumed message is kept (zero-copy) until it is answered.
    struct PendingEvent {
        let message: RetainedMessage
        let track: PartitionTrack
        /// The delivery context of its answer (track and sequence in the ledger).
        let context: UInt
        let id: EventID?
        let receivedAt: UInt64
        /// Its timestamp when plausible (`EventTime`), else 0.
        let timestampMs: Int64
        /// The model answering it, and its row in that model's batch matrix.
        let route: Route
        let row: Int32
        /// Its row in the shadow candidate's matrix; -1 when there is no shadow (or it could not read it).
        let shadowRow: Int32
    }

    private(set) var routing: Routing
    @exclusivity(unchecked) private var pending: [PendingEvent] = []
    /// When the oldest pending event arrived (monotonic nanoseconds).
    @exclusivity(unchecked) private(set) var openedAt: UInt64 = 0
    private let maxEvents: Int
    private let maxDelayNanoseconds: UInt64
    private let ledger: OffsetLedger
    private let outputs: Outputs
    private let metrics: WorkerMetrics
    /// Traces batches (`tracing otlp`); nil when off, which costs one check per batch.
    let tracer: BatchTracer?
    private let modelKey: [UInt8]
    /// The last few event values the primary model decoded: a candidate's schema check and warm-up.
    private(set) var recentEvents: [[UInt8]] = []
    private var recentNext = 0

    /// With a feedback topic: remembers each answer for the outcome it may get.
    let outcomes: OutcomeTracker?

    init(primary: ServingModel, settings: WorkerSettings, ledger: OffsetLedger, outputs: Outputs, metrics: WorkerMetrics,
         gate: SchemaGate? = nil, outcomes: OutcomeTracker? = nil, tracer: BatchTracer? = nil) {
        routing = Routing(primary: primary)
        self.tracer = tracer
        self.gate = gate
        self.outcomes = outcomes
        maxEvents = settings.batchMaxEvents
        maxDelayNanoseconds = UInt64(settings.batchMaxDelayMs) * 1_000_000
        self.ledger = ledger
        self.outputs = outputs
        self.metrics = metrics
        modelKey = Array(primary.bundle.manifest.name.utf8)
        pending.reserveCapacity(maxEvents)
        labelRoutes()
    }

    /// Gives each serving model the metrics of the route it now answers on.
    private func labelRoutes() {
        func label(_ model: ServingModel, _ route: Route) {
            model.answers.routeMetrics = metrics.route(model: model.bundle.manifest.name, version: model.version, route: route)
        }
        label(routing.primary, .primary)
        if let candidate = routing.candidate { label(candidate, routing.mode == .shadow ? .shadow : .canary) }
    }

    var isEmpty: Bool { pending.isEmpty }
    var count: Int { pending.count }
    /// Room left before the batch is full.
    var room: Int { maxEvents - pending.count }
    /// When the open batch must close (nil when there is none).
    var deadline: UInt64? { pending.isEmpty ? nil : openedAt + maxDelayNanoseconds }

    /// Whether the open batch is full or its oldest event has waited the delay.
    func isDue(at now: UInt64) -> Bool {
        !pending.isEmpty && (pending.count >= maxEvents || now >= openedAt + maxDelayNanoseconds)
    }

    // MARK: Taking events

    /// Starts tracking each message in the ledger and decodes it into its model's rows; an event no
    /// model can read is answered by a dead letter at once, a tombstone by nothing (it is counted).
    func take(_ messages: [RetainedMessage], now: UInt64) {
        metrics.eventsIn.increment(by: Int64(messages.count))
        metrics.consumedTotal.add(messages.count, ordering: .relaxed)
        admit(messages, now: now)
    }

    /// Events that waited for their writer schema, in their order (counted when consumed).
    func takeReleased(_ messages: [RetainedMessage], now: UInt64) { admit(messages, now: now) }

    private func admit(_ messages: [RetainedMessage], now: UInt64) {
        let eventTime = EventTime(wallClockMs: wallClockMicroseconds() / 1000)
        for retained in messages {
            // Framed formats: an event whose schema is not known yet waits (not begun in the ledger).
            if let gate, gate.holds(retained) { continue }
            let message = retained.message
            let track = ledger.track(for: message)
            if let error = message.error {
                answerUnreadable(message, error: error, track: track, now: now)
                retained.release()
                continue
            }
            let timestampMs = eventTime.plausible(message.timestamp?.milliseconds)
            if timestampMs == 0 {
                metrics.implausibleTimestamps.increment()
                metrics.implausibleTimestampTotal.add(1, ordering: .relaxed)
            }
            let context = ledger.begin(track, offset: message.offset, timestampMs: timestampMs, receivedAt: now)
            if !aborted.isEmpty, let refusal = aborted.refusal(of: EventSource(partition: track.partition, offset: message.offset)) {
                outputs.sendDeadLetter(message, answers: routing.primary.answers, code: .outputRefused, reason: refusal, context: context)
                retained.release()
                continue
            }
            guard let value = message.value else {
                metrics.tombstones.increment()
                metrics.tombstoneTotal.add(1, ordering: .relaxed)
                _ = ledger.answer(context)
                retained.release()
                continue
            }
            if pending.isEmpty { openedAt = now }
            var route = Route.primary
            // Unowned: `routing` holds the models for the whole call.
            unowned(unsafe) var model = routing.primary
            if let candidate = routing.candidate, routing.mode == .canary, let key = message.key,
               CanaryRouting.bucket(key) < routing.canaryThreshold {
                route = .canary
                model = candidate
            }
            let row = model.count
            switch model.decoder.decode(value, into: model.rows + row * model.width) {
            case .success(let id):
                if model.drift != nil { model.noteDefaults(row: row) }
                model.count += 1
                pending.append(PendingEvent(message: retained, track: track, context: context, id: id, receivedAt: now,
                                            timestampMs: timestampMs, route: route, row: Int32(row), shadowRow: decodeForShadow(value)))
            case .failure(let failure):
                outputs.sendDeadLetter(message, answers: model.answers, code: DeadLetterCode(failure.code), reason: failure.message,
                                       context: context)
                retained.release()
            }
            if pending.count >= maxEvents { close() }
        }
    }

    /// Framed input formats: holds events whose writer schema is being fetched; nil for JSON.
    let gate: SchemaGate?

    /// Exactly-once: events whose answers keep aborting transactions (empty otherwise).
    let aborted = AbortedAnswers()

    /// Where the poll loop must seek before its next poll: past offsets librdkafka cannot read.
    private(set) var unreadableSkips: [TopicPartitionOffset] = []

    func clearUnreadableSkips() { unreadableSkips.removeAll() }

    /// librdkafka reports a batch it cannot read at the batch's first offset, and fetches it again
    /// and again. The stuck offset is the later of that and the partition's next unconsumed one (a
    /// seek into the batch is reported at its start again): it is answered by a `consume-error` dead
    /// letter, and the loop seeks one past it. A batch of n records takes n such steps; one per
    /// partition per poll, since further reports in the same poll are the same batch fetched again.
    private func answerUnreadable(_ message: KafkaMessage, error: KafkaErrorCode, track: PartitionTrack, now: UInt64) {
        let partition = track.partition
        guard !unreadableSkips.contains(where: { $0.topicPartition == partition }) else { return }
        let stuck = max(message.offset, track.consumedEnd ?? message.offset)
        let context = ledger.begin(track, offset: stuck, timestampMs: 0, receivedAt: now)
        outputs.sendConsumeError(at: EventSource(partition: partition, offset: stuck), answers: routing.primary.answers,
                                 reason: "the consumer cannot read the record at offset \(stuck): \(error.name): \(message.errorDescription)",
                                 context: context)
        unreadableSkips.append(TopicPartitionOffset(partition.topic, partition.partition, stuck + 1))
    }

    /// The event's row in the shadow candidate's matrix, or -1 (no shadow, or it cannot read it).
    @inline(__always)
    private func decodeForShadow(_ value: UnsafeRawBufferPointer) -> Int32 {
        guard routing.mode == .shadow, let shadow = routing.candidate else { return -1 }
        guard case .success = shadow.decoder.decode(value, into: shadow.rows + shadow.count * shadow.width) else {
            // The primary reads this event and the candidate cannot: a candidate failure.
            shadow.trialEvents += 1
            shadow.trialErrors += 1
            return -1
        }
        shadow.count += 1
        return Int32(shadow.count - 1)
    }

    // MARK: Answering

    /// One model's run over its rows of the batch.
    private struct RunResult {
        var run: ModelRun?
        var error: (any Error)?
    }

    /// `trace`: the sampled batch's ids, which the run's `weir_inference_seconds` exemplar names.
    private func runRows(of model: ServingModel, trace: TraceIDs?) -> RunResult {
        guard model.count > 0 else { return RunResult() }
        let started = monotonicNanoseconds()
        defer {
            let elapsed = monotonicNanoseconds() - started
            model.noteInference(nanoseconds: elapsed)
            model.answers.routeMetrics.executions.increment()
            model.answers.routeMetrics.inference.recordNanoseconds(Int64(clamping: elapsed))
            if let trace {
                let exemplar = TraceExemplar(traceID: trace.traceID, spanID: trace.spanID, value: Double(elapsed) / 1e9,
                                             timestamp: Double(wallClockMicroseconds()) / 1e6)
                model.answers.routeMetrics.tracedInference.withLock { $0 = exemplar }
            }
        }
        do { return RunResult(run: try model.run()) } catch { return RunResult(error: error) }
    }

    /// Runs the open batch through its models and sends one prediction (or model-error dead
    /// letter) per event, in consumption order; shadow records follow their primary answer.
    func close() {
        let count = pending.count
        guard count > 0 else { return }
        metrics.batchSize.record(count)
        let primaryModel = routing.primary, candidateModel = routing.candidate
        outputs.cloudEvents.refreshTime()
        // The sampler decides per batch (BatchTracer): an unsampled batch does nothing more for tracing.
        var trace = tracer.flatMap { tracer in
            tracer.begin(events: pending, partition: { $0.message.message.partition }, message: { $0.message.message },
                         firstArrival: pending[0].receivedAt, lastArrival: pending[count - 1].receivedAt)
        }
        outputs.batchTrace = trace
        let primaryResult = runRows(of: primaryModel, trace: trace?.ids)
        let candidateResult = candidateModel.map { runRows(of: $0, trace: trace?.ids) } ?? RunResult()
        trace?.startProducing()
        let finished = monotonicNanoseconds()
        rememberRecentEvents()
        var predicted = 0, predictedByCandidate = 0
        // Per event, nothing below copies a struct holding references (an event, a run result) or
        // takes a model out of an optional: each such copy costs reference-count traffic per event.
        let primaryError = primaryResult.error, candidateError = candidateResult.error
        let primaryDrift = primaryModel.drift
        let outcomes = self.outcomes
        let nowMs = outcomes == nil ? 0 : wallClockMicroseconds() / 1000
        withOutputs(primaryModel, primaryResult) { primaryOutputs in
            withOutputs(candidateModel, candidateResult) { candidateOutputs in
                let driftBatch = primaryOutputs.map {
                    DriftTap.Batch(features: primaryModel.rows, missing: primaryModel.missingFlags, outputs: $0)
                }
                pending.withUnsafeBufferPointer { events in
                    for index in events.indices {
                        let message = events[index].message.message
                        let context = events[index].context
                        let isPrimary = events[index].route == .primary
                        unowned(unsafe) let model = isPrimary ? primaryModel : candidateModel.unsafelyUnwrapped
                        model.trialEvents += 1
                        var rememberedSlot = -1
                        if let error = isPrimary ? primaryError : candidateError {
                            model.trialErrors += 1
                            outputs.sendDeadLetter(message, answers: model.answers, code: .modelError,
                                                   reason: "the model failed on this batch: \(error)", context: context)
                        } else if let problem = model.answers.encodePrediction(
                            row: Int(events[index].row), outputs: isPrimary ? primaryOutputs : candidateOutputs, message: message,
                            id: events[index].id, track: events[index].track,
                            latencyMicros: (finished - events[index].receivedAt) / 1000) {
                            model.trialErrors += 1
                            outputs.sendDeadLetter(message, answers: model.answers, code: .modelError, reason: problem, context: context)
                        } else {
                            var headers = outputs.cloudEvents.inputHeaders(of: message, kind: .prediction)
                            model.answers.appendPredictionHeaders(to: &headers, route: events[index].route)
                            outputs.cloudEvents.append(to: &headers, kind: .prediction, message: message)
                            trace?.stamp(&headers)
                            if let refusal = outputs.sendPrediction(model.answers.record, key: message.key, headers: headers, context: context) {
                                // A failed transaction's refusal is not the prediction's: the abort answers it again.
                                if !outputs.refusedForProducerState(refusal) {
                                    outputs.sendDeadLetter(message, answers: model.answers, code: .outputRefused,
                                                           reason: Outputs.refusedPredictionReason(topic: outputs.predictions.name,
                                                                                                   code: refusal.code, message: refusal.message),
                                                           context: context)
                                }
                            } else {
                                predicted += 1
                                if !isPrimary { predictedByCandidate += 1 }
                                if let outcomes, let answered = isPrimary ? primaryOutputs : candidateOutputs,
                                   let hash = outcomes.joinHash(id: events[index].id, message: message) {
                                    rememberedSlot = outcomes.remember(
                                        hash: hash, route: events[index].route,
                                        base: answered.values.baseAddress! + Int(events[index].row) * answered.width, width: answered.width,
                                        nowMs: nowMs)
                                }
                            }
                            if isPrimary, let primaryDrift, let driftBatch {
                                observe(events[index], row: events[index].row, drift: primaryDrift, batch: driftBatch)
                            }
                        }
                        if events[index].shadowRow >= 0, let shadow = candidateModel {
                            answerShadow(events[index], shadow, candidateResult, candidateOutputs, finished, rememberedSlot: rememberedSlot)
                        }
                        events[index].message.release()
                    }
                }
                if let primaryDrift, let driftBatch { timedDrift { primaryDrift.flush(driftBatch) } }
            }
        }
        primaryModel.answers.routeMetrics.predictions.increment(by: Int64(predicted - predictedByCandidate))
        if predictedByCandidate > 0 { candidateModel?.answers.routeMetrics.predictions.increment(by: Int64(predictedByCandidate)) }
        metrics.predictionTotal.add(predicted, ordering: .relaxed)
        trace?.end(predictions: predicted)
        outputs.batchTrace = nil
        pending.removeAll(keepingCapacity: true)
        primaryModel.count = 0
        candidateModel?.count = 0
    }

    /// Drops the open batch unanswered (an aborted transaction: its events are read again).
    func discard() {
        for event in pending { event.message.release() }
        pending.removeAll(keepingCapacity: true)
        routing.primary.count = 0
        routing.candidate?.count = 0
    }

    private func withOutputs(_ model: ServingModel?, _ result: RunResult, _ body: (AnswerWriter.Outputs?) -> Void) {
        if let model, let run = result.run { model.answers.withOutputs(of: run, body) } else { body(nil) }
    }

    /// The shadow candidate's answer to an event the primary answered; failures count against it.
    private func answerShadow(_ event: PendingEvent, _ shadow: ServingModel, _ result: RunResult,
                              _ modelOutputs: AnswerWriter.Outputs?, _ finished: UInt64, rememberedSlot: Int) {
        shadow.trialEvents += 1
        let message = event.message.message
        guard result.error == nil, outputs.shadow != nil, shadow.answers.encodePrediction(
            row: Int(event.shadowRow), outputs: modelOutputs, message: message, id: event.id, track: event.track,
            latencyMicros: (finished - event.receivedAt) / 1000) == nil else {
            shadow.trialErrors += 1
            return
        }
        var headers = outputs.cloudEvents.inputHeaders(of: message, kind: .shadow)
        shadow.answers.appendPredictionHeaders(to: &headers, route: .shadow)
        outputs.cloudEvents.append(to: &headers, kind: .shadow, message: message)
        outputs.sendShadow(shadow.answers.record, of: message, headers: headers, counter: shadow.answers.routeMetrics.predictions)
        if rememberedSlot >= 0, let outcomes, let modelOutputs {
            outcomes.rememberShadow(slot: rememberedSlot, base: modelOutputs.values.baseAddress! + Int(event.shadowRow) * modelOutputs.width,
                                    width: modelOutputs.width)
        }
    }

    /// Keeps copies of a few events per batch that the primary model read (a ring of 64).
    private func rememberRecentEvents() {
        let step = max(pending.count / 4, 1)
        for index in stride(from: 0, to: pending.count, by: step) where pending[index].route == .primary {
            guard let value = pending[index].message.message.value else { continue }
            let copy = Array(value)
            if recentEvents.count < 64 { recentEvents.append(copy) } else { recentEvents[recentNext] = copy }
            recentNext = (recentNext + 1) % 64
        }
    }

    // MARK: Drift

    private func observe(_ event: PendingEvent, row: Int32, drift: DriftTap, batch: DriftTap.Batch) {
        let message = event.message.message
        drift.observe(row: row, timestampMs: event.timestampMs == 0 ? nil : event.timestampMs, topic: event.track.partition.topic,
                      partition: message.partition, offset: message.offset, batch: batch) { result in
            metrics.recordDrift(result)
            outputs.sendDrift(drift.record, key: modelKey)
        }
    }

    private func timedDrift(_ body: () -> Void) {
        let started = monotonicNanoseconds()
        body()
        metrics.addDriftTime(nanoseconds: monotonicNanoseconds() - started)
    }

    /// Closes `model`'s open drift window and produces its record (keyed by model name). Drift
    /// records are not answers: their delivery does not hold back commits.
    func publishDrift(of model: ServingModel) {
        guard let drift = model.drift else { return }
        timedDrift {
            guard let result = drift.closeWindow() else { return }
            metrics.recordDrift(result)
            outputs.sendDrift(drift.record, key: modelKey)
        }
    }

    // MARK: Swaps

    /// Switches models between two batches (call with nothing pending): the old primary's drift
    /// window closes with its version, and every later event is answered by the plan's models.
    func apply(_ plan: ServingPlan) {
        precondition(pending.isEmpty, "a serving plan is applied between two batches")
        if plan.primary !== routing.primary { publishDrift(of: routing.primary) }
        routing = Routing(plan)
        labelRoutes()
    }
}

/// Which event timestamps Weir believes: milliseconds from 2000-01-01 up to an hour past the worker's
/// clock. Producers that stamp nanoseconds or seconds, the year 3000 or nothing at all get no time:
/// latency and drift windows leave such events' time out (they are still answered).
struct EventTime {
    static let earliestMs: Int64 = 946_684_800_000
    static let futureSkewMs: Int64 = 3_600_000
    let latestMs: Int64

    init(wallClockMs: Int64) {
        latestMs = wallClockMs > .max - Self.futureSkewMs ? .max : wallClockMs + Self.futureSkewMs
    }

    /// The timestamp when plausible, else 0.
    @inline(__always)
    func plausible(_ timestampMs: Int64?) -> Int64 {
        guard let timestampMs, timestampMs >= Self.earliestMs, timestampMs <= latestMs else { return 0 }
        return timestampMs
    }
}
