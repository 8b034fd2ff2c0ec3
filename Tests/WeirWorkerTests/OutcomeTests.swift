import CAllocationCounter
import Foundation
import Testing
import WeirCodec
import WeirControl
import WeirDrift
import WeirKafka
import WeirTestSupport
@testable import WeirWorker

/// The held-out payments rows as events (`h<row>` ids, `r<row>` for the second pass) and their labels.
struct LabelledEvents {
    let events: [(id: String, key: [UInt8], value: [UInt8])]
    let labels: [String: Int]

    init(passes: Int = 2) throws {
        let lines = try String(contentsOf: holdoutCSV, encoding: .utf8).split(separator: "\n")
        let header = lines[0].split(separator: ",").map(String.init)
        var events = [(id: String, key: [UInt8], value: [UInt8])]()
        var labels = [String: Int]()
        for pass in 0..<passes {
            for (row, line) in lines.dropFirst().enumerated() {
                let cells = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
                let id = (pass == 0 ? "h" : "r") + String(row)
                var fields = ["\"id\":\"\(id)\""]
                for (name, cell) in zip(header, cells) where name != "id" && name != "label" {
                    fields.append(name.hasPrefix("f") ? "\"\(name)\":\(cell)" : "\"\(name)\":\"\(cell)\"")
                }
                events.append((id, Array("k\(row)-\(pass)".utf8), Array(("{" + fields.joined(separator: ",") + "}").utf8)))
                labels[id] = Int(cells.last!)!
            }
        }
        self.events = events
        self.labels = labels
    }
}

@Suite(.serialized, .timeLimit(.minutes(4))) struct OutcomeTests {
    let bundles = TestBundles()
    let key = Array("outcome-test-key-of-at-least-32-bytes".utf8)
    let keyFile: URL

    init() throws {
        try FileManager.default.createDirectory(at: bundles.root, withIntermediateDirectories: true)
        keyFile = bundles.root.appendingPathComponent("control.key")
        try Data(key + [0x0A]).write(to: keyFile)
    }

    func settings(_ cluster: EmbeddedCluster, rule: String) throws -> WorkerSettings {
        var settings = testSettings(cluster, group: "outcomes-\(UUID().uuidString)")
        settings.model = paymentsBundleURL.path
        settings.workerID = "worker-o"
        settings.controlTopic = "control"
        settings.controlKeyFile = keyFile.path
        settings.statusTopic = "status"
        settings.shadowTopic = "shadow"
        settings.feedbackTopic = "feedback"
        settings.feedbackWindowOutcomes = 250
        settings.promoteWhen = try PromotionRule(parsing: rule)
        return settings
    }

    func deploy(_ cluster: EmbeddedCluster, _ directory: URL, _ kind: RolloutMode, percent: Double? = nil) throws {
        let manifest = try JSONDecoder().decode(BundleManifest.self, from: Data(contentsOf: directory.appendingPathComponent("manifest.json")))
        let client = ControlClient(brokers: cluster.bootstrapServers, topic: "control", key: key)
        try client.send(try client.prepare(ControlMessage(action: .deploy, model: "payments", version: manifest.version,
                                                         bundle: directory.absoluteString, sha256: ModelBundle.identity(of: directory),
                                                         strategy: RolloutStrategy(kind: kind, percent: percent), sequence: 0)))
    }

    /// The payments bundle with its labels swapped, as 1.2.0: a candidate that is wrong where the
    /// primary is right.
    func mislabelledCandidate() throws -> URL {
        let directory = bundles.root.appendingPathComponent("payments-1.2.0")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        for file in ["model.onnx", "reference.json"] {
            try FileManager.default.copyItem(at: paymentsBundleURL.appendingPathComponent(file), to: directory.appendingPathComponent(file))
        }
        var manifest = try JSONDecoder().decode(BundleManifest.self, from: Data(contentsOf: paymentsBundleURL.appendingPathComponent("manifest.json")))
        manifest.version = "1.2.0"
        manifest.outputs.labels = ["1", "0"]
        try BundlePackager.write(manifest, to: directory)
        return directory
    }

    func outcomeWindows(_ records: [ConsumedRecord]) -> [[String: Any]] {
        records.compactMap { try? jsonObject($0) }.filter { $0["type"] as? String == "outcome-window" }
    }

    func statusReasons(_ records: [ConsumedRecord]) -> [String] {
        records.compactMap { try? jsonObject($0) }.filter { $0["type"] == nil }.compactMap { $0["reason"] as? String }
    }

    /// Canary at 50%: outcomes arrive by id, each route's windows report accuracy, log loss and AUC
    /// with intervals, and the sequential test promotes the better candidate through the control
    /// topic, saying why in the status record.
    @Test func aBetterCanaryIsPromotedOnItsOutcomes() throws {
        defer { bundles.remove() }
        let cluster = try EmbeddedCluster(brokers: 1, topics: [("events", 4), ("predictions", 4), ("dead-letters", 4), ("shadow", 4),
                                                                ("status", 1), ("control", 1), ("feedback", 2)])
        defer { cluster.stopCheckingClients() }
        let running = try RunningWorker(settings: try settings(cluster, rule: "accuracy within 0.05 at 95% after 300"),
                                        bundle: try ModelBundle(directory: paymentsBundleURL))
        try running.waitUntilReady()
        let status = try TopicFollower(cluster, "status", partitions: 1)
        defer { status.stop() }
        let labelled = try LabelledEvents()
        try produce(cluster, labelled.events.prefix(100).map { ($0.key, $0.value, []) })  // warm-up events
        try waitFor("warm-up events answered") { running.answered >= 100 }
        try deploy(cluster, candidateBundleURL, .canary, percent: 50)
        try waitFor("the canary applied") { running.worker.servingVersions.candidate == "1.1.0" }
        let scored = Array(labelled.events.dropFirst(100))
        try produce(cluster, scored.map { ($0.key, $0.value, []) })
        try waitFor("every event answered", timeoutSeconds: 60) { running.answered >= labelled.events.count }
        // Outcomes later, in another order, with the labels as numbers.
        try produce(cluster, topic: "feedback", scored.reversed().map { event in
            (nil, Array("{\"id\":\"\(event.id)\",\"label\":\(labelled.labels[event.id]!)}".utf8), [])
        })
        let records = try status.wait(for: "the automatic promotion", timeoutSeconds: 60) { records in
            statusReasons(records).contains { $0.hasPrefix("applied promote") && $0.contains("outcome test: canary accuracy is not worse") }
        }
        try waitFor("1.1.0 serving as primary") { running.worker.servingVersions == ("1.1.0", nil) }
        let windows = outcomeWindows(records)
        let routes = Set(windows.compactMap { $0["route"] as? String })
        #expect(routes.isSuperset(of: ["primary", "canary"]))
        for window in windows {
            let accuracy = try #require(window["accuracy"] as? Double)
            let interval = try #require(window["accuracy_ci"] as? [Double])
            #expect(interval[0] <= accuracy && accuracy <= interval[1])
            #expect(accuracy > 0.8)
            #expect(window["auc"] is Double && window["log_loss"] is Double)
        }
        let exposition = String(decoding: running.worker.metrics.exposition(), as: UTF8.self)
        #expect(metricValues(exposition, "weir_outcome_accuracy").contains { $0.labels.contains("route=\"canary\"") })
        #expect(running.worker.metrics.outcomeTotal.load(ordering: .relaxed) > 600)
        try running.stop(timeoutSeconds: 25)
    }

    /// A shadow whose labels are wrong: its windows carry its paired agreement with the primary on
    /// the same rows, and the test rolls it back.
    @Test func aWorseShadowIsRolledBackWithPairedAgreement() throws {
        defer { bundles.remove() }
        let bad = try mislabelledCandidate()
        let cluster = try EmbeddedCluster(brokers: 1, topics: [("events", 4), ("predictions", 4), ("dead-letters", 4), ("shadow", 4),
                                                                ("status", 1), ("control", 1), ("feedback", 1)])
        defer { cluster.stopCheckingClients() }
        var settings = try settings(cluster, rule: "accuracy within 0.01 after 100")
        settings.feedbackJoin = .key
        let running = try RunningWorker(settings: settings, bundle: try ModelBundle(directory: paymentsBundleURL))
        try running.waitUntilReady()
        let status = try TopicFollower(cluster, "status", partitions: 1)
        defer { status.stop() }
        let labelled = try LabelledEvents(passes: 1)
        try produce(cluster, labelled.events.prefix(100).map { ($0.key, $0.value, []) })
        try waitFor("warm-up events answered") { running.answered >= 100 }
        try deploy(cluster, bad, .shadow)
        try waitFor("the shadow applied") { running.worker.servingVersions.candidate == "1.2.0" }
        let scored = Array(labelled.events.dropFirst(100).prefix(1_000))
        try produce(cluster, scored.map { ($0.key, $0.value, []) })
        try waitFor("every event answered", timeoutSeconds: 60) { running.answered >= 1_100 }
        // Joined by key: the feedback record's key is the input record's; the label as text.
        try produce(cluster, topic: "feedback", scored.map { event in
            (event.key, Array("{\"label\":\"\(labelled.labels[event.id]!)\"}".utf8), [])
        })
        let records = try status.wait(for: "the automatic rollback", timeoutSeconds: 60) { records in
            statusReasons(records).contains { $0.hasPrefix("applied rollback") && $0.contains("outcome test: shadow accuracy is worse") }
        }
        try waitFor("the shadow gone") { running.worker.servingVersions == ("1.0.0", nil) }
        let shadowWindows = outcomeWindows(records).filter { $0["route"] as? String == "shadow" }
        let first = try #require(shadowWindows.first)
        #expect(try #require(first["agreement"] as? Double) < 0.3)
        #expect(try #require(first["accuracy"] as? Double) < 0.3)
        #expect(first["version"] as? String == "1.2.0")
        try running.stop(timeoutSeconds: 25)
    }

    /// A regression metric for a classifier stops the worker at start, naming the setting.
    @Test func aRuleOfTheWrongTaskIsRefusedAtStart() throws {
        let cluster = try EmbeddedCluster(brokers: 1, topics: [("events", 1), ("predictions", 1), ("dead-letters", 1), ("feedback", 1)])
        defer { cluster.stopCheckingClients() }
        var settings = testSettings(cluster)
        settings.feedbackTopic = "feedback"
        settings.promoteWhen = try PromotionRule(parsing: "mae within 0.1")
        let running = try RunningWorker(settings: settings, bundle: try ModelBundle(directory: paymentsBundleURL))
        #expect { try running.waitStopped() } throws: {
            "\($0)".contains("control.promote-when: mae is not a classification metric; payments is a classification model, use accuracy or log-loss")
        }
    }

    /// The pending store against a dictionary under random remembers, takes, duplicates, evictions
    /// and expiry; no allocation per prediction.
    @Test func pendingPredictionsMatchAReferenceAndDoNotAllocate() throws {
        let store = PendingPredictions(capacity: 1_000, width: 1)
        // The reference: live entries by hash, and the ring of slots in write order (a slot leaves
        // the ring when a write needs room, or when expiry passes it).
        var reference = [UInt64: (answer: Float, born: Int64, write: Int)]()
        var ring = [(hash: UInt64, write: Int, born: Int64)]()
        var ringStart = 0
        var random = SplitMix64(seed: 7)
        var now: Int64 = 0
        var writes = 0
        func leave(_ slot: (hash: UInt64, write: Int, born: Int64)) {
            if reference[slot.hash]?.write == slot.write { reference[slot.hash] = nil }
        }
        for step in 0..<50_000 {
            now += 1
            let hash = random.next() % 3_000
            if random.next() % 3 == 0 {
                let found = store.take(hash: hash)
                let expected = reference.removeValue(forKey: hash)
                #expect((found != nil) == (expected != nil), "step \(step)")
                if let found, let expected { #expect(store.answers[found.slot] == expected.answer) }
            } else {
                if ring.count - ringStart == 1_000 {
                    leave(ring[ringStart])
                    ringStart += 1
                }
                var answer = Float(step)
                store.remember(hash: hash, route: 0, epoch: 0, answer: &answer, nowMs: now)
                reference[hash] = (answer, now, writes)
                ring.append((hash, writes, now))
                writes += 1
            }
            if step % 5_000 == 4_999 {
                store.expire(olderThan: now - 500)
                while ringStart < ring.count, reference[ring[ringStart].hash]?.write != ring[ringStart].write || ring[ringStart].born < now - 500 {
                    leave(ring[ringStart])
                    ringStart += 1
                }
            }
            #expect(store.count == reference.count, "step \(step)")
        }
        var held = 0
        for (hash, entry) in reference {
            let found = try #require(store.take(hash: hash))
            #expect(store.answers[found.slot] == entry.answer)
            held += 1
        }
        #expect(held > 0 && store.count == 0)
        var answer: Float = 0.5
        weir_allocation_counting(1)
        for index in 0..<10_000 {
            store.remember(hash: UInt64(index) &* 0x9E37_79B9, route: 0, epoch: 0, answer: &answer, nowMs: now)
            _ = store.take(hash: UInt64(index / 2) &* 0x9E37_79B9)
        }
        weir_allocation_counting(0)
        #expect(weir_allocations() == 0, "\(String(cString: weir_first_allocation_frame(1)))")
        #expect(store.bytesPerPrediction <= 48)
    }
}

@Suite struct SequentialTestTests {
    /// At the margin's edge (the candidate exactly `margin` worse), looking after every 50 outcomes
    /// up to 5,000 promotes in at most about α of runs: the interval holds at every look at once.
    @Test func repeatedLooksKeepTheErrorRate() {
        var random = SplitMix64(seed: 11)
        var promoted = 0, rolledBack = 0
        let runs = 200
        for _ in 0..<runs {
            var a = RunningMoments(), b = RunningMoments()
            for look in 1...100 {
                for _ in 0..<50 {
                    a.add(random.nextUnit() < 0.90 ? 1 : 0)
                    b.add(random.nextUnit() < 0.88 ? 1 : 0)  // 0.02 worse: exactly the margin
                }
                guard look >= 2, let verdict = SequentialTest.compare(a: a, b: b, margin: 0.02, alpha: 0.05, minimum: 100) else { continue }
                if case .promote = verdict { promoted += 1; break }
                if case .rollBack = verdict { rolledBack += 1; break }
            }
        }
        #expect(Double(promoted) / Double(runs) <= 0.06, "\(promoted) of \(runs) runs promoted a candidate at the margin")
        // A candidate clearly better decides to promote; one clearly worse to roll back.
        var better = RunningMoments(), base = RunningMoments(), worse = RunningMoments()
        for _ in 0..<3_000 {
            base.add(random.nextUnit() < 0.85 ? 1 : 0)
            better.add(random.nextUnit() < 0.90 ? 1 : 0)
            worse.add(random.nextUnit() < 0.75 ? 1 : 0)
        }
        if case .promote? = SequentialTest.compare(a: base, b: better, margin: 0.01, alpha: 0.05, minimum: 100) {} else {
            Issue.record("a better candidate was not promoted")
        }
        if case .rollBack? = SequentialTest.compare(a: base, b: worse, margin: 0.01, alpha: 0.05, minimum: 100) {} else {
            Issue.record("a worse candidate was not rolled back")
        }
    }

    @Test func rulesParseAndNameTheirMistakes() throws {
        let rule = try PromotionRule(parsing: "log-loss within 0.02 at 99% after 500")
        #expect(rule.metric == .logLoss && rule.margin == 0.02 && rule.confidence == 0.99 && rule.minimumOutcomes == 500)
        #expect(try PromotionRule(parsing: "accuracy") == PromotionRule(parsing: "accuracy within 0 at 95% after 1000"))
        #expect(throws: PromotionRule.ParseError.self) { try PromotionRule(parsing: "auc within 0.1") }
        #expect(throws: PromotionRule.ParseError.self) { try PromotionRule(parsing: "accuracy at 120%") }
        #expect(throws: SettingsError.self) {
            try SettingsLoader.load(file: nil, environment: [:], arguments: ["--control-promote-when", "accuracy after 5"])
        }
        #expect(throws: SettingsError.self) {
            try SettingsLoader.load(file: nil, environment: [:], arguments: ["--control-promote-when", "accuracy"])  // no feedback-topic
        }
    }
}
