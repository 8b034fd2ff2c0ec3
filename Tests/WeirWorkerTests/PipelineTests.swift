import Foundation
import Testing
import WeirModel
import WeirCodec
import WeirControl
import WeirKafka
import WeirTestSupport
import WeirWorker

@Suite(.serialized, .timeLimit(.minutes(3))) struct PipelineTests {
    let bundle: ModelBundle

    init() throws { bundle = try ModelBundle(directory: demoBundleURL) }

    /// The model's scores for one event, decoded and run alone (batch of one).
    func directScores(_ payload: [UInt8]) throws -> [Float] {
        let decoder = EventDecoder(schema: FeatureSchema(names: bundle.manifest.inputs.map(\.name)))
        var row = [Float](repeating: 0, count: bundle.manifest.inputs.count)
        let result = payload.withUnsafeBytes { bytes in row.withUnsafeMutableBufferPointer { decoder.decode(bytes, into: $0.baseAddress!) } }
        if case .failure(let failure) = result { throw TestFailure("direct decode failed: \(failure)") }
        return try bundle.model.run(row)[bundle.manifest.outputs.scores!]!.floats!
    }

    @Test func everyEventGetsExactlyOnePredictionEqualToTheModel() throws {
        let cluster = try makeCluster()
        defer { cluster.stopCheckingClients() }
        let count = 3_000
        let events = (0..<count).map { (key: SyntheticEvents.key($0), value: Optional(SyntheticEvents.event($0)),
                                         headers: [("traceparent", "00-\(String(repeating: "a", count: 32))-\($0)-01")]) }
        try produce(cluster, events)
        let settings = testSettings(cluster)
        let running = try RunningWorker(settings: settings, bundle: bundle)
        try waitFor("3000 answers") { running.answered >= count }
        try running.stop()

        let predictions = try readTopic(cluster, "predictions")
        #expect(predictions.count == count)
        var byID = [String: ConsumedRecord]()
        for record in predictions {
            let id = try jsonObject(record)["id"] as? String ?? ""
            #expect(byID[id] == nil, "duplicate prediction for \(id)")
            byID[id] = record
        }
        var worst: Float = 0
        for index in 0..<count {
            guard let record = byID["evt-\(index)"] else {
                Issue.record("no prediction for evt-\(index)")
                continue
            }
            let object = try jsonObject(record)
            let scores = (object["scores"] as? [Double] ?? []).map(Float.init)
            let expected = try directScores(SyntheticEvents.event(index))
            #expect(scores.count == expected.count)
            for (got, want) in zip(scores, expected) { worst = max(worst, abs(got - want)) }
            #expect(object["model"] as? String == "fraud")
            #expect(object["version"] as? String == "1.0.0")
            let label = object["label"] as? Int
            #expect(label == (expected[1] > expected[0] ? 1 : 0))
            let source = object["source"] as? [String: Any]
            #expect(source?["topic"] as? String == "events")
            #expect(record.key == SyntheticEvents.key(index))
            #expect(header(record, "weir-model") == "fraud")
            #expect(header(record, "weir-version") == "1.0.0")
            #expect(header(record, "weir-route") == "primary")
            #expect(header(record, "traceparent")?.hasSuffix("-\(index)-01") == true)
            #expect(object["latency_us"] is Int)
        }
        #expect(worst <= 1e-5, "largest score difference from running the model directly: \(worst)")
        // Everything answered is committed: the group resumes at the end of every partition.
        let committed = try committedOffsets(cluster, group: settings.group)
        #expect(committed == (try highWatermarks(cluster)))
    }

    @Test func badInputsLandInTheDeadLetterTopicWithTheirCodes() throws {
        let cluster = try makeCluster()
        defer { cluster.stopCheckingClients() }
        var records = [(key: [UInt8]?, value: [UInt8]?, headers: [(String, String)])]()
        var expectedCodes = [String: String]()  // value prefix -> code
        let badValues: [(String, [UInt8])] = [
            ("malformed-json", Array("{\"id\":\"bad-1\",\"f0\":1,".utf8)),
            ("malformed-json", Array("{\"id\":\"bad-2\",\"f0\":NaN}".utf8)),
            ("missing-feature", SyntheticEvents.badEvent(3, kind: "missing-feature")),
            ("not-a-number", SyntheticEvents.badEvent(4, kind: "not-a-number")),
            ("not-a-number", Array(String(decoding: SyntheticEvents.event(5), as: UTF8.self)
                .replacingOccurrences(of: "\"f2\":", with: "\"f2\":1e39,\"ignored\":").utf8)),
            ("too-large", SyntheticEvents.badEvent(6, kind: "too-large", maxBytes: 4096)),
        ]
        for index in 0..<600 {
            if index % 100 == 50 {
                let (code, value) = badValues[(index / 100) % badValues.count]
                records.append((Array("bad-\(index)".utf8), value, [("trace", "t\(index)")]))
                expectedCodes["bad-\(index)"] = code
            } else if index % 100 == 75 {
                records.append((Array("gone-\(index)".utf8), nil, []))
            } else {
                records.append((SyntheticEvents.key(index), SyntheticEvents.event(index), []))
            }
        }
        try produce(cluster, records)
        var settings = testSettings(cluster)
        settings.inputMaxBytes = 4096
        let running = try RunningWorker(settings: settings, bundle: bundle)
        try waitFor("every event answered") { running.answered >= records.count }
        try running.stop()

        let metrics = running.worker.metrics
        let consumed = metrics.consumedTotal.load(ordering: .relaxed)
        let predicted = metrics.predictionTotal.load(ordering: .relaxed)
        let dead = metrics.deadLetterTotal.load(ordering: .relaxed)
        let tombstones = metrics.tombstoneTotal.load(ordering: .relaxed)
        #expect(consumed == records.count)
        #expect(consumed == predicted + dead + tombstones)
        #expect(dead == 6)
        #expect(tombstones == 6)
        let deadLetters = try readTopic(cluster, "dead-letters")
        #expect(deadLetters.count == 6)
        for record in deadLetters {
            let key = record.keyString ?? ""
            #expect(header(record, "weir-error") == expectedCodes[key], "\(key)")
            let original = records.first { $0.key == record.key }!
            #expect(record.value == original.value, "dead letter value must be the input byte for byte")
            #expect(header(record, "weir-source-topic") == "events")
            #expect(header(record, "weir-source-partition") != nil)
            #expect(header(record, "weir-source-offset").flatMap { Int64($0) } != nil)
            #expect(header(record, "weir-version") == "1.0.0")
            #expect(!(header(record, "weir-error-message") ?? "").isEmpty)
            #expect(header(record, "trace") == "t\(key.dropFirst(4))")
        }
        let message = deadLetters.first { header($0, "weir-error") == "missing-feature" }.flatMap { header($0, "weir-error-message") }
        #expect(message?.contains("f7") == true, "the message names the field: \(message ?? "-")")
        #expect(try readTopic(cluster, "predictions").count == predicted)
        #expect(try committedOffsets(cluster, group: settings.group) == (try highWatermarks(cluster)))
        let text = String(decoding: metrics.exposition(), as: UTF8.self)
        #expect(metricSum(text, "weir_dead_letters_total", #"code="too-large""#, #"model="fraud""#, #"version="1.0.0""#, #"route="primary""#) == 1)
        #expect(text.contains("weir_tombstones_total 6"))
    }

    @Test func outputsKeepInputOrderPerPartitionAndARestartLosesNothing() throws {
        let cluster = try makeCluster()
        defer { cluster.stopCheckingClients() }
        let first = 2_000, second = 2_000
        try produce(cluster, (0..<first).map { (SyntheticEvents.key($0), SyntheticEvents.event($0), []) })
        let settings = testSettings(cluster)
        let one = try RunningWorker(settings: settings, bundle: bundle)
        try waitFor("the first half answered") { one.answered >= first }
        try one.stop()
        try produce(cluster, (first..<(first + second)).map { (SyntheticEvents.key($0), SyntheticEvents.event($0), []) })
        let two = try RunningWorker(settings: settings, bundle: bundle)
        try waitFor("the second half answered") { two.answered >= second }
        try two.stop()
        #expect(two.worker.metrics.consumedTotal.load(ordering: .relaxed) == second, "the restart resumes at the committed offsets")

        let predictions = try readTopic(cluster, "predictions")
        #expect(predictions.count == first + second)
        var lastOffset = [Int32: Int64]()
        var seen = Set<String>()
        for record in predictions.sorted(by: { ($0.partition, $0.offset) < ($1.partition, $1.offset) }) {
            let object = try jsonObject(record)
            let source = object["source"] as! [String: Any]
            let partition = Int32(source["partition"] as! Int)
            let offset = Int64(source["offset"] as! Int)
            _ = partition
            seen.insert(object["id"] as! String)
            // Keyed by the input key, so one input partition's events share an output partition
            // only per key; order is checked per input partition through the records' order below.
            lastOffset[partition] = max(lastOffset[partition] ?? -1, offset)
        }
        #expect(seen.count == first + second)
        // Per input partition, output order (by output offset within each output partition) follows input offsets.
        var perInput = [Int32: [(Int32, Int64, Int64)]]()  // input partition -> (output partition, output offset, input offset)
        for record in predictions {
            let source = try jsonObject(record)["source"] as! [String: Any]
            perInput[Int32(source["partition"] as! Int), default: []].append((record.partition, record.offset, Int64(source["offset"] as! Int)))
        }
        for (_, entries) in perInput {
            let byOutput = Dictionary(grouping: entries, by: { $0.0 })
            for (_, list) in byOutput {
                let inputOffsets = list.sorted { $0.1 < $1.1 }.map(\.2)
                #expect(inputOffsets == inputOffsets.sorted(), "outputs of one input partition keep input order")
            }
        }
    }

    @Test func twoWorkersShareTheLoadAndLoseNothing() throws {
        let cluster = try makeCluster()
        defer { cluster.stopCheckingClients() }
        var settings = testSettings(cluster)
        // Long enough for the embedded broker to finish the rebalance a leaving member starts, so
        // the member that stays can commit (the mock refuses commits until the group is stable).
        settings.shutdownTimeoutMs = 20_000
        var a = settings
        a.workerID = "worker-a"
        var b = settings
        b.workerID = "worker-b"
        let one = try RunningWorker(settings: a, bundle: bundle)
        let two = try RunningWorker(settings: b, bundle: bundle)
        try waitFor("both workers to own partitions", timeoutSeconds: 40) { one.worker.isReady && two.worker.isReady }
        let count = 4_000
        try produce(cluster, (0..<count).map { (SyntheticEvents.key($0), SyntheticEvents.event($0), []) })
        try waitFor("every event answered", timeoutSeconds: 40) { one.answered + two.answered >= count }
        // One after the other: the first leaves, committing on its way out, and its partitions move
        // to the second. The embedded broker fences the second member's generation when the first
        // leaves, so the second *loses* its own partitions (their uncommitted tail is answered again
        // after it rejoins, as at-least-once allows). Once it owns everything again it commits all it
        // answers: the test waits (bounded) for that, then stops it.
        let marks = try highWatermarks(cluster)
        try one.stop(timeoutSeconds: 25)
        try waitForCommitted(cluster, group: settings.group, marks)
        try two.stop(timeoutSeconds: 25)
        #expect(one.answered > 0 && two.answered > 0, "both workers did work: \(one.answered) and \(two.answered)")
        let ids = Set(try readTopic(cluster, "predictions").map { try jsonObject($0)["id"] as! String })
        #expect(ids.count == count)
        let committed = try committedOffsets(cluster, group: settings.group)
        #expect(committed == marks, "the last stop moved no offset back: committed \(committed.sorted { $0.key < $1.key }) high \(marks.sorted { $0.key < $1.key }) logs: \(one.log.lines.withLock { $0 }) \(two.log.lines.withLock { $0 })")
    }

    @Test func pausesWhenDeliveriesFallBehindAndStillAnswersEverything() throws {
        let cluster = try makeCluster()
        defer { cluster.stopCheckingClients() }
        let count = 3_000
        try produce(cluster, (0..<count).map { (SyntheticEvents.key($0), SyntheticEvents.event($0), []) })
        var settings = testSettings(cluster)
        settings.maxInFlightEvents = 300
        settings.batchMaxEvents = 64
        // Slow acknowledgements: produced outputs wait ~150 ms each round trip.
        try cluster.setRoundTripDelay(150)
        let running = try RunningWorker(settings: settings, bundle: bundle)
        try waitFor("every event answered", timeoutSeconds: 60) { running.answered >= count }
        try running.stop()
        let lines = running.log.lines.withLock { $0 }
        #expect(lines.contains { $0.contains("pausing") }, "the worker paused its partitions: \(lines)")
        // The bound holds to within one poll: the worker pauses after the poll that reaches it.
        let peak = running.worker.metrics.inFlightPeak.load(ordering: .relaxed)
        #expect(peak >= settings.maxInFlightEvents, "the bound was reached: peak \(peak)")
        #expect(peak <= settings.maxInFlightEvents + settings.batchMaxEvents,
                "in flight at most \(settings.maxInFlightEvents) + one poll of \(settings.batchMaxEvents): peak \(peak)")
        #expect(Set(try readTopic(cluster, "predictions").map { try jsonObject($0)["id"] as! String }).count == count)
    }

    /// librdkafka 2.0.2 stops fetching while its prefetch queue is over `queued.max.messages.kbytes`
    /// and looks again up to a second later; the worker wakes it as soon as the queue runs dry with
    /// messages left in the partitions. With a tiny prefetch bound every fetch fills the queue: the
    /// worker must wake the fetcher, and answers everything. (How much time the wake-ups save is a
    /// measurement, not a test: 6,000 events took 8-16 s without them, under 1.5 s with them.)
    @Test func aFullPrefetchQueueMakesTheWorkerWakeTheFetcher() throws {
        let cluster = try makeCluster()
        defer { cluster.stopCheckingClients() }
        let count = 6_000
        try produce(cluster, (0..<count).map { (SyntheticEvents.key($0), SyntheticEvents.event($0), []) })
        var settings = testSettings(cluster)
        settings.kafka["consumer.queued.max.messages.kbytes"] = "32"
        settings.kafka["consumer.max.partition.fetch.bytes"] = "32768"
        // Commits go through the broker's thread too and would wake the fetcher themselves.
        settings.commitIntervalMs = 10_000
        let running = try RunningWorker(settings: settings, bundle: bundle)
        try running.waitUntilReady()
        let started = Date()
        try waitFor("every event answered", timeoutSeconds: 60) { running.answered >= count }
        let seconds = Date().timeIntervalSince(started)
        try running.stop()
        let wakeups = running.worker.metrics.fetcherWakeupTotal.load(ordering: .relaxed)
        print("full prefetch queue: \(count) events in \(String(format: "%.2f", seconds)) s with \(wakeups) wake-ups")
        #expect(wakeups > 0, "the worker woke the fetcher")
        let text = String(decoding: running.worker.metrics.exposition(), as: UTF8.self)
        #expect(text.contains("weir_fetcher_wakeups_total \(wakeups)"))
    }

    /// A batch stays open across polls until its oldest event has waited `batch.max-delay-ms`:
    /// the first event is consumed alone and not answered; four more, consumed by later polls, join
    /// it; all five leave in one batch. (Closing per poll would answer the first at once and make
    /// two batches; closing on size never happens with room for 10,000.)
    @Test func aBatchClosesWhenItsOldestEventHasWaitedTheDelay() throws {
        let cluster = try makeCluster()
        defer { cluster.stopCheckingClients() }
        var settings = testSettings(cluster)
        settings.batchMaxEvents = 10_000
        settings.batchMaxDelayMs = 4_000
        let running = try RunningWorker(settings: settings, bundle: bundle)
        try running.waitUntilReady()
        let metrics = running.worker.metrics
        try produce(cluster, [(SyntheticEvents.key(0), SyntheticEvents.event(0), [])])
        try waitFor("the first event consumed", timeoutSeconds: 10) { metrics.consumedTotal.load(ordering: .relaxed) == 1 }
        #expect(running.answered == 0, "an event consumed alone waits for the delay")
        try produce(cluster, (1..<5).map { (SyntheticEvents.key($0), SyntheticEvents.event($0), []) })
        try waitFor("5 answers", timeoutSeconds: 20) { running.answered >= 5 }
        try running.stop()
        let text = String(decoding: metrics.exposition(), as: UTF8.self)
        #expect(metricValue(text, "weir_batch_size_events_count") == 1, "one batch")
        #expect(metricValue(text, "weir_batch_size_events_sum") == 5, "of five events")
    }

    @Test func metricsHealthAndReadinessEndpoints() throws {
        let cluster = try makeCluster()
        defer { cluster.stopCheckingClients() }
        let running = try RunningWorker(settings: testSettings(cluster), bundle: bundle)
        let server = try StatusServer(host: "127.0.0.1", port: 0, metrics: { [metrics = running.worker.metrics] in metrics.exposition() },
                                      ready: { [worker = running.worker] in worker.isReady })
        defer { server.stop() }
        func get(_ path: String) throws -> (Int, String) {
            let result = try WeirTestSupport.run(["curl", "-s", "-o", "-", "-w", "\n%{http_code}", "http://127.0.0.1:\(server.port)\(path)"])
            let lines = result.output.split(separator: "\n", omittingEmptySubsequences: false)
            return (Int(lines.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n"))
        }
        #expect(try get("/healthz").0 == 200)
        try running.waitUntilReady()
        #expect(try get("/readyz").0 == 200)
        try produce(cluster, (0..<500).map { (SyntheticEvents.key($0), SyntheticEvents.event($0), []) })
        try waitFor("500 answers") { running.answered >= 500 }
        // The lag gauges are refreshed once a second: wait (bounded) until all four read 0.
        var body = ""
        var status = 0
        try waitFor("lag 0 on every partition", timeoutSeconds: 10) {
            (status, body) = try get("/metrics")
            let lags = metricValues(body, "weir_consumer_lag")
            return lags.count == 4 && lags.allSatisfy { $0.value == 0 }
        }
        try running.stop()
        #expect(status == 200)
        #expect(metricValue(body, "weir_events_consumed_total") == 500)
        // Per model, version and route; executions apart from predictions (their ratio is the average batch).
        #expect(metricSum(body, "weir_predictions_total", #"model="fraud""#, #"version="1.0.0""#, #"route="primary""#) == 500)
        #expect(metricValue(body, "weir_batch_size_events_sum") == 500, "every event went through a batch")
        #expect(metricValue(body, "weir_event_latency_seconds_count") == 500, "a latency per delivered answer")
        let batches = metricValue(body, "weir_batch_size_events_count") ?? 0
        #expect(batches >= 2 && metricSum(body, "weir_inference_seconds_count", #"route="primary""#) == batches, "one model run per batch")
        #expect(metricSum(body, "weir_model_executions_total", #"model="fraud""#, #"route="primary""#) == batches)
        let info = metricValues(body, "weir_model_info")
        #expect(info.count == 1 && info.first?.value == 1, "\(info)")
        for label in ["route=\"primary\"", "version=\"1.0.0\"", "precision=\"auto\"", "kernels=\"\(KernelSet.best.name)\""] {
            #expect(info.first?.labels.contains(label) == true, "weir_model_info lacks \(label)")
        }
        #expect(try get("/nowhere").0 == 404)
    }
}
