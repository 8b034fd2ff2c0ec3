import Foundation
import Synchronization
import Testing
import WeirCodec
import WeirControl
import WeirKafka
import WeirTestSupport
@testable import WeirWorker

/// Bundles for control tests, made from the demo bundle: the same model as other versions, a
/// bundle with a changed file, one with other feature names, and one whose model fails on half
/// of all events (Tests/WeirWorkerTests/Fixtures, from scripts/make-control-fixtures.py).
struct TestBundles {
    let root = FileManager.default.temporaryDirectory.appendingPathComponent("weir-control-\(UUID().uuidString)")

    /// A copy of the demo bundle as `version`; `inputPrefix` renames the features (dropping
    /// reference.json, whose profiles name them); `onnx` swaps the model file.
    func make(_ version: String, inputPrefix: String? = nil, onnx: URL? = nil) throws -> URL {
        let directory = root.appendingPathComponent("fraud-\(version)-\(UUID().uuidString.prefix(6))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var manifest = try JSONDecoder().decode(BundleManifest.self, from: Data(contentsOf: demoBundleURL.appendingPathComponent("manifest.json")))
        manifest.version = version
        let model = try Data(contentsOf: onnx ?? demoBundleURL.appendingPathComponent("model.onnx"))
        try model.write(to: directory.appendingPathComponent("model.onnx"))
        manifest.sha256["model.onnx"] = sha256Hex(model)
        if let inputPrefix {
            manifest.inputs = manifest.inputs.map { BundleManifest.Input(name: inputPrefix + $0.name.dropFirst(), type: $0.type, default: $0.default) }
        }
        if inputPrefix != nil || onnx != nil {
            manifest.sha256["reference.json"] = nil
        } else {
            try FileManager.default.copyItem(at: demoBundleURL.appendingPathComponent("reference.json"),
                                             to: directory.appendingPathComponent("reference.json"))
        }
        try BundlePackager.write(manifest, to: directory)
        return directory
    }

    func remove() { try? FileManager.default.removeItem(at: root) }
}

/// Follows a topic from its beginning on a background thread, keeping every record. The consumer
/// is made, used and closed on that thread.
final class TopicFollower: Sendable {
    private let records = Mutex<[ConsumedRecord]>([])
    private let stopping = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)

    init(_ cluster: EmbeddedCluster, _ topic: String, partitions: Int) throws {
        var configuration = ConsumerConfiguration(bootstrapServers: cluster.bootstrapServers, groupID: "follower-\(UUID().uuidString)")
        configuration.properties["fetch.wait.max.ms"] = "5"
        let started = DispatchSemaphore(value: 0)
        let failure = Mutex<String?>(nil)
        let thread = Thread { [self, configuration] in
            let consumer: KafkaConsumer
            do {
                consumer = try KafkaConsumer(configuration: configuration)
                try consumer.assign((0..<Int32(partitions)).map { TopicPartitionOffset(topic, $0, -2) })
            } catch {
                failure.withLock { $0 = "\(error)" }
                started.signal()
                finished.signal()
                return
            }
            started.signal()
            while !stopping.load(ordering: .relaxed) {
                consumer.poll(maxMessages: 1000, timeoutMs: 50) { batch in
                    let taken = batch.map { $0.record() }
                    records.withLock { $0.append(contentsOf: taken) }
                }
            }
            try? consumer.close()
            finished.signal()
        }
        thread.start()
        guard started.wait(timeout: .now() + 30) == .success else { throw TestFailure("follower of \(topic): no start within 30 s") }
        if let failure = failure.withLock({ $0 }) { throw TestFailure("follower of \(topic): \(failure)") }
    }

    var all: [ConsumedRecord] { records.withLock { $0 } }

    /// Waits (bounded) until `condition` holds for the records so far; returns them.
    @discardableResult
    func wait(for what: String, timeoutSeconds: Double = 30, _ condition: ([ConsumedRecord]) throws -> Bool) throws -> [ConsumedRecord] {
        var snapshot = [ConsumedRecord]()
        try waitFor(what, timeoutSeconds: timeoutSeconds) {
            snapshot = all
            return try condition(snapshot)
        }
        return snapshot
    }

    func stop() {
        stopping.store(true, ordering: .relaxed)
        _ = finished.wait(timeout: .now() + 5)
    }
}

/// One status record, parsed.
struct Status {
    let worker: String
    let active: String
    let candidate: String?
    let mode: String?
    let state: String
    let reason: String
    let sequence: Int64?

    init(_ record: ConsumedRecord) throws {
        let object = try jsonObject(record)
        worker = object["worker"] as! String
        active = (object["active"] as! [String: Any])["version"] as! String
        let candidateObject = object["candidate"] as? [String: Any]
        candidate = candidateObject?["version"] as? String
        mode = candidateObject?["mode"] as? String
        state = object["state"] as! String
        reason = object["reason"] as! String
        sequence = ((object["message"] as? [String: Any])?["sequence"] as? NSNumber)?.int64Value
    }
}

@Suite(.serialized, .timeLimit(.minutes(4))) struct ControlTests {
    let base: ModelBundle
    let bundles = TestBundles()
    let key = Array("control-test-key-of-at-least-32-bytes".utf8)
    let keyFile: URL

    init() throws {
        base = try ModelBundle(directory: demoBundleURL)
        try FileManager.default.createDirectory(at: bundles.root, withIntermediateDirectories: true)
        keyFile = bundles.root.appendingPathComponent("control.key")
        try Data(key + [0x0A]).write(to: keyFile)
    }

    func cluster() throws -> EmbeddedCluster {
        try EmbeddedCluster(brokers: 1, topics: [("events", 4), ("predictions", 4), ("dead-letters", 4), ("shadow", 4),
                                                 ("status", 1), ("control", 1)])
    }

    func settings(_ cluster: EmbeddedCluster, worker: String, group: String) -> WorkerSettings {
        var settings = testSettings(cluster, group: group)
        settings.workerID = worker
        settings.controlTopic = "control"
        settings.controlKeyFile = keyFile.path
        settings.statusTopic = "status"
        settings.shadowTopic = "shadow"
        settings.shutdownTimeoutMs = 20_000
        return settings
    }

    /// Two workers, `worker-a` and `worker-b`, in one group, both owning partitions.
    func startTwoWorkers(_ cluster: EmbeddedCluster) throws -> (RunningWorker, RunningWorker) {
        let group = "control-\(UUID().uuidString)"
        let one = try RunningWorker(settings: settings(cluster, worker: "worker-a", group: group), bundle: base)
        let two = try RunningWorker(settings: settings(cluster, worker: "worker-b", group: group), bundle: base)
        try waitFor("both workers to own partitions", timeoutSeconds: 40) { one.worker.isReady && two.worker.isReady }
        return (one, two)
    }

    func stopBoth(_ one: RunningWorker, _ two: RunningWorker) throws {
        one.worker.stop()
        two.worker.stop()
        try one.waitStopped(timeoutSeconds: 25)
        try two.waitStopped(timeoutSeconds: 25)
    }

    func client(_ cluster: EmbeddedCluster) -> ControlClient {
        ControlClient(brokers: cluster.bootstrapServers, topic: "control", key: key)
    }

    func deploy(_ directory: URL, _ kind: RolloutMode = .replace, percent: Double? = nil, sequence: Int64 = 0) throws -> ControlMessage {
        // The manifest as is (not verified: some test bundles are broken on purpose).
        let manifest = try JSONDecoder().decode(BundleManifest.self, from: Data(contentsOf: directory.appendingPathComponent("manifest.json")))
        return ControlMessage(action: .deploy, model: "fraud", version: manifest.version, bundle: directory.absoluteString,
                              sha256: ModelBundle.identity(of: directory), strategy: RolloutStrategy(kind: kind, percent: percent),
                              sequence: sequence)
    }

    /// Sends `message` (sequence filled from the topic) and returns the time it was delivered.
    @discardableResult
    func send(_ cluster: EmbeddedCluster, _ message: ControlMessage) throws -> Date {
        let client = client(cluster)
        try client.send(try client.prepare(message))
        return Date()
    }

    func events(_ range: Range<Int>) -> [(key: [UInt8]?, value: [UInt8]?, headers: [(String, String)])] {
        range.map { (SyntheticEvents.key($0), SyntheticEvents.event($0), []) }
    }

    /// The status records among `records` (not the checkpoints, decisions and windows beside them).
    func statuses(_ records: [ConsumedRecord]) throws -> [Status] { try plainStatus(records).map(Status.init) }

    func plainStatus(_ records: [ConsumedRecord]) -> [ConsumedRecord] {
        records.filter { (try? jsonObject($0))?["type"] == nil }
    }

    /// Predictions by event id (the last one when repeated).
    func predictions(_ records: [ConsumedRecord]) throws -> [String: ConsumedRecord] {
        var byID = [String: ConsumedRecord]()
        for record in records { byID[try jsonObject(record)["id"] as! String] = record }
        return byID
    }

    @Test func aDeployUnderLoadLosesNothingAndSwitchesOncePerPartition() throws {
        defer { bundles.remove() }
        let v2 = try bundles.make("1.1.0")
        let cluster = try cluster()
        defer { cluster.stopCheckingClients() }
        let (one, two) = try startTwoWorkers(cluster)
        let status = try TopicFollower(cluster, "status", partitions: 1)
        defer { status.stop() }
        let producer = try SyntheticProducer(brokers: cluster.bootstrapServers, topic: "events", rate: 3_000)
        try waitFor("predictions before the deploy") { one.answered + two.answered >= 1_500 }
        let sentAt = try send(cluster, deploy(v2))
        let applied = try status.wait(for: "both workers to report 1.1.0") { records in
            let reports = try statuses(records).filter { $0.active == "1.1.0" && $0.reason.hasPrefix("applied deploy") }
            return Set(reports.map(\.worker)) == ["worker-a", "worker-b"]
        }
        let reportedWithin = Date().timeIntervalSince(sentAt)
        let answeredAtSwap = one.answered + two.answered
        try waitFor("predictions after the deploy") { one.answered + two.answered >= answeredAtSwap + 1_500 }
        producer.stop()
        let sent = producer.sent.load(ordering: .relaxed)
        try waitFor("every event answered", timeoutSeconds: 40) { one.answered + two.answered >= sent }
        try stopBoth(one, two)

        print("deploy under load: both workers reported 1.1.0 \(String(format: "%.2f", reportedWithin)) s after the deploy was written")
        #expect(try statuses(applied).contains { $0.reason == "started" && $0.active == "1.0.0" })
        let records = try readTopic(cluster, "predictions")
        let byID = try predictions(records)
        #expect(byID.count == sent, "every produced event has a prediction: \(byID.count) of \(sent)")
        #expect(try readTopic(cluster, "dead-letters").isEmpty)
        var switches = [Int32: Int]()
        for partition in Int32(0)..<4 {
            let versions = records.filter { $0.partition == partition }
                .map { (offset: try! (jsonObject($0)["source"] as! [String: Any])["offset"] as! Int, version: header($0, "weir-version")!) }
                .sorted { $0.offset < $1.offset }
                .map(\.version)
            var changes = 0
            for index in versions.indices.dropFirst() where versions[index] != versions[index - 1] { changes += 1 }
            switches[partition] = changes
            #expect(versions.first == "1.0.0" && versions.last == "1.1.0", "partition \(partition) went from 1.0.0 to 1.1.0")
        }
        #expect(switches.values.allSatisfy { $0 == 1 }, "each partition switched version exactly once: \(switches)")
    }

    @Test func badControlMessagesAreRejectedAndTheOldVersionKeepsServing() throws {
        defer { bundles.remove() }
        let v2 = try bundles.make("1.1.0")
        let corrupt = try bundles.make("1.1.1")
        let corruptModel = corrupt.appendingPathComponent("model.onnx")
        var bytes = try Data(contentsOf: corruptModel)
        bytes[bytes.count / 2] ^= 0xFF
        try bytes.write(to: corruptModel)
        let renamed = try bundles.make("1.3.0", inputPrefix: "g")
        let cluster = try cluster()
        defer { cluster.stopCheckingClients() }
        let running = try RunningWorker(settings: settings(cluster, worker: "worker-a", group: "control-\(UUID().uuidString)"), bundle: base)
        try running.waitUntilReady()
        let status = try TopicFollower(cluster, "status", partitions: 1)
        defer { status.stop() }
        try produce(cluster, events(0..<500))
        try waitFor("the first events answered") { running.answered >= 500 }

        let client = client(cluster)
        let value = try deploy(v2, sequence: 1).encoded()
        try client.sendRaw(key: Array("fraud".utf8), value: value,
                           headers: [(ControlSignature.headerName, ControlSignature.sign(value: value, key: Array("a wrong key, long enough to be used".utf8)))])
        try client.sendRaw(key: Array("fraud".utf8), value: value, headers: [])
        try client.send(ControlMessage(action: .resume, model: "fraud", sequence: 5))
        try client.send(try deploy(v2, sequence: 5))
        var wrongHash = try deploy(v2, sequence: 6)
        wrongHash.sha256 = String(repeating: "ab", count: 32)
        try client.send(wrongHash)
        var knownHashOtherVersion = try deploy(v2, sequence: 6)
        knownHashOtherVersion.sha256 = base.id
        try client.send(knownHashOtherVersion)
        try client.send(try deploy(corrupt, sequence: 7))
        try client.send(try deploy(renamed, sequence: 8))
        let records: [ConsumedRecord]
        do {
            records = try status.wait(for: "seven rejections") { records in
                try statuses(records).filter { $0.state == "rejected" }.count >= 7
            }
        } catch {
            throw TestFailure("\(error): status \(try statuses(status.all).map(\.reason)); log \(running.log.lines.withLock { $0 })")
        }
        let rejected = try statuses(records).filter { $0.state == "rejected" }
        let reasons = rejected.map(\.reason)
        for (code, detail) in [("bad-signature", "does not match"), ("missing-signature", "no weir-signature"),
                               ("stale-sequence", "sequence 5 is not above the last applied 5"),
                               ("bundle-hash", "the message says"), ("bundle-hash", "is the manifest of 1.0.0, not 1.1.0"),
                               ("bundle-hash", "model.onnx: sha256 is"),
                               ("incompatible-schema", "cannot be read by 1.3.0")] {
            #expect(reasons.contains { $0.hasPrefix(code) && $0.contains(detail) }, "a '\(code)' rejection mentioning '\(detail)' in \(reasons)")
        }
        #expect(rejected.allSatisfy { $0.active == "1.0.0" && $0.candidate == nil })
        #expect(running.worker.servingVersions.primary == "1.0.0")
        #expect(running.worker.metrics.controlRejectedTotal.load(ordering: .relaxed) == 7)
        let text = String(decoding: running.worker.metrics.exposition(), as: UTF8.self)
        #expect(text.contains(#"weir_control_messages_total{result="rejected",reason="bundle-hash"} 3"#), "\(text)")

        // Pause and resume through the topic: nothing is answered while paused.
        let before = running.answered
        try send(cluster, ControlMessage(action: .pause, model: "fraud", sequence: 0))
        try status.wait(for: "the pause applied") { try statuses($0).contains { $0.state == "paused" } }
        try produce(cluster, events(500..<700))
        try waitFor("the partitions paused") { exposition(running).contains("weir_paused_partitions 4") }
        try waitForTurns(running, 5)
        #expect(running.answered == before, "a paused worker answered \(running.answered - before) events")
        // librdkafka 2.0.2 can resume partitions the worker holds paused (just after an incremental
        // assign). The events that then arrive are answered, and each such partition is paused again.
        running.worker.resumeInsideLibrdkafkaForTesting()
        try produce(cluster, events(700..<780))
        try waitFor("every partition paused again") { repausedPartitions(running).count == 4 }
        try waitFor("the events that flowed answered") {
            running.answered == running.worker.metrics.consumedTotal.load(ordering: .relaxed)
        }
        let flowed = running.answered - before
        #expect(flowed > 0, "librdkafka resumed the partitions, so events flowed")
        try produce(cluster, events(780..<980))
        try waitForTurns(running, 5)
        #expect(running.answered == before + flowed, "paused again, the worker answered \(running.answered - before - flowed) more events")
        try send(cluster, ControlMessage(action: .resume, model: "fraud", sequence: 0))
        try waitFor("the events after the resume answered") { running.answered >= before + 480 }
        try running.stop()
        let versions = Set(try readTopic(cluster, "predictions").compactMap { header($0, "weir-version") })
        #expect(versions == ["1.0.0"], "only 1.0.0 answered: \(versions)")
    }

    /// Waits (bounded) until the worker's poll loop has turned `turns` more times: each turn polls
    /// for events and waits up to 100 ms for them, so a worker that answers nothing over them had
    /// its chances and took none (a paused worker). Not a sleep: it waits for the loop's progress.
    func waitForTurns(_ running: RunningWorker, _ turns: Int) throws {
        let start = running.worker.metrics.pollTurns.load(ordering: .relaxed)
        try waitFor("\(turns) turns of the poll loop", timeoutSeconds: 10) {
            running.worker.metrics.pollTurns.load(ordering: .relaxed) >= start + turns
        }
    }

    /// The partitions the worker's log says it paused again after librdkafka resumed them.
    func repausedPartitions(_ running: RunningWorker) -> Set<String> {
        let lines = running.log.lines.withLock { $0 }.filter { $0.hasPrefix("librdkafka resumed paused partitions ") }
        return Set(lines.flatMap { line in
            line.dropFirst("librdkafka resumed paused partitions ".count).prefix { $0 != ":" }.split(separator: " ").map(String.init)
        })
    }

    func exposition(_ running: RunningWorker) -> String { String(decoding: running.worker.metrics.exposition(), as: UTF8.self) }

    @Test func canaryShadowRollbackPromoteAndAnAutomaticRollback() throws {
        defer { bundles.remove() }
        let v2 = try bundles.make("1.1.0")
        let failing = try bundles.make("1.2.0", onnx: repositoryRoot.appendingPathComponent("Tests/WeirWorkerTests/Fixtures/failing-candidate.onnx"))
        let cluster = try cluster()
        defer { cluster.stopCheckingClients() }
        let (one, two) = try startTwoWorkers(cluster)
        let status = try TopicFollower(cluster, "status", partitions: 1)
        defer { status.stop() }
        let outputs = try TopicFollower(cluster, "predictions", partitions: 4)
        defer { outputs.stop() }
        let shadow = try TopicFollower(cluster, "shadow", partitions: 4)
        defer { shadow.stop() }
        try produce(cluster, events(0..<200))  // recent events for the candidates' warm-up
        try waitFor("warm-up events answered") { one.answered + two.answered >= 200 }

        func applied(_ what: String, sequence: Int64) throws {
            try status.wait(for: "both workers to apply \(what)") { records in
                Set(try statuses(records).filter { $0.sequence == sequence && $0.reason.hasPrefix("applied") }.map(\.worker)) == ["worker-a", "worker-b"]
            }
        }
        func answered(_ range: Range<Int>) throws -> [String: ConsumedRecord] {
            let ids = Set(range.map { "evt-\($0)" })
            var found = [String: ConsumedRecord]()
            try outputs.wait(for: "predictions of events \(range)") { records in
                found = try predictions(records).filter { ids.contains($0.key) }
                return found.count == ids.count
            }
            return found
        }

        // Canary 10%: the keys the stable hash picks, whichever worker owns them.
        try send(cluster, deploy(v2, .canary, percent: 10, sequence: 1))
        try applied("the canary", sequence: 1)
        #expect(one.worker.servingVersions.candidate == "1.1.0" && two.worker.servingVersions.candidate == "1.1.0")
        try produce(cluster, events(200..<5_200))
        let canaryPhase = try answered(200..<5_200)
        var canaryKeys = Set<String>(), allKeys = Set<String>()
        var misrouted = 0
        for record in canaryPhase.values {
            let key = record.keyString!
            allKeys.insert(key)
            let route = header(record, "weir-route")
            let expected = record.key!.withUnsafeBytes { CanaryRouting.isCanary($0, percent: 10) }
            if route == "canary" { canaryKeys.insert(key) }
            if (route == "canary") != expected || header(record, "weir-version") != (expected ? "1.1.0" : "1.0.0") { misrouted += 1 }
        }
        let share = Double(canaryKeys.count) / Double(allKeys.count)
        #expect(misrouted == 0, "every event went where its key's hash says, on both workers")
        #expect(abs(share - 0.10) <= 0.02, "\(canaryKeys.count) of \(allKeys.count) keys on the canary (\(share))")
        #expect(Set(canaryPhase.values.map(\.partition)).count == 4)
        // Canary and primary apart in the metrics, by model, version and route.
        let canaryRecords = canaryPhase.values.filter { header($0, "weir-route") == "canary" }.count
        let texts = [one, two].map { exposition($0) }
        let canaryCounted = texts.reduce(0) { $0 + metricSum($1, "weir_predictions_total", #"version="1.1.0""#, #"route="canary""#) }
        #expect(canaryCounted >= Double(canaryRecords), "canary predictions counted under route=canary, version 1.1.0")
        #expect(texts.allSatisfy { metricSum($0, "weir_model_executions_total", #"route="canary""#) > 0 })

        // Rollback ends the canary.
        try send(cluster, ControlMessage(action: .rollback, model: "fraud", sequence: 2))
        try applied("the rollback", sequence: 2)
        try produce(cluster, events(5_200..<5_600))
        #expect(try answered(5_200..<5_600).values.allSatisfy { header($0, "weir-route") == "primary" && header($0, "weir-version") == "1.0.0" })

        // Shadow: one shadow record per event, primary answers unchanged.
        try send(cluster, deploy(v2, .shadow, sequence: 3))
        try applied("the shadow", sequence: 3)
        try produce(cluster, events(5_600..<6_600))
        let shadowPhase = try answered(5_600..<6_600)
        #expect(shadowPhase.values.allSatisfy { header($0, "weir-version") == "1.0.0" && header($0, "weir-route") == "primary" })
        let shadowIDs = Set((5_600..<6_600).map { "evt-\($0)" })
        let shadowRecords = try shadow.wait(for: "a shadow record per event") { records in
            Set(try records.map { try jsonObject($0)["id"] as! String }).isSuperset(of: shadowIDs)
        }.filter { shadowIDs.contains(try! jsonObject($0)["id"] as! String) }
        let shadowedIDs = try shadowRecords.map { try jsonObject($0)["id"] as! String }
        #expect(Set(shadowedIDs) == shadowIDs && shadowedIDs.count == shadowIDs.count, "exactly one shadow record per event")
        #expect(shadowRecords.allSatisfy { header($0, "weir-route") == "shadow" && header($0, "weir-version") == "1.1.0" })

        // Promote: the shadow becomes the primary.
        try send(cluster, ControlMessage(action: .promote, model: "fraud", sequence: 4))
        try applied("the promotion", sequence: 4)
        try produce(cluster, events(6_600..<7_000))
        #expect(try answered(6_600..<7_000).values.allSatisfy { header($0, "weir-version") == "1.1.0" && header($0, "weir-route") == "primary" })

        // A candidate that fails on half the events is rolled back by every worker on its own.
        try send(cluster, deploy(failing, .canary, percent: 50, sequence: 5))
        try applied("the failing canary", sequence: 5)
        try produce(cluster, events(7_000..<9_000))
        let rollbacks = try status.wait(for: "automatic rollbacks on both workers") { records in
            Set(try statuses(records).filter { $0.reason.hasPrefix("automatic rollback of 1.2.0") }.map(\.worker)) == ["worker-a", "worker-b"]
        }
        let rollback = try statuses(rollbacks).first { $0.reason.hasPrefix("automatic rollback") }!
        #expect(rollback.reason.contains("model-error share") && rollback.active == "1.1.0" && rollback.candidate == nil, "\(rollback.reason)")
        try produce(cluster, events(9_000..<9_400))
        #expect(try answered(9_000..<9_400).values.allSatisfy { header($0, "weir-version") == "1.1.0" })
        try waitFor("everything answered", timeoutSeconds: 40) { one.answered + two.answered >= 9_400 }
        try stopBoth(one, two)
        let deadLetters = try readTopic(cluster, "dead-letters")
        #expect(!deadLetters.isEmpty && deadLetters.allSatisfy { header($0, "weir-error") == "model-error" && header($0, "weir-version") == "1.2.0" })
        #expect(one.worker.metrics.automaticRollbackTotal.load(ordering: .relaxed) == 1)
        // Nothing lost: every event has exactly one answer (prediction or dead letter).
        let answeredIDs = try readTopic(cluster, "predictions").map { try jsonObject($0)["id"] as! String }
            + deadLetters.map { record in
                let text = String(decoding: record.value!, as: UTF8.self)
                return String(text.dropFirst(7).prefix { $0 != "\"" })
            }
        // The two workers keep their partitions throughout (no member joins or leaves after the
        // start), so at-least-once repeats nothing here: exactly one answer per event.
        #expect(Set(answeredIDs) == Set((0..<9_400).map { "evt-\($0)" }))
        #expect(answeredIDs.count == 9_400, "\(answeredIDs.count - Set(answeredIDs).count) events answered twice")
    }

    @Test func aRestartedWorkerComesBackOnTheVersionTheTopicSays() throws {
        defer { bundles.remove() }
        let v2 = try bundles.make("1.1.0")
        let cluster = try cluster()
        defer { cluster.stopCheckingClients() }
        let client = client(cluster)
        // History: a forged deploy (ignored), then v2 as a replace, then a pause and a resume.
        let forged = try deploy(v2, sequence: 1)
        try client.sendRaw(key: Array("fraud".utf8), value: forged.encoded(), headers: [(ControlSignature.headerName, "hmac-sha256=" + String(repeating: "0", count: 64))])
        try client.send(try client.prepare(try deploy(v2)))
        try client.send(try client.prepare(ControlMessage(action: .pause, model: "fraud", sequence: 0)))
        try client.send(try client.prepare(ControlMessage(action: .resume, model: "fraud", sequence: 0)))
        let running = try RunningWorker(settings: settings(cluster, worker: "worker-a", group: "control-\(UUID().uuidString)"), bundle: base)
        try running.waitUntilReady()
        #expect(running.worker.servingVersions.primary == "1.1.0")
        let start = try Status(try #require(plainStatus(readTopic(cluster, "status", partitions: 1)).first))
        #expect(start.reason == "started" && start.active == "1.1.0" && start.state == "serving")
        try produce(cluster, events(0..<100))
        try waitFor("events answered") { running.answered >= 100 }
        // A rollback the topic says now reaches the running worker too, and survives a restart.
        try client.send(try client.prepare(ControlMessage(action: .rollback, model: "fraud", sequence: 0)))
        try waitFor("the rollback applied") { running.worker.servingVersions.primary == "1.0.0" }
        try running.stop()
        let history = try client.history()
        // Signed messages only; the rollback returns to each worker's own --model, so it names none.
        #expect(history.map(\.action) == [.deploy, .pause, .resume, .rollback] && history.last?.bundle == nil,
                "\(history.map { "\($0.action) \($0.version ?? "-")" })")
        let versions = try readTopic(cluster, "predictions").compactMap { header($0, "weir-version") }
        #expect(Set(versions) == ["1.1.0"])

        // Restarted with a tight inference-time bound: a canary past it is rolled back on its own.
        var strict = settings(cluster, worker: "worker-a", group: "control-\(UUID().uuidString)")
        strict.rollbackMaxP99Ms = 0.001
        strict.rollbackMinEvents = 50
        strict.batchMaxEvents = 32
        let again = try RunningWorker(settings: strict, bundle: base)
        try again.waitUntilReady()
        #expect(again.worker.servingVersions.primary == "1.0.0")
        try client.send(try client.prepare(try deploy(v2, .canary, percent: 50)))
        try waitFor("the canary applied") { again.worker.servingVersions.candidate == "1.1.0" }
        try produce(cluster, events(100..<2_100))
        try waitFor("the automatic rollback") { again.worker.metrics.automaticRollbackTotal.load(ordering: .relaxed) == 1 }
        #expect(again.worker.servingVersions.candidate == nil)
        try again.stop()
        let last = try Status(try #require(plainStatus(readTopic(cluster, "status", partitions: 1)).last))
        #expect(last.reason.hasPrefix("automatic rollback of 1.1.0: p99 batch inference time") && last.candidate == nil, "\(last.reason)")
    }

    @Test func theControlCommandSignsSendsAndPrintsTheSequence() throws {
        defer { bundles.remove() }
        let v2 = try bundles.make("1.1.0")
        let cluster = try cluster()
        defer { cluster.stopCheckingClients() }
        let weir = builtProduct("weir").path
        let common = ["--brokers", cluster.bootstrapServers, "--topic", "control", "--key-file", keyFile.path]
        let deployed = try run([weir, "control", "deploy", "--bundle", v2.path, "--strategy", "canary", "--percent", "10"] + common)
        #expect(deployed.status == 0, "\(deployed.errors)")
        #expect(deployed.output == "sent deploy fraud 1.1.0 (canary 10.0%) to control with sequence 1\n")
        let promoted = try run([weir, "control", "promote", "--model", "fraud"] + common)
        #expect(promoted.output == "sent promote fraud 1.1.0 to control with sequence 2\n", "\(promoted.errors)")
        let history = try client(cluster).history()
        #expect(history.map(\.action) == [.deploy, .promote])
        #expect(history[0].sha256 == ModelBundle.identity(of: v2) && history[0].bundle == "file://" + v2.path)
        #expect(history[1].version == "1.1.0" && history[1].sha256 == history[0].sha256, "promote names the candidate it ends on")

        for (arguments, expected) in [
            (["explode", "--model", "fraud"] + common, "'explode' is not an action"),
            (["deploy", "--bundle", v2.path, "--strategy", "canary"] + common, "--percent"),
            (["deploy", "--bundle", "/nonexistent"] + common, "--bundle: /nonexistent/manifest.json"),
            (["pause"] + common, "--model: name the model to pause"),
            (["pause", "--model", "fraud", "--brokers", cluster.bootstrapServers, "--topic", "control", "--key-file", "/nonexistent/key"],
             "--key-file: control.key-file: cannot read /nonexistent/key"),
        ] {
            let result = try run([weir, "control"] + arguments)
            let lines = result.errors.split(separator: "\n").filter { !$0.hasPrefix("%") }
            #expect(result.status != 0 && lines.count == 1 && result.errors.contains(expected),
                    "weir control \(arguments.prefix(2)) -> \(result.status): \(result.errors)")
        }
        #expect(try client(cluster).history().count == 2, "refused commands sent nothing")
    }

    @Test func replayRefusesAKnownManifestNamedUnderAnotherVersion() throws {
        defer { bundles.remove() }
        let v2 = try bundles.make("1.1.0")
        let cluster = try cluster()
        defer { cluster.stopCheckingClients() }
        // Signed, but it names the running bundle's manifest as 1.1.0: refused live, and on replay too.
        var mislabelled = try deploy(v2, sequence: 1)
        mislabelled.sha256 = base.id
        try client(cluster).send(mislabelled)
        let running = try RunningWorker(settings: settings(cluster, worker: "worker-a", group: "control-\(UUID().uuidString)"), bundle: base)
        try running.waitUntilReady()
        try running.stop()
        let start = try Status(try #require(plainStatus(readTopic(cluster, "status", partitions: 1)).first))
        #expect(start.reason == "started" && start.active == "1.0.0", "the start record says \(start.active)")
        #expect(running.log.lines.withLock { $0 }.contains { $0.contains("is the manifest of 1.0.0, not 1.1.0") })
    }
}
