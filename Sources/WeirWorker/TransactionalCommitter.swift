import WeirKafka

/// Exactly-once: outputs and input offsets are committed in one transaction per commit interval
/// (docs/reliability.md). A failed output aborts the transaction: its outputs are discarded, the
/// open batch is dropped and every owned partition is sought back to its last committed offset, so
/// its events are answered again. A fenced or fatal producer stops the worker.
final class TransactionalCommitter: Committer {
    /// The transaction's life. `idle` → `open` (begun); `open` → `broken` when an output fails;
    /// `broken` → (abort) → `open`; `open` → (commit) → `open`; any → `closed` after the final
    /// commit at stop, or when the producer can no longer go on (then `failure` says why).
    enum State: Equatable {
        /// Before `start`.
        case idle
        case open
        /// An output of the open transaction failed: abort at the next turn.
        case broken
        /// No transaction is open and none begins.
        case closed

        /// Whether a transaction may go from this state to `next`.
        func allows(_ next: State) -> Bool {
            switch (self, next) {
            case (.idle, .open), (.open, .open), (.open, .broken), (.broken, .open), (_, .closed): return true
            default: return false
            }
        }
    }

    private(set) var state = State.idle {
        willSet { assert(state.allows(newValue), "transaction state cannot go from \(state) to \(newValue)") }
    }
    private(set) var failure: WorkerError?
    private let consumer: KafkaConsumer
    private let producer: KafkaProducer
    private let ledger: OffsetLedger
    private let batcher: Batcher
    private let outputs: Outputs
    private let flow: PartitionFlow
    private let metrics: WorkerMetrics
    private let log: WorkerLog
    /// Flushes what the producer holds and applies the delivery reports (the poll loop's).
    private let settle: () -> Void
    private let flushTimeoutMs: Int
    /// The seek target of a partition with no committed offset: -2 (beginning) or -1 (end).
    private let uncommittedStart: Int64
    private let transactionalID: String
    private let workerID: String
    /// Per owned partition, the next offset the last committed transaction recorded: where an
    /// abort rewinds to (the group's committed offset serves partitions not yet in one).
    private var committedByTransaction: [TopicPartition: Int64] = [:]
    /// Events whose answers keep aborting transactions (shared with the batcher).
    let aborted: AbortedAnswers

    init(settings: WorkerSettings, consumer: KafkaConsumer, producer: KafkaProducer, ledger: OffsetLedger, batcher: Batcher,
         outputs: Outputs, flow: PartitionFlow, metrics: WorkerMetrics, log: WorkerLog, settle: @escaping () -> Void) {
        self.flow = flow
        self.consumer = consumer
        self.producer = producer
        self.ledger = ledger
        self.batcher = batcher
        self.outputs = outputs
        self.metrics = metrics
        self.log = log
        self.settle = settle
        aborted = batcher.aborted
        flushTimeoutMs = max(settings.shutdownTimeoutMs / 2, 1_000)
        // Where a partition with no committed offset and nothing consumed starts again after an
        // abort: where the consumer itself would start it (`kafka.auto.offset.reset`; -1 is the end).
        let reset = settings.kafkaProperties(for: "consumer")["auto.offset.reset"] ?? OffsetReset.earliest.rawValue
        uncommittedStart = ["latest", "largest", "end"].contains(reset) ? -1 : -2
        transactionalID = settings.transactionalID
        workerID = settings.workerID
    }

    func start() throws(WorkerError) {
        do {
            try producer.initTransactions()
        } catch {
            throw producerFailure(error, doing: "cannot register the transactional id")
        }
        begin()
        if let failure { throw failure }
    }

    var wantsTurn: Bool { state == .broken }

    func commit() { commitTransaction(final: false) }

    func deliveryFailed(_ failed: FailedDelivery, retry: (FailedDelivery) -> Void) {
        // Reports of an aborted transaction's records (purged) belong to tracks already cleared.
        guard ledger.owns(failed.context) else { return }
        // Purged records are the abort's collateral, not answers that failed themselves.
        if failed.error != .purged, let source = ledger.source(of: failed.context) {
            let count = aborted.noteFailed(source, error: failed.error)
            if failed.topic == outputs.deadLetters.name && count >= 2 * AbortedAnswers.limit {
                let error = KafkaError(operation: "deliver a dead letter to '\(failed.topic)'", code: failed.error)
                stop(WorkerError(SendFault(topic: failed.topic, error: error, source: source).description,
                                 kind: .outputRefused))
                return
            }
        }
        if state == .open {
            log("delivery failed (\(failed.error)); aborting the transaction to answer its events again", level: .warning,
                topic: failed.topic, partition: failed.partition)
            state = .broken
        }
    }

    /// A dead letter refused for good: nothing can answer its event, so the worker stops (naming
    /// the fencing when the producer was fenced, whichever call saw it first).
    func sendRefused(_ fault: SendFault) {
        stop(producerFailure(fault.error, doing: "cannot produce to '\(fault.topic)'"))
    }

    /// The open transaction failed (librdkafka refuses sends until it is aborted): its answers are
    /// not the records' fault, so none becomes a dead letter; the next turn aborts and answers
    /// their events again (a fatal producer stops the worker there instead).
    func producerRefused(_ error: KafkaError) {
        guard state == .open else { return }
        log("the transaction takes no more records (\(error.code.name)); aborting it to answer its events again", level: .warning)
        state = .broken
    }

    func commitRefused(_ offsets: [TopicPartitionOffset], _ error: KafkaErrorCode) {}

    func assigned(_ partitions: [TopicPartition]) {
        // A partition coming (back) to this worker starts from the group's offset, not an old record.
        for partition in partitions { committedByTransaction[partition] = nil }
    }

    /// The transaction holds every owned partition's outputs: commit it (abort if the assignment
    /// is already lost) before these partitions leave.
    func revoke(_ leaving: Set<TopicPartition>, lost: Bool, staying: Set<TopicPartition>, deadline: UInt64) -> Bool {
        var committed = false
        if lost { abort(rewinding: staying) } else { committed = commitTransaction(final: false, rewinding: staying) }
        for partition in leaving { committedByTransaction[partition] = nil }
        return committed
    }

    func commitAtStop(timeoutMs: Int, mayRetry: Bool) -> StopCommit {
        let committed = commitTransaction(final: true)
        if failure == nil { state = .closed }
        return committed ? .done : .gaveUp
    }

    // MARK: Transactions

    /// Ends the open transaction: flushes (so every answered event's output is delivered and the
    /// delivered prefix covers every answered event), adds those offsets, commits, and begins the
    /// next one unless `final`. A broken transaction is aborted and `rewinding` answered again.
    /// Returns whether nothing is left uncommitted: the transaction committed (or none was open)
    /// and the producer can go on.
    @discardableResult
    private func commitTransaction(final: Bool, rewinding: Set<TopicPartition>? = nil) -> Bool {
        guard state == .open || state == .broken else { return failure == nil }
        do { try producer.flush(timeoutMs: flushTimeoutMs) } catch {
            if state == .open { state = .broken }
        }
        settle()
        let partitions = rewinding ?? flow.assigned
        if state == .broken {
            abort(rewinding: final ? [] : partitions, final: final)
            return false
        }
        let offsets = ledger.commitPoints(onlyMoved: true)
        do {
            if !offsets.isEmpty { try producer.sendOffsetsToTransaction(offsets, group: consumer.groupMetadata()) }
            try producer.commitTransaction()
            ledger.markCommitted(offsets)
            for offset in offsets { committedByTransaction[offset.topicPartition] = offset.offset }
            aborted.forget(committed: committedByTransaction)
            metrics.transactions(.committed)
        } catch {
            if error.isFatal || isFenced(error) {
                stop(producerFailure(error, doing: "cannot commit the transaction"))
                return false
            }
            log("transaction commit failed (\(error)); aborting to answer its events again", level: .warning)
            state = .broken
            abort(rewinding: final ? [] : partitions, final: final)
            return false
        }
        if final { state = .closed } else { begin() }
        return failure == nil
    }

    private func begin() {
        guard failure == nil else { return }
        do {
            try producer.beginTransaction()
            state = .open
        } catch {
            stop(producerFailure(error, doing: "cannot begin a transaction"))
        }
    }

    /// Aborts the open transaction: its outputs are discarded and the group's offsets stay where
    /// the last committed transaction left them. The open batch is dropped, the ledger cleared and
    /// `partitions` sought back to their committed offsets, so their events are answered again.
    /// Unless `final`, the next transaction begins.
    private func abort(rewinding partitions: Set<TopicPartition>, final: Bool = false) {
        guard state == .open || state == .broken else { return }
        do { try producer.abortTransaction() } catch {
            stop(producerFailure(error, doing: "cannot abort the transaction"))
            return
        }
        metrics.transactions(.aborted)
        batcher.discard()
        // Where each partition's assignment started, for those no transaction has committed yet.
        let starts = Dictionary(uniqueKeysWithValues: partitions.compactMap { partition in
            ledger.firstOffset(of: partition).map { (partition, $0) }
        })
        ledger.removeAll()
        outputs.discardRetries()
        if !partitions.isEmpty {
            do {
                let unknown = partitions.filter { committedByTransaction[$0] == nil }
                let group = unknown.isEmpty ? [] : try consumer.committed(Array(unknown))
                var targets = partitions.compactMap { partition in
                    committedByTransaction[partition].map { TopicPartitionOffset(partition.topic, partition.partition, $0) }
                }
                // No committed offset yet: where this assignment started (where auto.offset.reset put
                // it), or, with nothing consumed, where auto.offset.reset starts a partition.
                targets += group.map { committed in
                    let start = committed.offset >= 0 ? committed.offset : starts[committed.topicPartition] ?? uncommittedStart
                    return TopicPartitionOffset(committed.topic, committed.partition, start)
                }
                try consumer.seek(targets)
                log("transaction aborted; \(partitions.count) partitions rewound to their committed offsets", level: .warning,
                    partitions: Array(partitions))
            } catch {
                stop(WorkerError("exactly-once: cannot rewind after an aborted transaction: \(error)", kind: .transaction))
                return
            }
        }
        if final { state = .closed } else { begin() }
    }

    private func stop(_ error: WorkerError) {
        if failure == nil { failure = error }
        state = .closed
    }

    /// Whether `error` says another producer took over this transactional id: by its own code, or,
    /// for a later call that reports the earlier fencing, by the producer's fatal error.
    private func isFenced(_ error: KafkaError) -> Bool {
        error.code.isFencing || producer.fatalError()?.code.isFencing == true
    }

    /// Why the worker stops when its producer cannot go on; fencing is named as such.
    private func producerFailure(_ error: KafkaError, doing what: String) -> WorkerError {
        if isFenced(error) {
            return WorkerError("exactly-once: fenced by another producer with transactional id '\(transactionalID)' (a newer worker with worker-id '\(workerID)'); stopping without committing (\(error))",
                               kind: .fenced)
        }
        return WorkerError("exactly-once: \(what): \(error)", kind: error.isFatal ? .producerFailed : .transaction)
    }
}

/// Exactly-once: in how many transactions in a row each event's answer failed to deliver (every
/// failed delivery aborts the transaction, and the event is read again). At `limit` the event is
/// answered by an `output-refused` dead letter instead of its prediction, so one poison answer
/// cannot abort forever; a dead letter that fails `limit` more times stops the worker. Entries
/// leave once a committed transaction passes their offset. Poll thread only.
final class AbortedAnswers {
    static let limit = 3
    private var failures: [EventSource: (count: Int, last: KafkaErrorCode)] = [:]

    var isEmpty: Bool { failures.isEmpty }

    /// Notes a failed delivery of the answer to `source`; returns how many in a row so far.
    @discardableResult
    func noteFailed(_ source: EventSource, error: KafkaErrorCode) -> Int {
        let count = (failures[source]?.count ?? 0) + 1
        failures[source] = (count, error)
        return count
    }

    /// Why the event at `source` must be dead-lettered at this reading, if it must.
    func refusal(of source: EventSource) -> String? {
        guard let entry = failures[source], entry.count >= Self.limit else { return nil }
        return "its answer failed to deliver in \(entry.count) transactions in a row (last: \(entry.last.name))"
    }

    /// Forgets events below what committed transactions have passed.
    func forget(committed: [TopicPartition: Int64]) {
        guard !failures.isEmpty else { return }
        failures = failures.filter { source, _ in committed[source.partition].map { source.offset >= $0 } ?? true }
    }
}
