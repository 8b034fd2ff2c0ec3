import CoreMetrics
import WeirCodec
import Foundation
import Tracing
import WeirKafka
import WeirTracing

/// Where an answered event came from: named in dead letters and in the line a worker stops with.
struct EventSource: CustomStringConvertible, Hashable {
    let partition: TopicPartition
    let offset: Int64
    var description: String { "\(partition.topic)[\(partition.partition)] offset \(offset)" }
}

/// A dead letter refused for good, even at its smallest: nothing can answer the event. Recorded for
/// the loop's fixed point, where the committer stops the worker with `description`.
struct SendFault {
    let topic: String
    let error: KafkaError
    /// The event left without an answer, when known.
    let source: EventSource?

    /// The one line a worker stops with: topic, partition, offset and cause.
    var description: String {
        let event = source.map { " the answer to \($0)" } ?? " a record"
        return "the dead-letter topic '\(topic)' refused\(event) for good (\(error.code.name): \(error.message)); no record can answer it"
    }
}

/// Everything the worker writes: predictions, dead letters, shadow, drift and status records,
/// and answers sent again after a failed delivery. The topic handles, the retry and refusal rules
/// and the best-effort policy live here; what a fault means lives in the committer.
///
/// Refusals (docs/reliability.md): a failed answer whose refusal may pass is sent again after a
/// backoff (100 ms, doubling to 5 s), at most `output.max-retries` times. Past that, or at once
/// when the refusal is for good, a prediction is answered by an `output-refused` dead letter
/// instead, and a dead letter refused as too large is sent smaller: without its value, then
/// without the headers copied from the input, then without its key, each step named in a header.
/// A dead letter refused with nothing left to drop is a `deadLetterRefused` fault.
final class Outputs {
    let producer: KafkaProducer
    /// Writes shadow, drift and status records: `producer`, or a plain one beside a transactional
    /// `producer` so a best-effort record cannot abort the transaction.
    let bestEffortProducer: KafkaProducer
    let predictions: ProducerTopic
    let deadLetters: ProducerTopic
    let drift: ProducerTopic?
    let status: ProducerTopic?
    let shadow: ProducerTopic?
    private let metrics: WorkerMetrics
    private let log: WorkerLog
    private let maxRetries: Int
    /// The headers policy and each answer's own CloudEvents headers.
    let cloudEvents: CloudEventHeaders
    /// Traces answers (`tracing otlp`): a dead letter gets a span of its own, linked to its input's.
    var tracing: WorkerTracing?
    /// The sampled batch being answered, if any: its dead letters' spans join its trace, and log
    /// lines written meanwhile name it.
    var batchTrace: BatchTrace?
    /// A failed answer waiting to be sent again.
    private struct Retry {
        var record: FailedDelivery
        let source: EventSource
        let dueAt: UInt64
    }
    private var retries: [Retry] = []
    /// Tries so far of each answer being retried, by delivery context; an entry leaves when its
    /// answer is delivered (`forgetAttempts`), so the map is empty while nothing fails.
    private var attempts: [UInt: Int] = [:]
    /// The first fault since the loop last looked.
    private(set) var fault: SendFault?
    /// The first answer since the loop last looked that the producer refused for its own state
    /// (a failed transaction): no dead letter answers it, the committer decides.
    private(set) var producerRefusal: KafkaError?

    /// On a dead letter sent without its value (too large for the producer or the broker): the
    /// value's size in bytes. The value itself stays in the input topic at the source offset.
    static let valueOmittedHeader = "weir-value-omitted"
    /// On a dead letter still too large without its value: how many input headers were left out.
    static let headersOmittedHeader = "weir-headers-omitted"
    /// ...and then without them: the key's size in bytes.
    static let keyOmittedHeader = "weir-key-omitted"

    init(producer: KafkaProducer, bestEffort: KafkaProducer? = nil, settings: WorkerSettings, metrics: WorkerMetrics,
         log: WorkerLog) throws(KafkaError) {
        self.producer = producer
        let bestEffortProducer = bestEffort ?? producer
        self.bestEffortProducer = bestEffortProducer
        self.metrics = metrics
        self.log = log
        maxRetries = settings.outputMaxRetries
        cloudEvents = CloudEventHeaders(policy: settings.outputHeaders, worker: settings.workerID, format: settings.outputFormat,
                                        enabled: settings.outputCloudEvents)
        predictions = try producer.topic(settings.output)
        deadLetters = try producer.topic(settings.dlq)
        drift = try settings.driftTopic.map { name throws(KafkaError) in try bestEffortProducer.topic(name) }
        status = try settings.statusTopic.map { name throws(KafkaError) in try bestEffortProducer.topic(name) }
        shadow = try settings.shadowTopic.map { name throws(KafkaError) in try bestEffortProducer.topic(name) }
    }

    /// Hands the recorded fault to the caller and forgets it.
    func takeFault() -> SendFault? {
        defer { fault = nil }
        return fault
    }

    /// Hands the recorded producer-state refusal to the caller and forgets it.
    func takeProducerRefusal() -> KafkaError? {
        defer { producerRefusal = nil }
        return producerRefusal
    }

    /// Records `error` when it refuses for the producer's state rather than the record's; such an
    /// answer is not dead-lettered (the committer aborts the transaction holding it).
    @inline(__always)
    func refusedForProducerState(_ error: KafkaError) -> Bool {
        guard error.code.refusesForProducerState else { return false }
        if producerRefusal == nil { producerRefusal = error }
        return true
    }

    private func recordRefusedDeadLetter(_ topic: String, _ error: KafkaError, source: EventSource?) {
        fault = SendFault(topic: topic, error: error, source: source)
    }

    // MARK: Answers

    /// Sends the prediction record `value` for the event of `context`; returns the producer's refusal
    /// (the caller answers the event with an `output-refused` dead letter instead).
    @inline(__always)
    func sendPrediction(_ value: UnsafeRawBufferPointer, key: UnsafeRawBufferPointer?, headers: consuming OutgoingHeaders,
                        context: UInt) -> KafkaError? {
        do {
            try producer.send(to: predictions, key: key, value: value, headers: headers, context: context)
            return nil
        } catch {
            return error
        }
    }

    /// Sends `message` to the dead-letter topic with the error headers (docs/contracts.md). Too
    /// large for the producer, it goes smaller (`smaller(_:)`) rather than not at all.
    func sendDeadLetter(_ message: KafkaMessage, answers: AnswerWriter, code: DeadLetterCode, reason: String, context: UInt) {
        var headers = cloudEvents.inputHeaders(of: message, kind: .deadLetter)
        answers.appendDeadLetterHeaders(to: &headers, code: code, reason: reason, message: message)
        cloudEvents.refreshTime()
        cloudEvents.append(to: &headers, kind: .deadLetter, message: message)
        if let tracing { traceDeadLetter(tracing, message: message, code: code, headers: &headers) }
        metrics.deadLetter(code: code, route: answers.routeMetrics)
        let value = message.value ?? UnsafeRawBufferPointer(start: nil, count: 0)
        let source = EventSource(partition: TopicPartition(message.topic, message.partition), offset: message.offset)
        do {
            try producer.send(to: deadLetters, key: message.key, value: value, headers: headers, context: context)
        } catch where error.code.isRecordTooLarge {
            // The slow path: a copy that can be made smaller step by step.
            var list = cloudEvents.inputHeaders(message.headers.map { (name: $0.name, value: $0.value.map { Array($0) }) }, kind: .deadLetter)
            list += answers.deadLetterHeaderList(code: code, reason: reason, source: source)
            list += cloudEvents.list(kind: .deadLetter, topic: source.partition.topic, partition: source.partition.partition, offset: source.offset)
            let copy = FailedDelivery(topic: deadLetters.name, partition: -1, error: error.code, context: context,
                                      key: message.key.map { Array($0) }, value: Array(value), headers: list)
            sendSmaller(copy, source: source)
        } catch {
            if !refusedForProducerState(error) { recordRefusedDeadLetter(deadLetters.name, error, source: source) }
        }
    }

    /// A dead letter's own span (`send <dlq>`, linked to the input's sampled context, the code as an
    /// attribute; under the batch's `process` span when a sampled batch is being answered, else the
    /// sampler decides), named in its `traceparent` instead of the input's.
    private func traceDeadLetter(_ tracing: WorkerTracing, message: KafkaMessage, code: DeadLetterCode, headers: inout OutgoingHeaders) {
        let span = tracing.start("send \(deadLetters.name)", kind: .producer, parent: batchTrace?.process,
                                 links: sampledContext(of: message, tracing).map { [$0] } ?? [],
                                 attributes: [("messaging.system", .string("kafka")), ("messaging.destination.name", .string(deadLetters.name)),
                                              ("weir.dead_letter.code", .string(code.rawValue))])
        defer { span.end() }
        guard var traceparent = tracing.traceparent(of: span) else { return }
        traceparent.withUTF8 { replaceTraceContext(of: &headers, traceparent: UnsafeRawBufferPointer($0)) }
    }

    /// Answers an offset librdkafka could not read with a `consume-error` dead letter: no key, no
    /// value, the reader's error in `weir-error-message`.
    func sendConsumeError(at source: EventSource, answers: AnswerWriter, reason: String, context: UInt) {
        metrics.deadLetter(code: .consumeError, route: answers.routeMetrics)
        let letter = FailedDelivery(topic: deadLetters.name, partition: -1, error: .noError, context: context, key: nil, value: [],
                                    headers: answers.deadLetterHeaderList(code: .consumeError, reason: reason, source: source)
                                        + cloudEvents.list(kind: .deadLetter, topic: source.partition.topic,
                                                           partition: source.partition.partition, offset: source.offset))
        send(letter, source: source)
    }

    // MARK: Refused deliveries

    /// An answer's delivery failed (at-least-once): send it again after a backoff while the
    /// refusal may pass and tries are left; otherwise answer the event another way (see the type's
    /// rules). `source` is nil when the event's partition has left: its next owner answers it.
    func answerFailed(_ failed: FailedDelivery, source: EventSource?, now: UInt64) {
        guard let source else { return }
        let attempt = (attempts[failed.context] ?? 0) + 1
        attempts[failed.context] = attempt
        if !failed.error.refusesRecordForGood && attempt <= maxRetries {
            metrics.deliveryRetries.increment()
            if retries.isEmpty {
                log("delivery failed (\(failed.error.name)); sending again, try \(attempt) of \(maxRetries)", level: .warning,
                    topic: failed.topic, partition: failed.partition)
            }
            let backoff = min(UInt64(100_000_000) << UInt64(min(attempt - 1, 6)), 5_000_000_000)
            retries.append(Retry(record: failed, source: source, dueAt: now &+ backoff))
            return
        }
        attempts[failed.context] = 0
        if failed.topic == deadLetters.name {
            sendSmaller(failed, source: source)
        } else {
            deadLetterRefusedPrediction(failed, source: source)
        }
    }

    /// `weir-error-message` of an `output-refused` dead letter, the same whether the prediction was
    /// refused at send (with librdkafka's message) or on delivery (the code only).
    static func refusedPredictionReason(topic: String, code: KafkaErrorCode, message: String?) -> String {
        "'\(topic)' refused the prediction: \(code.name)" + (message.map { ": \($0)" } ?? "")
    }

    /// A prediction the output topic will not take is answered by an `output-refused` dead letter:
    /// the input's key and headers (from the prediction's copy), no value (the input stays at its
    /// source offset), and the broker's refusal in `weir-error-message`.
    private func deadLetterRefusedPrediction(_ failed: FailedDelivery, source: EventSource) {
        // The prediction's own headers go (its model headers, its CloudEvents headers); the input's stay.
        let predictionHeaders = Set(["weir-model", "weir-version", "weir-route"] + CloudEventHeaders.names)
        var headers = failed.headers.filter { !predictionHeaders.contains($0.name) }
        let model = failed.headers.first { $0.name == "weir-model" }?.value
        let version = failed.headers.first { $0.name == "weir-version" }?.value
        headers += AnswerWriter.deadLetterHeaderList(
            code: .outputRefused, reason: Self.refusedPredictionReason(topic: failed.topic, code: failed.error, message: nil),
            source: source, model: model ?? [], version: version ?? [])
        headers += cloudEvents.list(kind: .deadLetter, topic: source.partition.topic, partition: source.partition.partition, offset: source.offset)
        let route = failed.headers.first { $0.name == "weir-route" }?.value.flatMap { Route(name: String(decoding: $0, as: UTF8.self)) }
        metrics.deadLetter(code: .outputRefused, route: metrics.route(model: String(decoding: model ?? [], as: UTF8.self),
                                                                       version: String(decoding: version ?? [], as: UTF8.self),
                                                                       route: route ?? .primary))
        let letter = FailedDelivery(topic: deadLetters.name, partition: -1, error: failed.error, context: failed.context,
                                    key: failed.key, value: [], headers: headers)
        send(letter, source: source)
    }

    /// Sends a dead letter the topic refused as too large in its next smaller form; any other
    /// refusal for good, or nothing left to drop, is a fault.
    private func sendSmaller(_ refused: FailedDelivery, source: EventSource) {
        guard refused.error.isRecordTooLarge, let smaller = Self.smaller(refused) else {
            recordRefusedDeadLetter(deadLetters.name,
                   KafkaError(operation: "deliver a dead letter to '\(deadLetters.name)'", code: refused.error), source: source)
            return
        }
        send(smaller, source: source)
    }

    /// Whether a header is one Weir adds to a dead letter (its own `weir-*`, Kafka Connect's
    /// `__connect.errors.*`, its CloudEvents `ce_*`) rather than one copied from the input.
    static func isDeadLetterContext(_ name: String) -> Bool {
        name.hasPrefix("weir-") || name.hasPrefix("__connect.errors.") || name.hasPrefix("ce_")
    }

    /// The next smaller form of a dead letter: without its value, then without the headers copied
    /// from the input, then without its key, each step named in a header; nil when nothing is left.
    static func smaller(_ record: FailedDelivery) -> FailedDelivery? {
        var next = record
        if let value = record.value, !value.isEmpty {
            next.value = []
            next.headers.append((valueOmittedHeader, Array(String(value.count).utf8)))
        } else if record.headers.contains(where: { !isDeadLetterContext($0.name) }) {
            let kept = record.headers.filter { isDeadLetterContext($0.name) }
            next.headers = kept + [(headersOmittedHeader, Array(String(record.headers.count - kept.count).utf8))]
        } else if let key = record.key {
            next.key = nil
            next.headers.append((keyOmittedHeader, Array(String(key.count).utf8)))
        } else {
            return nil
        }
        return next
    }

    /// Sends a copied answer; a refusal at send is handled like a failed delivery.
    private func send(_ record: FailedDelivery, source: EventSource) {
        let topic = record.topic == deadLetters.name ? deadLetters : predictions
        var headers = OutgoingHeaders(capacity: record.headers.count + 1)
        for (name, bytes) in record.headers {
            if let bytes { bytes.withUnsafeBytes { headers.append(name: name, value: $0) } } else { headers.append(name: name, value: nil) }
        }
        do {
            try producer.send(to: topic, key: record.key, value: record.value, headers: headers, context: record.context)
        } catch {
            if refusedForProducerState(error) { return }
            var refused = record
            refused.error = error.code
            answerFailed(refused, source: source, now: monotonicNanoseconds())
        }
    }

    /// Sends every retry that is due (all of them with `now` = `.max`: at a revoke or stop).
    func resendRetries(now: UInt64) {
        guard !retries.isEmpty else { return }
        let pending = retries
        retries.removeAll()
        for retry in pending {
            if retry.dueAt > now { retries.append(retry); continue }
            send(retry.record, source: retry.source)
        }
    }

    /// Forgets the tries of answers now delivered (cheap when nothing was retried).
    @inline(__always)
    func forgetAttempts(of delivered: UnsafeBufferPointer<UInt>) {
        guard !attempts.isEmpty else { return }
        for context in delivered { attempts.removeValue(forKey: context) }
    }

    /// Drops queued retries and their tries (an aborted transaction answers their events again;
    /// a revoked partition's next owner answers its events).
    func discardRetries(where leaving: (UInt) -> Bool = { _ in true }) {
        retries.removeAll { leaving($0.record.context) }
        attempts = attempts.filter { !leaving($0.key) }
    }

    // MARK: Best-effort records

    /// A shadow candidate's answer (`value`): not retried, does not hold back commits.
    func sendShadow(_ value: UnsafeRawBufferPointer, of message: KafkaMessage, headers: consuming OutgoingHeaders,
                    counter: CoreMetrics.Counter) {
        guard let shadow else { return }
        do {
            try bestEffortProducer.send(to: shadow, key: message.key, value: value, headers: headers, context: 0)
            counter.increment()
            metrics.shadowTotal.add(1, ordering: .relaxed)
        } catch {
            log("cannot produce a shadow record to '\(shadow.name)': \(error)", level: .warning, trace: batchTrace?.ids)
        }
    }

    /// A drift record, keyed by model name.
    func sendDrift(_ value: UnsafeRawBufferPointer, key: [UInt8]) {
        guard let drift else { return }
        var failure: KafkaError?
        key.withUnsafeBytes { key in
            do throws(KafkaError) { try bestEffortProducer.send(to: drift, key: key, value: value, context: 0) } catch { failure = error }
        }
        if let failure { log("cannot produce a drift record to '\(drift.name)': \(failure)", level: .warning, trace: batchTrace?.ids) }
    }

    /// A status record, keyed by worker id.
    func sendStatus(_ record: [UInt8], key: [UInt8]) {
        guard let status else { return }
        do {
            try bestEffortProducer.send(to: status, key: key, value: record, context: 0)
        } catch {
            log("cannot produce a status record to '\(status.name)': \(error)", level: .warning)
        }
    }
}
