import Foundation
import Testing
import WeirBatch
import WeirCodec
import WeirControl
import WeirKafka
import WeirModel
import WeirRegistry
import WeirTestSupport
import WeirWorker

let paymentsBundleURL = repositoryRoot.appendingPathComponent("models/payments")
let candidateBundleURL = repositoryRoot.appendingPathComponent("models/payments-candidate")
let holdoutCSV = repositoryRoot.appendingPathComponent("models/payments-candidate-training/holdout.csv")

/// A scratch directory removed when the test ends.
final class ScratchDirectory {
    let url: URL
    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("weir-batch-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(at: url) }
    func path(_ name: String) -> String { url.appendingPathComponent(name).path }
}

/// The JSON lines of a file, parsed.
func jsonLines(_ path: String) throws -> [[String: Any]] {
    guard FileManager.default.fileExists(atPath: path) else { return [] }
    return try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map { line in
        guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            throw TestFailure("not a JSON object: \(line)")
        }
        return object
    }
}

@Suite(.timeLimit(.minutes(3))) struct ScoreTests {
    /// Every line of a JSONL file is answered once: a prediction (in line order, with the scores
    /// the model gives its row) or a dead letter with serve's code and the line's text.
    @Test func everyLineIsAnsweredInOrderWithServeShapes() throws {
        let scratch = try ScratchDirectory()
        var lines = [String]()
        var expectedDead = [Int: String]()
        for index in 0..<3_000 {
            if index % 250 == 17 {
                let kind = SyntheticEvents.badKinds[(index / 250) % 3]  // not too-large: the file keeps it short
                lines.append(String(decoding: SyntheticEvents.badEvent(index, kind: kind), as: UTF8.self))
                expectedDead[lines.count] = kind
            } else {
                lines.append(String(decoding: SyntheticEvents.event(index), as: UTF8.self))
            }
            if index == 1_000 { lines.append("   ") }  // blank: skipped, but counted as a line
        }
        try (lines.joined(separator: "\n") + "\n").write(toFile: scratch.path("events.jsonl"), atomically: true, encoding: .utf8)
        let bundle = try ModelBundle(directory: paymentsBundleURL)
        var run = ScoreRun(bundle: bundle, input: .files([scratch.path("events.jsonl")], format: nil), output: .file(scratch.path("out.jsonl")))
        run.options.threads = 2
        run.options.recordsPerChunk = 100
        run.options.batchRows = 64
        let summary = try run.run()
        #expect(summary.scored == 3_000 - expectedDead.count)
        #expect(summary.deadLetters == expectedDead.count)
        let predictions = try jsonLines(scratch.path("out.jsonl"))
        let dead = try jsonLines(scratch.path("out.jsonl.dead-letters.jsonl"))
        #expect(predictions.count + dead.count == 3_000)
        // Lines in order; the blank line after index 1000 shifts later line numbers by one.
        var previous = 0
        for record in predictions {
            let source = try #require(record["source"] as? [String: Any])
            let line = try #require(source["line"] as? Int)
            #expect(line > previous)
            previous = line
            #expect(record["model"] as? String == "payments")
            #expect((record["scores"] as? [Double])?.count == 2)
        }
        for record in dead {
            let source = try #require(record["source"] as? [String: Any])
            let line = try #require(source["line"] as? Int)
            #expect(expectedDead[line] == record["error"] as? String, "line \(line)")
            #expect((record["value"] as? String)?.isEmpty == false)
        }
        // The scores are the model's on the decoded rows.
        let decoder = EventDecoder(schema: bundle.featureSchema())
        var row = [Float](repeating: 0, count: bundle.manifest.inputs.count)
        for record in predictions.prefix(50) {
            let id = try #require(record["id"] as? String)
            let index = try #require(id.split(separator: "-").last.flatMap { Int($0) })
            let event = SyntheticEvents.event(index)
            let decoded = event.withUnsafeBytes { bytes in row.withUnsafeMutableBufferPointer { decoder.decode(bytes, into: $0.baseAddress!) } }
            #expect(throws: Never.self) { try decoded.get() }
            let outputs = try bundle.model.run(row)
            let expected = try #require(outputs["probabilities"]?.floats)
            let scores = try #require(record["scores"] as? [Double])
            #expect(abs(scores[1] - Double(expected[1])) < 1e-6)
        }
    }

    /// One thread or two, small chunks or large: the same records in the same order (latency aside).
    @Test func threadsAndChunksDoNotChangeTheOutput() throws {
        let scratch = try ScratchDirectory()
        let lines = (0..<2_500).map { String(decoding: SyntheticEvents.event($0), as: UTF8.self) }
        try (lines.joined(separator: "\n") + "\n").write(toFile: scratch.path("events.jsonl"), atomically: true, encoding: .utf8)
        let bundle = try ModelBundle(directory: paymentsBundleURL)
        var outputs = [[String]]()
        for (threads, chunk) in [(1, 4096), (2, 37), (2, 1000)] {
            var run = ScoreRun(bundle: bundle, input: .files([scratch.path("events.jsonl")], format: nil), output: .file(scratch.path("out-\(threads)-\(chunk).jsonl")))
            run.options.threads = threads
            run.options.recordsPerChunk = chunk
            _ = try run.run()
            let text = try String(contentsOfFile: scratch.path("out-\(threads)-\(chunk).jsonl"), encoding: .utf8)
            outputs.append(text.split(separator: "\n").map { String($0[..<$0.range(of: ",\"latency_us\"")!.lowerBound]) })
        }
        #expect(outputs[0].count == 2_500)
        #expect(outputs[0] == outputs[1])
        #expect(outputs[0] == outputs[2])
    }

    /// CSV: columns by header name in any order, quoted cells, empty cells take the manifest's
    /// default (or dead-letter as missing-feature), a text where a number belongs is not-a-number,
    /// an unterminated quote is malformed-csv; the id column is echoed.
    @Test func csvColumnsByNameWithQuotesAndDefaults() throws {
        let scratch = try ScratchDirectory()
        let bundle = try ModelBundle(directory: paymentsBundleURL)
        let numbers = (0..<8).map { "f\($0)" }
        var text = (["channel", "id"] + numbers.reversed() + ["country", "merchant_category", "extra"]).joined(separator: ",") + "\r\n"
        text += "\"web\",a1," + numbers.map { _ in "0.5" }.joined(separator: ",") + ",NG,\"79\"\"95\",x\r\n"  // escaped quote: an unknown category
        text += "app,a2," + numbers.map { _ in "1" }.joined(separator: ",") + ",DE,5411,\"quoted, with comma\"\n"
        text += "pos,a3," + numbers.map { _ in "" }.joined(separator: ",") + ",FR,5411,\n"  // empty numbers: missing
        text += "pos,a4,abc," + numbers.dropFirst().map { _ in "1" }.joined(separator: ",") + ",FR,5411,\n"
        text += "pos,a5,\"1," + numbers.dropFirst().map { _ in "1" }.joined(separator: ",") + "\n"
        try text.write(toFile: scratch.path("rows.csv"), atomically: true, encoding: .utf8)
        var run = ScoreRun(bundle: bundle, input: .files([scratch.path("rows.csv")], format: nil), output: .file(scratch.path("out.jsonl")))
        run.deadLetters = .file(scratch.path("dead.jsonl"))
        let summary = try run.run()
        let predictions = try jsonLines(scratch.path("out.jsonl"))
        let dead = try jsonLines(scratch.path("dead.jsonl"))
        #expect(predictions.compactMap { $0["id"] as? String } == ["a1", "a2"])
        let hasDefaults = bundle.manifest.inputs.first { $0.name == "f0" }?.default != nil
        let codes = dead.compactMap { $0["error"] as? String }
        #expect(codes == (hasDefaults ? ["not-a-number", "malformed-csv"] : ["missing-feature", "not-a-number", "malformed-csv"]))
        #expect(summary.scored + summary.deadLetters == 5)
        // The same row as JSON gives the same scores.
        let json = "{" + numbers.map { "\"\($0)\":1" }.joined(separator: ",") + ",\"merchant_category\":\"5411\",\"country\":\"DE\",\"channel\":\"app\"}"
        try json.write(toFile: scratch.path("one.jsonl"), atomically: true, encoding: .utf8)
        _ = try ScoreRun(bundle: bundle, input: .files([scratch.path("one.jsonl")], format: nil), output: .file(scratch.path("one-out.jsonl"))).run()
        let fromJSON = try jsonLines(scratch.path("one-out.jsonl"))
        #expect(fromJSON.first?["scores"] as? [Double] == predictions[1]["scores"] as? [Double])
    }

    /// A retained range: offsets or times pick the records, each partition's predictions keep their
    /// offset order, predictions and dead letters go to topics with serve's headers (the input's
    /// carried on), and nothing produced after the run starts is read.
    @Test func kafkaRangeByOffsetAndTimeToTopics() throws {
        let cluster = try EmbeddedCluster(brokers: 1, topics: [("events", 3), ("scored", 3), ("bad", 1)])
        defer { cluster.stopCheckingClients() }
        var configuration = ProducerConfiguration(bootstrapServers: cluster.bootstrapServers)
        configuration.lingerMs = 1
        let producer = try KafkaProducer(configuration: configuration, onDelivery: { _ in })
        let topic = try producer.topic("events")
        let day: Int64 = 86_400_000
        let start: Int64 = 1_780_000_000_000  // 2026-05-28
        for index in 0..<900 {
            let value = index % 100 == 5 ? SyntheticEvents.badEvent(index, kind: "malformed-json") : SyntheticEvents.event(index)
            // Three days of events, in time order within each partition.
            var headers = OutgoingHeaders()
            headers.append(name: "traceparent", value: "00-trace-\(index)")
            try producer.send(to: topic, partition: Int32(index % 3), key: SyntheticEvents.key(index), value: value, headers: headers,
                              timestampMilliseconds: start + Int64(index / 300) * day + Int64(index))
        }
        try producer.flush(timeoutMs: 30_000)
        try producer.close()
        let bundle = try ModelBundle(directory: paymentsBundleURL)

        // Offsets 10..<60 of partitions 0 and 2: 100 records.
        var range = KafkaRange(brokers: cluster.bootstrapServers, topic: "events")
        range.partitions = [0, 2]
        range.fromOffset = 10
        range.toOffset = 60
        var run = ScoreRun(bundle: bundle, input: .kafka(range),
                           output: .topic(brokers: cluster.bootstrapServers, topic: "scored", properties: [:]))
        run.deadLetters = .topic(brokers: cluster.bootstrapServers, topic: "bad", properties: [:])
        run.options.recordsPerChunk = 16
        let summary = try run.run()
        #expect(summary.scored + summary.deadLetters == 100)
        let scored = try readTopic(cluster, "scored", partitions: 3)
        let bad = try readTopic(cluster, "bad", partitions: 1)
        #expect(scored.count == summary.scored)
        #expect(bad.count == summary.deadLetters)
        // Keyed by the input key: in each output partition, one input partition's records keep their order.
        var lastOffset = [[Int32]: Int]()
        for record in scored {
            let source = try #require(try jsonObject(record)["source"] as? [String: Any])
            let partition = try #require(source["partition"] as? Int), offset = try #require(source["offset"] as? Int)
            #expect([0, 2].contains(partition))
            #expect((10..<60).contains(offset))
            let stream = [record.partition, Int32(partition)]
            #expect(offset > lastOffset[stream, default: -1])
            lastOffset[stream] = offset
            #expect(header(record, "weir-model") == "payments")
            #expect(header(record, "traceparent") == "00-trace-\(offset * 3 + partition)")  // the input's headers carried on
        }
        for record in bad {
            #expect(header(record, "weir-error") == "malformed-json")
            #expect(header(record, "weir-source-topic") == "events")
            let offset = try #require(header(record, "weir-source-offset").flatMap(Int.init))
            let partition = try #require(header(record, "weir-source-partition").flatMap(Int32.init))
            #expect(record.value == SyntheticEvents.badEvent(Int(offset) * 3 + Int(partition), kind: "malformed-json"))
            #expect(header(record, "traceparent") == "00-trace-\(Int(offset) * 3 + Int(partition))")
            #expect(header(record, "__connect.errors.topic") == "events" && header(record, "__connect.errors.offset") == String(offset)
                    && header(record, "__connect.errors.exception.class.name") == "malformed-json")
        }

        // The second day only (the mock broker cannot look offsets up by time: the range is read
        // from the start and filtered by timestamp).
        let scratch = try ScratchDirectory()
        var byTime = KafkaRange(brokers: cluster.bootstrapServers, topic: "events")
        byTime.fromTimeMs = start + day
        byTime.toTimeMs = start + 2 * day
        var timed = ScoreRun(bundle: bundle, input: .kafka(byTime), output: .file(scratch.path("day.jsonl")))
        timed.deadLetters = .file(scratch.path("day-dead.jsonl"))
        let daySummary = try timed.run()
        #expect(daySummary.scored + daySummary.deadLetters == 300)
        #expect(daySummary.outsideRange == 600)
        let ids = try jsonLines(scratch.path("day.jsonl")).compactMap { $0["id"] as? String }
            .compactMap { $0.split(separator: "-").last.flatMap { Int($0) } }
        #expect(ids.allSatisfy { (300..<600).contains($0) })
    }

    /// A range that ends in offsets holding no record (a transaction's commit marker, an aborted
    /// transaction) ends at the partition's end, not after the idle timeout.
    @Test func aRangeEndingInTransactionMarkersFinishes() throws {
        let cluster = try EmbeddedCluster(brokers: 1, topics: [("events", 1)])
        defer { cluster.stopCheckingClients() }
        var configuration = ProducerConfiguration(bootstrapServers: cluster.bootstrapServers)
        configuration.transactionalID = "score-tx-\(UUID().uuidString)"
        let producer = try KafkaProducer(configuration: configuration, onDelivery: { _ in })
        try producer.initTransactions()
        let topic = try producer.topic("events")
        for (round, commit) in [(0, true), (1, false)] {
            try producer.beginTransaction()
            for index in (round * 40)..<(round * 40 + 40) {
                try producer.send(to: topic, key: SyntheticEvents.key(index), value: SyntheticEvents.event(index))
            }
            if commit { try producer.commitTransaction() } else { try producer.abortTransaction() }
        }
        try producer.close()
        let scratch = try ScratchDirectory()
        var range = KafkaRange(brokers: cluster.bootstrapServers, topic: "events")
        range.idleTimeoutMs = 20_000
        let started = Date()
        let summary = try ScoreRun(bundle: try ModelBundle(directory: paymentsBundleURL), input: .kafka(range),
                                   output: .file(scratch.path("out.jsonl"))).run()
        #expect(summary.scored == 40)  // the committed transaction's; the aborted one is not read
        #expect(Date().timeIntervalSince(started) < 10)
    }

    /// Avro from a retained range: writer schemas are fetched from the registry (with its
    /// credentials) before the records are scored; the records score as their JSON twins do; an id
    /// the registry does not know is `unknown-schema`.
    @Test func avroRangeFetchesWriterSchemas() throws {
        let registry = try SchemaRegistryServer(credentials: "weir:s3cret-pass")
        defer { registry.stop() }
        let schemaID = registry.register(subject: "events-value", schema: SyntheticEvents.avroSchema)
        let cluster = try EmbeddedCluster(brokers: 1, topics: [("events", 2)])
        defer { cluster.stopCheckingClients() }
        var records = (0..<300).map { (SyntheticEvents.key($0), SyntheticEvents.avroEvent($0, schemaID: schemaID), [(String, String)]()) }
        records.append((SyntheticEvents.key(300), SyntheticEvents.avroEvent(300, schemaID: SyntheticEvents.unregisteredSchemaID), []))
        try produce(cluster, records.map { (key: $0.0 as [UInt8]?, value: $0.1 as [UInt8]?, headers: $0.2) })
        let scratch = try ScratchDirectory()
        let bundle = try ModelBundle(directory: paymentsBundleURL)
        var run = ScoreRun(bundle: bundle, input: .kafka(KafkaRange(brokers: cluster.bootstrapServers, topic: "events")),
                           output: .file(scratch.path("avro.jsonl")))
        run.options.inputFormat = .avro
        run.registry = RegistryConfiguration(url: registry.url, basicAuth: "weir:s3cret-pass")
        run.deadLetters = .file(scratch.path("dead.jsonl"))
        let summary = try run.run()
        #expect(summary.scored == 300)
        #expect(summary.deadLettersByCode == ["unknown-schema": 1])
        let dead = try jsonLines(scratch.path("dead.jsonl"))
        #expect(dead.first?["value_base64"] is String)  // Avro bytes are not UTF-8 text
        // The JSON twins of the same events score the same.
        let json = (0..<300).map { String(decoding: SyntheticEvents.event($0), as: UTF8.self) }.joined(separator: "\n")
        try json.write(toFile: scratch.path("twins.jsonl"), atomically: true, encoding: .utf8)
        _ = try ScoreRun(bundle: bundle, input: .files([scratch.path("twins.jsonl")], format: nil), output: .file(scratch.path("twins-out.jsonl"))).run()
        func scoresByID(_ path: String) throws -> [String: [Double]] {
            Dictionary(uniqueKeysWithValues: try jsonLines(path).map { ($0["id"] as! String, $0["scores"] as! [Double]) })
        }
        #expect(try scoresByID(scratch.path("avro.jsonl")) == scoresByID(scratch.path("twins-out.jsonl")))
    }

    /// The command: standard input in, standard output out, a summary line and --summary-json;
    /// a bad option gets one line naming it.
    @Test func commandReadsStandardInputAndWritesASummary() throws {
        let scratch = try ScratchDirectory()
        let input = (0..<200).map { String(decoding: SyntheticEvents.event($0), as: UTF8.self) }.joined(separator: "\n") + "\n{\n"
        let result = try WeirTestSupport.run([builtProduct("weir").path, "score", "--model", paymentsBundleURL.path, "--input", "-",
                                              "--dead-letters", scratch.path("dead.jsonl"), "--summary-json", scratch.path("summary.json"),
                                              "--no-progress"], input: input)
        #expect(result.status == 0, "\(result.errors)")
        #expect(result.output.split(separator: "\n").count == 200)
        #expect(result.errors.contains("scored 200 events, 1 dead letters (malformed-json 1)"))
        let summary = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: scratch.path("summary.json")))) as? [String: Any])
        #expect(summary["scored"] as? Int == 200)
        #expect((summary["dead_letters_by_code"] as? [String: Int])?["malformed-json"] == 1)
        #expect(summary["sha256"] as? String == ModelBundle.identity(of: paymentsBundleURL))

        let bad = try WeirTestSupport.run([builtProduct("weir").path, "score", "--model", paymentsBundleURL.path, "--input", scratch.path("none.jsonl")])
        #expect(bad.status != 0)
        #expect(bad.errors.contains("--input \(scratch.path("none.jsonl")): no such file"))
        let time = try WeirTestSupport.run([builtProduct("weir").path, "score", "--model", paymentsBundleURL.path, "--brokers", "127.0.0.1:1",
                                            "--topic", "t", "--from-time", "yesterday"])
        #expect(time.errors.contains("--from-time: 'yesterday' is not an RFC 3339 time"))
    }
}
