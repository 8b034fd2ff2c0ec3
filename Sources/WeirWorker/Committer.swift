import WeirKafka

/// The guarantee's side of the loop: when input offsets are committed and what a failed output
/// means. One implementation per `Guarantee`, chosen once at start (`makeCommitter`). Everything
/// here runs on the poll thread at the loop's fixed point, never inside a librdkafka callback.
protocol Committer: AnyObject {
    /// Readies the producer side (exactly-once: registers the transactional id, opens a transaction).
    func start() throws(WorkerError)
    /// Whether the committer wants its turn before the commit interval is up (a broken transaction).
    var wantsTurn: Bool { get }
    /// The commit interval passed (or `wantsTurn`): commit what is delivered.
    func commit()
    /// An answer's delivery failed; `retry` queues it to be sent again where the guarantee allows.
    func deliveryFailed(_ failed: FailedDelivery, retry: (FailedDelivery) -> Void)
    /// A dead letter was refused for good: nothing can answer its event.
    func sendRefused(_ fault: SendFault)
    /// The producer refused an answer for its own state, not the record's (`refusesForProducerState`):
    /// exactly-once aborts the failed transaction and answers its events again.
    func producerRefused(_ error: KafkaError)
    /// The coordinator refused an asynchronous commit of `offsets`.
    func commitRefused(_ offsets: [TopicPartitionOffset], _ error: KafkaErrorCode)
    /// Partitions joined this worker.
    func assigned(_ partitions: [TopicPartition])
    /// Partitions leave, their answers delivered as far as `deadline` allowed; `staying` are kept.
    /// Returns whether their offsets were committed (false when lost or refused: the next owner
    /// answers their uncommitted events again).
    func revoke(_ leaving: Set<TopicPartition>, lost: Bool, staying: Set<TopicPartition>, deadline: UInt64) -> Bool
    /// At stop, after every held event is answered and flushed: the last commit. `.retry` asks the
    /// loop to serve the consumer (a rebalance may be under way) and call again.
    func commitAtStop(timeoutMs: Int, mayRetry: Bool) -> StopCommit
    /// Why the worker must stop, once something no record can fix happened.
    var failure: WorkerError? { get }
}

/// What the last commit at stop came to.
enum StopCommit {
    case done
    case retry
    /// The commit failed for good: the next owner answers the uncommitted events again.
    case gaveUp
}

/// Chooses the committer for `settings.guarantee`.
func makeCommitter(_ settings: WorkerSettings, consumer: KafkaConsumer, producer: KafkaProducer, ledger: OffsetLedger,
                   batcher: Batcher, outputs: Outputs, flow: PartitionFlow, metrics: WorkerMetrics, log: WorkerLog,
                   settle: @escaping () -> Void) -> any Committer {
    switch settings.guarantee {
    case .atLeastOnce:
        return GroupCommitter(consumer: consumer, ledger: ledger, metrics: metrics, log: log)
    case .exactlyOnce:
        return TransactionalCommitter(settings: settings, consumer: consumer, producer: producer, ledger: ledger, batcher: batcher,
                                      outputs: outputs, flow: flow, metrics: metrics, log: log, settle: settle)
    }
}

/// At-least-once: per partition, the offset after the longest delivered prefix is committed to the
/// group asynchronously each interval, and synchronously before partitions leave and at stop. A
/// failed delivery goes to `Outputs`' refusal rules; a dead letter refused for good stops the worker.
final class GroupCommitter: Committer {
    private let consumer: KafkaConsumer
    private let ledger: OffsetLedger
    private let metrics: WorkerMetrics
    private let log: WorkerLog
    private(set) var failure: WorkerError?

    init(consumer: KafkaConsumer, ledger: OffsetLedger, metrics: WorkerMetrics, log: WorkerLog) {
        self.consumer = consumer
        self.ledger = ledger
        self.metrics = metrics
        self.log = log
    }

    func start() throws(WorkerError) {}

    var wantsTurn: Bool { false }

    /// The tick's commit, sent only when no earlier asynchronous commit is still in flight:
    /// librdkafka retries a refused one by itself, and landing after a newer commit it would move
    /// the group back (to stay there, as the ledger counts the newer one committed).
    func commit() {
        guard consumer.asyncCommitsInFlight == 0 else { return }
        commit(async: true)
    }

    func deliveryFailed(_ failed: FailedDelivery, retry: (FailedDelivery) -> Void) { retry(failed) }

    /// Only a dead letter refused for good reaches here (a refused prediction is answered by a dead
    /// letter, `Outputs`): no record can answer that event, so the worker stops.
    func sendRefused(_ fault: SendFault) {
        guard failure == nil else { return }
        failure = WorkerError(fault.description, kind: .outputRefused)
    }

    /// A producer without transactions has no state an answer could wait out: the worker stops.
    func producerRefused(_ error: KafkaError) {
        guard failure == nil else { return }
        failure = WorkerError("output: the producer refuses every record (\(error)); restart the worker", kind: .producerFailed)
    }

    /// An asynchronous commit the coordinator refused (during a rebalance, say): its partitions
    /// count as uncommitted again, so the next tick sends them, even if no new event arrives.
    func commitRefused(_ offsets: [TopicPartitionOffset], _ error: KafkaErrorCode) {
        let reopened = ledger.reopen(offsets)
        metrics.commitFailures.increment()
        if reopened > 0 { log("commit of \(reopened) partitions refused (\(error.name)); will send again", level: .warning) }
    }

    func assigned(_ partitions: [TopicPartition]) {}

    func revoke(_ leaving: Set<TopicPartition>, lost: Bool, staying: Set<TopicPartition>, deadline: UInt64) -> Bool {
        guard !lost else { return false }
        return commit(async: false, only: leaving, timeoutMs: max(millisecondsLeft(until: deadline), 500)) == nil
    }

    func commitAtStop(timeoutMs: Int, mayRetry: Bool) -> StopCommit {
        guard let error = commit(async: false, quiet: true, timeoutMs: min(timeoutMs, 1_000)) else { return .done }
        guard mayRetry, !error.isFatal else {
            log("final commit failed (\(error)); the next owner answers the uncommitted events again", level: .error)
            return .gaveUp
        }
        return .retry
    }

    /// Commits each partition's point. Asynchronous commits send only points that moved;
    /// synchronous ones (revoke, stop) send every point again, as an async one may have failed
    /// unseen. Synchronous commits are bounded: during a rebalance the answer may wait for this thread.
    @discardableResult
    private func commit(async: Bool, only partitions: Set<TopicPartition>? = nil, quiet: Bool = false,
                        timeoutMs: Int = 2_000) -> KafkaError? {
        let offsets = ledger.commitPoints(onlyMoved: async, in: partitions)
        guard !offsets.isEmpty else { return nil }
        do {
            if async { try consumer.commit(offsets, async: true) } else { try consumer.commit(offsets, timeoutMs: timeoutMs) }
            ledger.markCommitted(offsets)
            return nil
        } catch {
            if !quiet { log("commit of \(offsets.count) partitions failed (\(error)); will retry", level: .warning) }
            return error
        }
    }
}

/// Milliseconds from now until `deadline` (monotonic nanoseconds), never negative.
func millisecondsLeft(until deadline: UInt64) -> Int {
    let now = monotonicNanoseconds()
    return deadline > now ? Int((deadline - now) / 1_000_000) : 0
}
