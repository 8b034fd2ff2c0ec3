import WeirCodec
import WeirKafka

/// A send the producer refused, recorded for the loop's fixed point, where the committer decides
/// what it means (the guarantee decides: stop, or abort the transaction and answer again).
struct SendFault {
    enum Kind {
        /// An answer or its retry was refused.
        case answerRefused
        /// Even the dead letter without its value was refused: nothing can answer the event.
        case deadLetterRefused
    }
    let kind: Kind
    let topic: String
    let error: KafkaError
}

/// Everything the worker writes: predictions, dead letters, shadow, drift and status records,
/// and answers sent again after a failed delivery. The topic handles, the copy-on-failure rules
/// and the best-effort policy live here; what a failure means lives in the committer.
final class Outputs {
    let producer: KafkaProducer
    let predictions: ProducerTopic
    let deadLetters: ProducerTopic
    let drift: ProducerTopic?
    let status: ProducerTopic?
    let shadow: ProducerTopic?
    private let metrics: WorkerMetrics
    private let log: WorkerLog
    /// Answers to send again (at-least-once), copied from their failed delivery reports.
    private var retries: [FailedDelivery] = []
    /// The first refused send since the loop last looked.
    private(set) var fault: SendFault?

    /// On a dead letter sent without its value (too large for the producer or the broker): the
    /// value's size in bytes. The value itself stays in the input topic at the source offset.
    static let valueOmittedHeader = "weir-value-omitted"

    init(producer: KafkaProducer, settings: WorkerSettings, metrics: WorkerMetrics, log: WorkerLog) throws(KafkaError) {
        self.producer = producer
        self.metrics = metrics
        self.log = log
        predictions = try producer.topic(settings.output)
        deadLetters = try producer.topic(settings.dlq)
        drift = try settings.driftTopic.map { name throws(KafkaError) in try producer.topic(name) }
        status = try settings.statusTopic.map { name throws(KafkaError) in try producer.topic(name) }
        shadow = try settings.shadowTopic.map { name throws(KafkaError) in try producer.topic(name) }
    }

    /// Hands the recorded fault to the caller and forgets it.
    func takeFault() -> SendFault? {
        defer { fault = nil }
        return fault
    }

    private func record(_ kind: SendFault.Kind, _ topic: ProducerTopic, _ error: KafkaError) {
        if fault == nil || kind == .deadLetterRefused { fault = SendFault(kind: kind, topic: topic.name, error: error) }
    }

    // MARK: Answers

    /// Sends the prediction in `writer` for the event of `context`.
    @inline(__always)
    func sendPrediction(_ writer: JSONWriter, key: UnsafeRawBufferPointer?, headers: consuming OutgoingHeaders, context: UInt) {
        do {
            try producer.send(to: predictions, key: key, value: writer.bytes, headers: headers, context: context)
        } catch {
            record(.answerRefused, predictions, error)
        }
    }

    /// Sends `message` to the dead-letter topic with the error headers (docs/contracts.md). Over the
    /// producer's message.max.bytes it goes without its value rather than not at all.
    func sendDeadLetter(_ message: KafkaMessage, answers: AnswerWriter, code: DeadLetterCode, reason: String, context: UInt) {
        var headers = OutgoingHeaders(copying: message)
        answers.appendDeadLetterHeaders(to: &headers, code: code, reason: reason, message: message)
        metrics.deadLetter(code: code)
        let value = message.value ?? UnsafeRawBufferPointer(start: nil, count: 0)
        do {
            try producer.send(to: deadLetters, key: message.key, value: value, headers: headers, context: context)
        } catch where error.code == .messageTooLarge {
            var headers = OutgoingHeaders(copying: message)
            answers.appendDeadLetterHeaders(to: &headers, code: code, reason: reason, message: message)
            headers.append(name: Self.valueOmittedHeader, value: String(value.count))
            do {
                try producer.send(to: deadLetters, key: message.key, value: UnsafeRawBufferPointer(start: nil, count: 0),
                                  headers: headers, context: context)
            } catch {
                record(.deadLetterRefused, deadLetters, error)
            }
        } catch {
            record(.answerRefused, deadLetters, error)
        }
    }

    // MARK: Retries (at-least-once)

    var hasRetries: Bool { !retries.isEmpty }

    /// Queues a failed answer to be sent again. A dead letter the broker refused as too large goes
    /// again without its value.
    func scheduleRetry(_ failed: FailedDelivery) {
        metrics.deliveryRetries.increment()
        if retries.isEmpty {
            log("delivery failed (\(failed.error)); sending again", level: .warning, topic: failed.topic, partition: failed.partition)
        }
        retries.append(failed)
    }

    /// Sends every queued retry once more.
    func resendRetries() {
        guard !retries.isEmpty else { return }
        let pending = retries
        retries.removeAll()
        for failed in pending {
            let isDeadLetter = failed.topic == deadLetters.name
            var value = failed.value
            var headers = OutgoingHeaders(capacity: failed.headers.count + 1)
            for (name, bytes) in failed.headers {
                if let bytes { bytes.withUnsafeBytes { headers.append(name: name, value: $0) } } else { headers.append(name: name, value: nil) }
            }
            if isDeadLetter, let size = value?.count, failed.error == .messageTooLarge || failed.error == .recordListTooLarge {
                value = []
                headers.append(name: Self.valueOmittedHeader, value: String(size))
            }
            let topic = isDeadLetter ? deadLetters : predictions
            do {
                try producer.send(to: topic, key: failed.key, value: value, headers: headers, context: failed.context)
            } catch {
                record(.answerRefused, topic, error)
            }
        }
    }

    /// Drops queued retries (an aborted transaction answers their events again).
    func discardRetries() { retries.removeAll() }

    // MARK: Best-effort records

    /// A shadow candidate's answer (in `writer`): not retried, does not hold back commits.
    func sendShadow(_ writer: JSONWriter, of message: KafkaMessage, headers: consuming OutgoingHeaders) {
        guard let shadow else { return }
        do {
            try producer.send(to: shadow, key: message.key, value: writer.bytes, headers: headers, context: 0)
            metrics.shadowPredictions.increment()
            metrics.shadowTotal.add(1, ordering: .relaxed)
        } catch {
            log("cannot produce a shadow record to '\(shadow.name)': \(error)", level: .warning)
        }
    }

    /// A drift record, keyed by model name.
    func sendDrift(_ writer: JSONWriter, key: [UInt8]) {
        guard let drift else { return }
        var failure: KafkaError?
        key.withUnsafeBytes { key in
            do throws(KafkaError) { try producer.send(to: drift, key: key, value: writer.bytes, context: 0) } catch { failure = error }
        }
        if let failure { log("cannot produce a drift record to '\(drift.name)': \(failure)", level: .warning) }
    }

    /// A status record, keyed by worker id.
    func sendStatus(_ record: [UInt8], key: [UInt8]) {
        guard let status else { return }
        do {
            try producer.send(to: status, key: key, value: record, context: 0)
        } catch {
            log("cannot produce a status record to '\(status.name)': \(error)", level: .warning)
        }
    }
}
