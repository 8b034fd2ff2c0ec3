import Foundation
import Testing
import WeirControl
import WeirDrift
import WeirKafka
import WeirTestSupport
import WeirWorker

/// How hard the chaos suite pushes: `make test` runs scale 1, `make chaos` sets `WEIR_CHAOS_SCALE`
/// (more events per scenario, 10 crashes instead of 2).
let chaosScale = max(1, Int(ProcessInfo.processInfo.environment["WEIR_CHAOS_SCALE"] ?? "") ?? 1)
/// Set by `make chaos`: the long scenarios run only then.
let chaosFull = ProcessInfo.processInfo.environment["WEIR_CHAOS_SCALE"] != nil

/// What a scenario left on the output topics, per consumed input offset.
struct OutputAudit: CustomStringConvertible {
    /// Input offsets with no prediction and no dead letter.
    var lost = 0
    /// Outputs beyond the first for an input offset.
    var duplicated = 0
    /// The first few duplicated input offsets and where their outputs landed.
    var firstDuplicated = [String]()
    var predictions = 0
    var deadLetters = 0
    /// The longest gap between two consecutive outputs (by record timestamp), in milliseconds.
    var longestStallMs: Int64 = 0
    var firstLost: [String] = []

    var description: String {
        "\(predictions) predictions, \(deadLetters) dead letters, lost \(lost), duplicated \(duplicated), longest output stall \(longestStallMs) ms"
    }

    /// Reads both output topics (`outputPartitions` each; default: as many as the input) and checks
    /// them against every offset below the input's high watermarks.
    init(_ cluster: EmbeddedCluster, partitions: Int, outputPartitions: Int? = nil) throws {
        let outputs = outputPartitions ?? partitions
        var count = [Int32: [Int64: Int]]()
        // Where each source offset's outputs landed, to say what a duplicate looks like.
        var landed = [Int32: [Int64: [String]]]()
        var stamps = [Int64]()
        for record in try readTopic(cluster, "predictions", partitions: outputs) {
            let source = try jsonObject(record)["source"] as? [String: Any] ?? [:]
            guard let partition = source["partition"] as? Int, let offset = source["offset"] as? Int else {
                throw TestFailure("a prediction without its source: \(record)")
            }
            count[Int32(partition), default: [:]][Int64(offset), default: 0] += 1
            landed[Int32(partition), default: [:]][Int64(offset), default: []]
                .append("predictions[\(record.partition)]@\(record.offset) t=\(record.timestampMilliseconds ?? -1)")
            predictions += 1
            if let stamp = record.timestampMilliseconds { stamps.append(stamp) }
        }
        for record in try readTopic(cluster, "dead-letters", partitions: outputs) {
            guard let partition = header(record, "weir-source-partition").flatMap({ Int32($0) }),
                  let offset = header(record, "weir-source-offset").flatMap({ Int64($0) }) else {
                throw TestFailure("a dead letter without its source headers: \(record)")
            }
            count[partition, default: [:]][offset, default: 0] += 1
            landed[partition, default: [:]][offset, default: []]
                .append("dead-letters[\(record.partition)]@\(record.offset) t=\(record.timestampMilliseconds ?? -1)")
            deadLetters += 1
            if let stamp = record.timestampMilliseconds { stamps.append(stamp) }
        }
        for (partition, high) in try highWatermarks(cluster, partitions: partitions) {
            for offset in 0..<high {
                let seen = count[partition]?[offset] ?? 0
                if seen == 0 {
                    lost += 1
                    if firstLost.count < 5 { firstLost.append("events[\(partition)]@\(offset)") }
                }
                duplicated += max(0, seen - 1)
                if seen > 1 && firstDuplicated.count < 5 {
                    firstDuplicated.append("events[\(partition)]@\(offset) -> " + (landed[partition]?[offset] ?? []).joined(separator: ", "))
                }
            }
        }
        stamps.sort()
        for (earlier, later) in zip(stamps, stamps.dropFirst()) { longestStallMs = max(longestStallMs, later - earlier) }
    }
}

/// Faults from the embedded broker while a worker answers a stream: after each, every consumed
/// offset has exactly one prediction or dead letter, and the group's commits reach the end.
/// Each scenario runs in about a minute at scale 1; `make chaos` runs them at 5x.
@Suite(.timeLimit(.minutes(15))) struct ChaosTests {
    let bundle = try! ModelBundle(directory: demoBundleURL)

    /// One scenario: half the events before the fault, half after, a bad event every 50.
    /// `fault` injects the scenario's fault and returns the request types whose injected errors must
    /// all have been returned to a request by the end (the proof that the fault happened).
    func scenario(_ name: String, configure: (inout WorkerSettings) -> Void = { _ in },
                  fault: (EmbeddedCluster) throws -> [KafkaApiKey]) throws {
        let cluster = try makeCluster()
        defer { cluster.stopCheckingClients() }
        let events = 3_000 * chaosScale
        func batch(_ range: Range<Int>) -> [(key: [UInt8]?, value: [UInt8]?, headers: [(String, String)])] {
            range.map { index in
                (SyntheticEvents.key(index), index % 50 == 49 ? SyntheticEvents.badEvent(index, kind: SyntheticEvents.badKinds[index / 50 % 3])
                                                               : SyntheticEvents.event(index), [])
            }
        }
        try produce(cluster, batch(0..<events / 2))
        var settings = testSettings(cluster)
        settings.batchMaxEvents = 64
        configure(&settings)
        let running = try RunningWorker(settings: settings, bundle: bundle)
        try waitFor("the first answers") { running.answered >= 200 }
        // The fault lands mid-stream: every partition of both output topics has taken a batch.
        try waitFor("a record in every output partition", timeoutSeconds: 30) {
            try ["predictions", "dead-letters"].allSatisfy { topic in try highWatermarks(cluster, topic: topic).values.allSatisfy { $0 > 0 } }
        }
        let injected = try fault(cluster)
        try produce(cluster, batch(events / 2..<events))
        // The faults must really happen: every injected error has met a request before the worker
        // stops (heartbeats, say, go out only every few seconds).
        try waitFor("\(name): every injected error returned to a request", timeoutSeconds: 30) {
            try injected.allSatisfy { try cluster.pendingRequestErrors($0) == 0 }
        }
        do {
            try waitFor("every event answered", timeoutSeconds: 120) { running.answered >= events }
        } catch {
            throw TestFailure("\(name): \(error) (\(running.answered) of \(events)); log \(running.log.lines.withLock { $0 }.suffix(20))")
        }
        // A fault can make the group take the worker's assignment away (the embedded broker fences
        // its generation); it rejoins, answers the uncommitted tail again and commits it. The test
        // waits for that, so the commits it checks are the worker's last word.
        do {
            try waitForCommitted(cluster, group: settings.group, try highWatermarks(cluster))
        } catch {
            throw TestFailure("\(name): \(error); consumed \(running.worker.metrics.consumedTotal.load(ordering: .relaxed)), in flight peak \(running.worker.metrics.inFlightPeak.load(ordering: .relaxed)); log \(running.log.lines.withLock { $0 }.filter { !$0.hasPrefix("[thrd") }.suffix(25))")
        }
        try running.stop(timeoutSeconds: 30)
        let audit = try OutputAudit(cluster, partitions: 4)
        let repeatable = running.worker.metrics.uncommittedHandoverEventTotal.load(ordering: .relaxed)
        print("chaos \(name): \(events) events: \(audit); \(repeatable) events handed over uncommitted")
        #expect(audit.lost == 0, "\(name): lost \(audit.firstLost)")
        // Repeats only of what assignments that left uncommitted had consumed (none when every
        // handover committed).
        #expect(audit.duplicated <= repeatable,
                "\(name): \(audit.duplicated) repeats, \(repeatable) events handed over uncommitted; \(audit.firstDuplicated); log \(running.log.lines.withLock { $0 }.suffix(30))")
        #expect(audit.predictions + audit.deadLetters == events + audit.duplicated)
        let committed = try committedOffsets(cluster, group: settings.group), marks = try highWatermarks(cluster)
        #expect(committed == marks, "\(name): commits reach the end: committed \(committed.sorted { $0.key < $1.key }), high \(marks.sorted { $0.key < $1.key }); log \(running.log.lines.withLock { $0 }.filter { !$0.hasPrefix("[thrd") }.suffix(15))")
    }

    /// Produce requests fail one after another with retriable errors. The embedded broker checks an
    /// idempotent producer's sequence numbers only for transactional producers (librdkafka 2.0.2's
    /// mock returns early from its sequence check without a transactional id), so when one request
    /// fails while a later one to the same partition succeeds, it keeps the later batch, and
    /// librdkafka counts the earlier one as written ("implicitly acked by subsequent batch
    /// success"): a real broker refuses the later batch as out of order and the producer sends the
    /// earlier one again. One request in flight per connection keeps the mock from seeing a later
    /// batch first, so the scenario tests Weir's retries and commits, not the mock's missing check
    /// (docs/reliability.md).
    @Test func produceErrorsAreRetriedWithoutLossOrDuplicates() throws {
        try scenario("produce errors", configure: { $0.kafka["producer.max.in.flight.requests.per.connection"] = "1" }) { cluster in
            try cluster.injectBrokerRequestErrors(.produce, [.notLeaderForPartition, .requestTimedOut, .notEnoughReplicas, .leaderNotAvailable,
                                                             .notLeaderForPartition, .notEnoughReplicas, .transport, .requestTimedOut])
            return [.produce]
        }
    }

    @Test func fetchErrorsAreRetried() throws {
        try scenario("fetch errors") { cluster in
            try cluster.injectBrokerRequestErrors(.fetch, [.notLeaderForPartition, .leaderNotAvailable, .transport, .notLeaderForPartition,
                                                           .unknownTopicOrPartition, .leaderNotAvailable])
            return [.fetch]
        }
    }

    @Test func coordinatorErrorsDelayCommitsButLoseNothing() throws {
        try scenario("coordinator errors", configure: Self.outlastOutages) { cluster in
            try cluster.injectBrokerRequestErrors(.offsetCommit, [.coordinatorNotAvailable, .notCoordinator, .requestTimedOut,
                                                                  .coordinatorLoadInProgress, .notCoordinator, .coordinatorNotAvailable])
            try cluster.injectBrokerRequestErrors(.findCoordinator, [.coordinatorNotAvailable, .coordinatorNotAvailable])
            try cluster.injectBrokerRequestErrors(.heartbeat, [.notCoordinator, .rebalanceInProgress])
            return [.offsetCommit, .findCoordinator, .heartbeat]
        }
    }

    /// A session that outlasts the 3 s faults below and the coordinator's refused heartbeats (the
    /// tests' default is 3 s, for quick rebalances).
    static func outlastOutages(_ settings: inout WorkerSettings) {
        settings.kafka["consumer.session.timeout.ms"] = "6000"
        settings.kafka["consumer.heartbeat.interval.ms"] = "1000"
    }

    /// The only broker goes away for 3 s (under the 6 s session timeout) while events are in flight.
    @Test func brokerDownAndUp() throws {
        try scenario("broker down 3 s", configure: Self.outlastOutages) { cluster in
            try cluster.setBrokerDown()
            Thread.sleep(forTimeInterval: 3)  // the outage itself, not a wait for an event
            try cluster.setBrokerUp()
            return []
        }
    }

    /// Every response delayed by 400 ms for 3 s.
    @Test func delaySpike() throws {
        try scenario("400 ms delay spike", configure: Self.outlastOutages) { cluster in
            try cluster.setRoundTripDelay(400)
            Thread.sleep(forTimeInterval: 3)  // the spike itself
            try cluster.setRoundTripDelay(0)
            return []
        }
    }

    /// Scale 1 -> 3 -> 1 workers under a steady producer: nothing is lost, the group's commits
    /// reach the end, and the repeats and the longest output stall are printed. On the embedded
    /// broker a member joining makes the owners' commits and SyncGroup fail with ILLEGAL_GENERATION
    /// (the mock bumps the generation when a rebalance starts), so librdkafka reports assignments
    /// lost and their uncommitted answers are repeated (docs/reliability.md); duplicates are
    /// therefore counted here, not forbidden.
    @Test func rebalanceOneToThreeToOne() throws {
        let partitions = 6
        // The outputs, repeats included (up to three times the input here), are spread over 24
        // partitions: the embedded broker keeps only about 5 MiB per partition, and the audit must
        // read everything back.
        let outputPartitions = 24
        let cluster = try EmbeddedCluster(brokers: 1, topics: [("events", partitions), ("predictions", outputPartitions),
                                                               ("dead-letters", outputPartitions)])
        defer { cluster.stopCheckingClients() }
        // Not scaled: 25,000 events of ~750 B on 6 partitions stay under that limit too.
        let events = 25_000
        let producer = try SyntheticProducer(brokers: cluster.bootstrapServers, topic: "events", rate: 1_000, limit: events, badEvery: 97)
        defer { producer.stop() }
        var settings = testSettings(cluster)
        settings.batchMaxEvents = 64
        if let strategy = ProcessInfo.processInfo.environment["CHAOS_STRATEGY"] { settings.kafka["consumer.partition.assignment.strategy"] = strategy }
        func answered(_ workers: [RunningWorker]) -> Int { workers.reduce(0) { $0 + $1.answered } }
        var firstSettings = settings
        if let debug = ProcessInfo.processInfo.environment["CHAOS_DEBUG"] { firstSettings.kafka["consumer.debug"] = debug }
        let first = try RunningWorker(settings: firstSettings, bundle: bundle)
        try waitFor("the first worker answering") { first.answered >= 300 }
        var extra = [RunningWorker]()
        for name in ["b", "c"] {
            var more = settings
            more.workerID = "chaos-\(name)-\(UUID().uuidString.prefix(6))"
            let worker = try RunningWorker(settings: more, bundle: bundle)
            extra.append(worker)
            do {
                try waitFor("worker \(name) answering", timeoutSeconds: 60) { worker.answered > 50 }
            } catch {
                let logs = ([first] + extra).map { $0.log.lines.withLock { $0 }.filter { !$0.hasPrefix("[thrd") }.joined(separator: "\n") }
                throw TestFailure("\(error); answered \(([first] + extra).map(\.answered)); logs:\n\(logs.joined(separator: "\n--\n"))")
            }
        }
        let beforeScaleDown = answered([first] + extra)
        try waitFor("the three answering together") { answered([first] + extra) >= beforeScaleDown + 500 }
        for worker in extra { try worker.stop(timeoutSeconds: 30) }
        try waitFor("the producer done", timeoutSeconds: 120) { producer.isFinished }
        let total = producer.sent.load(ordering: .relaxed)
        // Answer counts include repeats, so completion is the group's commits reaching the end.
        let marks = try highWatermarks(cluster, partitions: partitions)
        #expect(marks.values.reduce(0, +) <= Int64(total))
        do {
            try waitFor("commits at the end of every partition", timeoutSeconds: 120) {
                try committedOffsets(cluster, group: settings.group, partitions: partitions) == marks
            }
        } catch {
            let committed = try committedOffsets(cluster, group: settings.group, partitions: partitions)
            if let path = ProcessInfo.processInfo.environment["CHAOS_DUMP"] {
                try first.log.lines.withLock { $0 }.joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)
            }
            let logs = ([first] + extra).map { $0.log.lines.withLock { $0 }.filter { !$0.hasPrefix("[thrd") }.joined(separator: "\n") }
            throw TestFailure("\(error): committed \(committed.sorted { $0.key < $1.key }) marks \(marks.sorted { $0.key < $1.key }); logs:\n\(logs.joined(separator: "\n--\n"))")
        }
        try first.stop(timeoutSeconds: 30)
        let audit = try OutputAudit(cluster, partitions: partitions, outputPartitions: outputPartitions)
        print("chaos rebalance 1 -> 3 -> 1: \(marks.values.reduce(0, +)) events: \(audit)")
        let logs = ([first] + extra).flatMap { $0.log.lines.withLock { $0 } }
        let lostAssignments = logs.filter { $0.hasPrefix("lost ") }.count
        let repeatable = ([first] + extra).reduce(0) { $0 + $1.worker.metrics.uncommittedHandoverEventTotal.load(ordering: .relaxed) }
        print("chaos rebalance: \(lostAssignments) assignments reported lost, \(logs.filter { $0.hasPrefix("revoked") }.count) revoked, \(repeatable) events handed over uncommitted")
        #expect(audit.lost == 0, "lost \(audit.firstLost)")

        #expect(audit.duplicated <= repeatable, "repeats only of what uncommitted handovers consumed: \(audit.duplicated) repeats, \(repeatable) events")
        #expect(logs.filter { $0.hasPrefix("assigned") && !$0.hasPrefix("assigned 0") }.count >= 4, "partitions moved")
        #expect(try committedOffsets(cluster, group: settings.group, partitions: partitions) == (try highWatermarks(cluster, partitions: partitions)))
    }
}

/// kill -9 of `weir serve` at random moments under a steady producer, restarting it each time:
/// every event ends with at least one output, and each restart resumes from the group's committed
/// offsets, so the repeats are at most what had been answered but not yet committed when the
/// worker died (read at each kill: outputs written minus offsets committed). `make test` crashes it
/// twice, `make chaos` ten times.
@Suite(.timeLimit(.minutes(15))) struct CrashRecoveryTests {
    @Test func killNineAndRestartLosesNothing() throws {
        let partitions = 16
        let cluster = try EmbeddedCluster(brokers: 1, topics: [("events", partitions), ("predictions", partitions), ("dead-letters", partitions)])
        defer { cluster.stopCheckingClients() }
        let kills = chaosFull ? 10 : 2
        let maxInFlight = 2_000
        let group = "crash-\(UUID().uuidString.prefix(8))"
        // 500 events/s of ~750 B on 16 partitions stays far under the embedded broker's 5 MiB per
        // partition for a ten-crash run, so no unanswered event is trimmed away.
        let producer = try SyntheticProducer(brokers: cluster.bootstrapServers, topic: "events", rate: 500, badEvery: 101)
        defer { producer.stop() }
        var random = SplitMix64(seed: 20261122)
        var logs = [URL]()
        defer { for log in logs { try? FileManager.default.removeItem(at: log) } }

        func start(_ index: Int) throws -> Process {
            let process = Process()
            process.executableURL = builtProduct("weir")
            process.arguments = ["serve", "--brokers", cluster.bootstrapServers, "--group", group, "--model", demoBundleURL.path,
                                 "--metrics-port", "0", "--worker-id", "crash-\(index)", "--max-in-flight-events", String(maxInFlight),
                                 "--commit-interval-ms", "200", "--kafka-consumer-session-timeout-ms", "6000",
                                 "--kafka-consumer-fetch-wait-max-ms", "5"]
            let log = FileManager.default.temporaryDirectory.appendingPathComponent("weir-crash-\(UUID().uuidString).err")
            _ = FileManager.default.createFile(atPath: log.path, contents: nil)
            logs.append(log)
            process.standardError = try FileHandle(forWritingTo: log)
            process.standardOutput = FileHandle.nullDevice
            try process.run()
            return process
        }
        func outputs() throws -> Int64 {
            try highWatermarks(cluster, topic: "predictions", partitions: partitions).values.reduce(0, +)
                + highWatermarks(cluster, topic: "dead-letters", partitions: partitions).values.reduce(0, +)
        }

        var answeredNotCommitted = [Int64]()
        for index in 0..<kills {
            let process = try start(index)
            defer { stop(process, signal: SIGKILL) }
            let before = try outputs()
            try waitFor("worker \(index) answering", timeoutSeconds: 60) { try outputs() >= before + 300 }
            // A random moment while it answers: up to one more second.
            let extra = Int64(random.next() % 1_000)
            let target = try outputs() + extra / 2
            try waitFor("a random moment", timeoutSeconds: 10) { try outputs() >= target }
            #expect(stop(process, signal: SIGKILL))
            #expect(process.terminationReason == .uncaughtSignal)
            // Every output so far minus every committed offset: the repeats a restart from the
            // commits makes (each earlier crash's repeats are among these outputs). A commit the
            // dead worker sent just before dying may land after this read, which only loosens it.
            let committed = try committedOffsets(cluster, group: group, partitions: partitions).values.reduce(Int64(0)) { $0 + max($1, 0) }
            answeredNotCommitted.append(try outputs() - committed)
        }
        producer.stop()
        try waitFor("the producer stopped", timeoutSeconds: 10) { producer.isFinished }
        let final = try start(kills)
        defer { stop(final, signal: SIGKILL) }
        let marks = try highWatermarks(cluster, partitions: partitions)
        try waitFor("the last worker committing everything", timeoutSeconds: 120) {
            try committedOffsets(cluster, group: group, partitions: partitions) == marks
        }
        #expect(stop(final), "the last worker ends within 30 s of SIGTERM")
        #expect(final.terminationStatus == 0)
        let audit = try OutputAudit(cluster, partitions: partitions)
        let events = marks.values.reduce(0, +)
        let bound = answeredNotCommitted.last ?? 0
        print("crash recovery: \(kills) × kill -9 over \(events) events: \(audit); answered but not committed at each kill \(answeredNotCommitted)")
        #expect(audit.lost == 0, "lost \(audit.firstLost)")
        #expect(audit.duplicated <= Int(bound), "repeats only where answers were not yet committed at a crash")
        #expect(Int64(audit.predictions + audit.deadLetters - audit.duplicated) == events)
    }
}
