import Foundation
import Synchronization
import Testing
import WeirControl
import WeirKafka
import WeirTestSupport
import WeirWorker

/// `guarantee: exactly-once` on the embedded broker: outputs and input offsets commit in one
/// transaction; an aborted transaction's events are answered again; a zombie is fenced. The mock
/// broker does not hide aborted records from read_committed readers, so what is checked here is
/// the offsets and the worker's behaviour, not what a downstream reader would see (docs/reliability.md).
@Suite(.timeLimit(.minutes(3))) struct ExactlyOnceTests {
    let bundle = try! ModelBundle(directory: demoBundleURL)

    func settings(_ cluster: EmbeddedCluster) -> WorkerSettings {
        var settings = testSettings(cluster)
        settings.guarantee = .exactlyOnce
        settings.commitIntervalMs = 200
        return settings
    }

    /// Waits until every input offset has an output. (The embedded broker accepts a transaction's
    /// offsets but never stores them, so the group's committed offsets cannot show progress here.)
    func waitForAnswers(_ cluster: EmbeddedCluster, _ running: RunningWorker) throws -> OutputAudit {
        var audit: OutputAudit?
        do {
            try waitFor("every event answered", timeoutSeconds: 60) {
                audit = try OutputAudit(cluster, partitions: 4)
                return audit!.lost == 0
            }
        } catch {
            throw TestFailure("\(error): \(audit.map(String.init(describing:)) ?? "-"), answered \(running.answered); log \(running.log.lines.withLock { $0 }.suffix(12))")
        }
        return audit!
    }

    @Test func everyEventIsAnsweredOnceInCommittedTransactions() throws {
        let cluster = try makeCluster()
        defer { cluster.stopCheckingClients() }
        let events = 2_000
        try produce(cluster, (0..<events).map { (SyntheticEvents.key($0), $0 % 97 == 3 ? Array("not json".utf8) : SyntheticEvents.event($0), []) })
        let settings = settings(cluster)
        let running = try RunningWorker(settings: settings, bundle: bundle)
        try waitFor("every event answered") { running.answered >= events }
        // The worker marks a partition's offsets committed only after the transaction holding them
        // (outputs and offsets) commits: everything committed means every offset went in one.
        try waitFor("every answered offset committed in a transaction") { running.worker.committedEverything }
        let committedTransactions = running.worker.metrics.transactionCommitTotal.load(ordering: .relaxed)
        try running.stop()
        let audit = try waitForAnswers(cluster, running)
        print("exactly-once, no faults: \(events) events: \(audit), \(committedTransactions) transactions committed")
        #expect(audit.lost == 0 && audit.duplicated == 0)
        #expect(committedTransactions >= 1)
        let text = String(decoding: running.worker.metrics.exposition(), as: UTF8.self)
        #expect(text.contains("weir_transactions_total{result=\"committed\"} \(running.worker.metrics.transactionCommitTotal.load(ordering: .relaxed))"),
                "the exported count is the worker's")
        #expect(running.worker.metrics.transactionAbortTotal.load(ordering: .relaxed) == 0)
    }

    /// A transaction the broker refuses (TOPIC_AUTHORIZATION_FAILED on AddPartitionsToTxn) is
    /// aborted, the partitions are rewound to where the last committed transaction left them, and
    /// their events are answered again: nothing lost, nothing written twice.
    @Test func anAbortedTransactionIsAnsweredAgain() throws {
        let cluster = try makeCluster()
        defer { cluster.stopCheckingClients() }
        let settings = settings(cluster)
        // Events keep arriving until the abort is seen: the injected refusal answers the next
        // AddPartitionsToTxn, which only a transaction begun after the injection sends. (With a
        // fixed number of events, a worker that joined late could answer all of them before the
        // injection, and no transaction would ever meet the refusal.)
        let producer = try SyntheticProducer(brokers: cluster.bootstrapServers, topic: "events", rate: 1_000)
        defer { producer.stop() }
        let running = try RunningWorker(settings: settings, bundle: bundle)
        try waitFor("the first transactions") {
            running.answered >= 1_000 && String(decoding: running.worker.metrics.exposition(), as: UTF8.self)
                .contains("weir_transactions_total{result=\"committed\"}")
        }
        // Only the worker's transactional producer sends AddPartitionsToTxn; an authorization
        // failure there is abortable: the open transaction must be aborted.
        let answeredAtInjection = running.answered
        cluster.injectRequestErrors(.addPartitionsToTxn, [KafkaErrorCode(rawValue: 29)])
        do {
            try waitFor("the abort", timeoutSeconds: 60) { running.worker.metrics.transactionAbortTotal.load(ordering: .relaxed) >= 1 }
        } catch {
            throw TestFailure("\(error): answered \(answeredAtInjection) at the injection, \(running.answered) now, \(producer.sent.load(ordering: .relaxed)) sent, worker failure: \(running.failureDescription ?? "none"); log \(running.log.lines.withLock { $0 }.suffix(8))")
        }
        producer.stop()
        try waitFor("the producer done", timeoutSeconds: 30) { producer.isFinished }
        let audit = try waitForAnswers(cluster, running)
        try running.stop()
        let events = try highWatermarks(cluster).values.reduce(0, +)
        print("exactly-once, one aborted transaction: \(events) events: \(audit); answered \(running.answered)")
        #expect(audit.lost == 0 && audit.duplicated == 0, "the refused transaction wrote nothing; its events were answered once more")
        // Rewound to where the last committed transaction left off, not to the beginning: the
        // events answered again are about a transaction's worth (200 ms at 1,000/s).
        let again = running.answered - Int(events)
        #expect(again > 0 && again < 1_000, "answered again: \(again)")
        #expect(running.log.lines.withLock { $0 }.contains { $0.hasPrefix("transaction aborted") })
        // Sends the failed transaction refused before the abort (librdkafka's `_STATE`) were not the
        // events' fault: none of them became an `output-refused` dead letter.
        #expect(running.worker.metrics.deadLetterTotal.load(ordering: .relaxed) == 0,
                "dead letters: \(running.worker.metrics.deadLetterTotal.load(ordering: .relaxed))")
    }

    /// A worker the broker reports fenced (a newer producer took its transactional id) stops with
    /// an error naming the fencing instead of writing on as a zombie. The embedded broker gives
    /// every InitProducerId a fresh producer id, so it never fences by itself: the test injects
    /// its answer to EndTxn (INVALID_PRODUCER_EPOCH). Fencing by a real successor needs a real Kafka.
    @Test func aFencedWorkerStopsNamingTheFencing() throws {
        let cluster = try makeCluster()
        defer { cluster.stopCheckingClients() }
        var settings = settings(cluster)
        settings.workerID = "zombie-\(UUID().uuidString.prefix(6))"
        let producer = try SyntheticProducer(brokers: cluster.bootstrapServers, topic: "events", rate: 500)
        defer { producer.stop() }
        let running = try RunningWorker(settings: settings, bundle: bundle)
        try waitFor("the first answers") { running.answered >= 200 }
        cluster.injectRequestErrors(.endTxn, [.producerFenced])
        do {
            try waitFor("the fenced worker stopping", timeoutSeconds: 30) { !running.worker.isRunning }
        } catch {
            throw TestFailure("\(error); log \(running.log.lines.withLock { $0 }.suffix(10))")
        }
        var message = ""
        do { try running.waitStopped(timeoutSeconds: 15) } catch { message = "\(error)" }
        #expect(message.contains("fenced by another producer with transactional id 'weir-\(settings.group)-\(settings.workerID)'"),
                "the worker stopped naming the fencing: \(message)")
    }
}
