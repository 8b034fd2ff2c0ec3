import Foundation
import Testing
import FuzzChecks
import WeirCodec
import WeirControl
import WeirKafka
import WeirRegistry
import WeirTestSupport
@testable import WeirWorker

/// Avro events in Confluent's wire format through a worker and a Schema Registry speaking the
/// registry's REST API over TCP: the predictions equal those of the same rows sent as JSON, every
/// offset is answered, and a registry that is down, failing or slow pauses the partitions instead
/// of dead-lettering good events.
@Suite(.serialized, .timeLimit(.minutes(4))) struct SchemaRegistryTests {
    let bundle = try! ModelBundle(directory: demoBundleURL)

    static func avroSettings(_ cluster: EmbeddedCluster, registry: String) -> WorkerSettings {
        var settings = testSettings(cluster)
        settings.inputFormat = .avro
        settings.schemaRegistryURL = registry
        return settings
    }

    /// The same events as JSON: a worker reading `json-events` into `json-predictions` (and
    /// `json-drift` with windows of `driftWindow`), run until it has answered `events`.
    func runJSONWorker(_ cluster: EmbeddedCluster, events: Int, driftWindow: Int? = nil) throws {
        var settings = testSettings(cluster)
        settings.input = ["json-events"]
        settings.output = "json-predictions"
        settings.dlq = "json-dead-letters"
        if let driftWindow {
            settings.driftTopic = "json-drift"
            settings.driftWindowEvents = driftWindow
        }
        let worker = try RunningWorker(settings: settings, bundle: bundle)
        try worker.waitUntilReady()
        try waitFor("every JSON event answered") { worker.answered >= events }
        try worker.stop()
    }

    /// Predictions by event id: label and scores (as float32) as the record holds them.
    static func predictionsByID(_ objects: [[String: Any]]) throws -> [String: (label: String, scores: [Float])] {
        var result: [String: (label: String, scores: [Float])] = [:]
        for object in objects {
            guard let id = object["id"] as? String, let scores = object["scores"] as? [Double] else {
                throw TestFailure("prediction without id or scores: \(object)")
            }
            result[id] = ("\(object["label"] ?? "")", scores.map { Float($0) })
        }
        return result
    }

    /// An Avro record Weir wrote, read by libavro-c under `schema` into plain JSON values (union
    /// branches unwrapped); checks the frame's magic byte and schema id.
    static func avroObject(_ record: ConsumedRecord, schema: String, id: UInt32) throws -> [String: Any] {
        let value = try #require(record.value)
        guard value.count > 5, value[0] == 0, ConfluentFrame.schemaID(of: value.withUnsafeBytes { UnsafeRawBufferPointer($0) }) == id else {
            throw TestFailure("record at offset \(record.offset) is not framed with schema id \(id)")
        }
        let oracle = try #require(AvroOracle(schemaText: schema, features: FeatureSchema(names: [])))
        let text = try #require(oracle.json(value), "libavro-c cannot read the record at offset \(record.offset)")
        func plain(_ json: Any) -> Any {
            if let object = json as? [String: Any] {
                if object.count == 1, let (key, inner) = object.first, ["string", "long", "double", "float", "array", "int"].contains(key) {
                    return plain(inner)
                }
                return object.mapValues(plain)
            }
            if let list = json as? [Any] { return list.map(plain) }
            return json
        }
        return try #require(plain(try JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any])
    }

    @Test func avroEventsArePredictedAsTheSameRowsInJSONAndEveryBadOneIsAnsweredWithItsCode() throws {
        let cluster = try EmbeddedCluster(brokers: 1, topics: [("events", 4), ("json-events", 4), ("predictions", 4), ("json-predictions", 4),
                                                               ("dead-letters", 4), ("json-dead-letters", 4), ("drift", 1), ("json-drift", 1)])
        defer { cluster.stopCheckingClients() }
        let registry = try SchemaRegistryServer(credentials: "weir:s3cret-pass")
        defer { registry.stop() }
        let v1 = registry.register(subject: "events-value", schema: SyntheticEvents.avroSchema)
        // v2 of the subject: a field added with a default, and `note` moved first.
        var fields = try #require(try JSONSerialization.jsonObject(with: Data(SyntheticEvents.avroSchema.utf8)) as? [String: Any])
        var list = try #require(fields["fields"] as? [[String: Any]])
        list.insert(list.removeLast(), at: 0)
        list.append(["name": "extra", "type": "long", "default": 0])
        fields["fields"] = list
        let v2Text = String(decoding: try JSONSerialization.data(withJSONObject: fields), as: UTF8.self)
        let v2 = registry.register(subject: "events-value", schema: v2Text)
        #expect(v1 != v2)
        let v2Type = try AvroType.parse(v2Text)

        let count = 120
        var records: [(key: [UInt8]?, value: [UInt8]?, headers: [(String, String)])] = []
        var jsonRecords: [(key: [UInt8]?, value: [UInt8]?, headers: [(String, String)])] = []
        for index in 0..<count {
            jsonRecords.append((SyntheticEvents.key(index), SyntheticEvents.event(index), []))
            if index % 3 == 1 {
                // The same event written with v2: decode v1's bytes, re-encode the fields in v2's order.
                records.append((SyntheticEvents.key(index), try Self.rewrite(index, as: v2Type, id: v2), []))
            } else {
                records.append((SyntheticEvents.key(index), SyntheticEvents.avroEvent(index, schemaID: v1), []))
            }
        }
        let bad: [(String, [UInt8])] = [
            ("bad-wire-format", SyntheticEvents.badAvroEvent(1_000, kind: "bad-wire-format", schemaID: v1)),
            ("malformed-avro", SyntheticEvents.badAvroEvent(1_001, kind: "malformed-avro", schemaID: v1)),
            ("unknown-schema", SyntheticEvents.badAvroEvent(1_002, kind: "unknown-schema", schemaID: v1)),
            ("bad-wire-format", Array("{\"f0\":1}".utf8)),
        ]
        for (_, value) in bad { records.append((Array("bad".utf8), value, [])) }
        try produce(cluster, records)
        try produce(cluster, topic: "json-events", jsonRecords)

        var settings = Self.avroSettings(cluster, registry: registry.url)
        settings.schemaRegistryBasicAuth = "weir:s3cret-pass"
        // Avro in, Avro out: predictions and drift records registered under <topic>-value.
        settings.outputFormat = .avro
        // One drift window over every good event: the same rows give the same statistics.
        settings.driftTopic = "drift"
        settings.driftWindowEvents = count
        let worker = try RunningWorker(settings: settings, bundle: bundle)
        try worker.waitUntilReady()
        try waitFor("every Avro event answered") { worker.answered >= records.count }
        try worker.stop()
        try runJSONWorker(cluster, events: count, driftWindow: count)

        let client = SchemaRegistryClient(RegistryConfiguration(url: registry.url, basicAuth: "weir:s3cret-pass"))
        let predictionID = try client.latest(subject: "predictions-value").id
        let driftID = try client.latest(subject: "drift-value").id
        let avroPredictions = try readTopic(cluster, "predictions").map {
            try Self.avroObject($0, schema: OutputRecords.predictionSchema, id: predictionID)
        }
        let avroScores = try Self.predictionsByID(avroPredictions)
        let jsonScores = try Self.predictionsByID(try readTopic(cluster, "json-predictions").map(jsonObject))
        #expect(avroScores.count == count)
        #expect(avroScores.keys.sorted() == jsonScores.keys.sorted())
        for (id, answer) in avroScores {
            #expect(answer.label == jsonScores[id]?.label && answer.scores == jsonScores[id]?.scores,
                    "\(id): Avro \(answer), JSON \(String(describing: jsonScores[id]))")
        }
        if let first = avroPredictions.first {
            #expect(first["model"] as? String == bundle.manifest.name && first["version"] as? String == bundle.manifest.version)
            #expect((first["source"] as? [String: Any])?["topic"] as? String == "events" && first["value"] is NSNull)
        }
        let drift = try readTopic(cluster, "drift", partitions: 1).map { try Self.avroObject($0, schema: OutputRecords.driftSchema, id: driftID) }
        let jsonDrift = try readTopic(cluster, "json-drift", partitions: 1).map(jsonObject)
        #expect(drift.count == 1 && jsonDrift.count == 1)
        if let avroWindow = drift.first, let jsonWindow = jsonDrift.first {
            #expect((avroWindow["window"] as? [String: Any])?["events"] as? Int == count)
            let avroFeatures = try #require(avroWindow["features"] as? [String: [String: Any]])
            let jsonFeatures = try #require(jsonWindow["features"] as? [String: [String: Any]])
            #expect(avroFeatures.keys.sorted() == jsonFeatures.keys.sorted() && avroFeatures.count == 32)
            for (name, statistics) in avroFeatures {
                for key in ["n", "missing", "psi", "js", "ks", "mean", "std", "wasserstein"] {
                    let a = (statistics[key] as? Double) ?? .nan, b = (jsonFeatures[name]?[key] as? Double) ?? .nan
                    #expect(abs(a - b) <= 1e-9 * max(1, abs(b)), "\(name).\(key): Avro \(a), JSON \(b)")
                }
            }
            #expect(avroWindow["drift"] as? Bool == jsonWindow["drift"] as? Bool)
        }
        let deadLetters = try readTopic(cluster, "dead-letters")
        #expect(deadLetters.map { header($0, "weir-error") ?? "" }.sorted() == bad.map(\.0).sorted())
        for letter in deadLetters {
            let message = header(letter, "weir-error-message") ?? ""
            #expect(!message.isEmpty)
            if header(letter, "weir-error") == "malformed-avro" { #expect(message.contains("field '"), "\(message)") }
            if header(letter, "weir-error") == "unknown-schema" { #expect(message.contains("\(SyntheticEvents.unregisteredSchemaID)"), "\(message)") }
        }
        #expect(try highWatermarks(cluster).values.reduce(0, +) == Int64(records.count))
        let lines = worker.log.lines.withLock { $0 }
        #expect(!lines.contains { $0.contains("s3cret-pass") }, "the registry password reached a log line")
    }

    /// Good event `index` written with writer schema `type` (v2: same fields by name, other order, one added).
    static func rewrite(_ index: Int, as type: AvroType, id: UInt32) throws -> [UInt8] {
        guard case .record(let record) = type else { throw TestFailure("not a record") }
        let context = SyntheticEvents.categories(index)
        var values: [String: AvroValue] = ["id": .string("evt-\(index)"), "user": .string("u\(index % 5000)"),
                                           "merchant_category": .string(context.merchantCategory), "country": .string(context.country),
                                           "channel": .string(context.channel), "note": .string(""), "extra": .long(Int64(index))]
        for (feature, text) in SyntheticEvents.featureTexts(index).enumerated() { values["f\(feature)"] = .double(Double(text)!) }
        let writer = AvroRecordWriter()
        writer.frame(schemaID: id)
        try writer.write(.record(record.fields.map { values[$0.name]! }), as: type)
        return writer.array
    }

    @Test func aRegistryThatIsDownFailingOrSlowPausesThePartitionsAndNothingIsDeadLettered() throws {
        let cluster = try makeCluster()
        defer { cluster.stopCheckingClients() }
        // A port nobody listens on yet: the registry is down when the worker starts.
        let probe = try SchemaRegistryServer()
        let port = probe.port
        probe.stop()
        var settings = Self.avroSettings(cluster, registry: "http://127.0.0.1:\(port)")
        settings.schemaRegistryTimeoutMs = 300
        let worker = try RunningWorker(settings: settings, bundle: bundle)
        try worker.waitUntilReady()
        let count = 60
        try produce(cluster, (0..<count).map { (SyntheticEvents.key($0), SyntheticEvents.avroEvent($0, schemaID: 1), []) })

        func metrics() -> String { String(decoding: worker.worker.metrics.exposition(), as: UTF8.self) }
        try waitFor("the registry to be marked unavailable") { metricValue(metrics(), "weir_schema_registry_available") == 0 }
        try waitFor("partitions paused for schemas") { (metricValue(metrics(), "weir_schema_waiting_partitions") ?? 0) > 0 }
        #expect(worker.answered == 0)

        // Up, but its store failing (503), then slower than the timeout: still nothing answered.
        let registry = try SchemaRegistryServer(port: port)
        defer { registry.stop() }
        registry.setAvailable(false)
        try waitFor("a 503 answer") { registry.requestCount > 0 }
        registry.setAvailable(true)
        registry.setDelay(milliseconds: 1_000)
        let before = registry.requestCount
        try waitFor("a slow answer", timeoutSeconds: 20) { registry.requestCount > before }
        #expect(worker.answered == 0)
        #expect(worker.worker.metrics.deadLetterTotal.load(ordering: .relaxed) == 0)

        // The registry answers: the schema id 1 is the one the events carry.
        registry.setDelay(milliseconds: 0)
        #expect(registry.register(subject: "events-value", schema: SyntheticEvents.avroSchema) == 1)
        try waitFor("every event predicted once the registry answers", timeoutSeconds: 30) {
            worker.worker.metrics.predictionTotal.load(ordering: .relaxed) >= count
        }
        #expect(worker.worker.metrics.deadLetterTotal.load(ordering: .relaxed) == 0)
        #expect(metricValue(metrics(), "weir_schema_registry_available") == 1)
        #expect(metricValue(metrics(), "weir_schema_waiting_partitions") == 0)
        #expect((metricValue(metrics(), "weir_schema_registry_errors_total") ?? 0) >= 2)
        let lines = worker.log.lines.withLock { $0 }
        #expect(lines.contains { $0.contains("schema registry: cannot fetch schema id 1") })
        #expect(lines.contains { $0.contains("schema registry: answering again") })
        try worker.stop()
        let marks = try highWatermarks(cluster)
        #expect(try committedOffsets(cluster, group: settings.group) == marks)
    }

    @Test func jsonSchemaEventsAreReadByTheJSONDecoderBehindTheFrame() throws {
        let cluster = try makeCluster()
        defer { cluster.stopCheckingClients() }
        let registry = try SchemaRegistryServer()
        defer { registry.stop() }
        let jsonSchema = registry.register(subject: "events-value", schema: #"{"type":"object","properties":{"f0":{"type":"number"}}}"#,
                                           schemaType: "JSON")
        let avroSchema = registry.register(subject: "other-value", schema: SyntheticEvents.avroSchema)
        let count = 40
        var records = (0..<count).map { index -> (key: [UInt8]?, value: [UInt8]?, headers: [(String, String)]) in
            (SyntheticEvents.key(index), ConfluentFrame.header(schemaID: jsonSchema) + SyntheticEvents.event(index), [])
        }
        // An Avro schema's id on a JSON Schema input, and a value with no frame.
        records.append((nil, ConfluentFrame.header(schemaID: avroSchema) + SyntheticEvents.event(0), []))
        records.append((nil, SyntheticEvents.event(1), []))
        try produce(cluster, records)
        var settings = testSettings(cluster)
        settings.inputFormat = .jsonSchema
        settings.schemaRegistryURL = registry.url
        let worker = try RunningWorker(settings: settings, bundle: bundle)
        try worker.waitUntilReady()
        try waitFor("every event answered") { worker.answered >= records.count }
        try worker.stop()
        let predictions = try readTopic(cluster, "predictions")
        #expect(predictions.count == count)
        let ids = Set(try predictions.map { try jsonObject($0)["id"] as? String ?? "" })
        #expect(ids == Set((0..<count).map { "evt-\($0)" }), "the id is echoed from behind the frame")
        let codes = try readTopic(cluster, "dead-letters").map { header($0, "weir-error") ?? "" }
        #expect(codes == ["bad-wire-format", "bad-wire-format"])
    }

    @Test func aRegistryRefusingTheOutputSchemaStopsTheWorkerNamingTheSubject() throws {
        let cluster = try makeCluster()
        defer { cluster.stopCheckingClients() }
        let registry = try SchemaRegistryServer(credentials: "weir:right")
        defer { registry.stop() }
        var settings = testSettings(cluster)
        settings.outputFormat = .avro
        settings.schemaRegistryURL = registry.url
        settings.schemaRegistryBasicAuth = "weir:wrong-secret"
        let worker = try RunningWorker(settings: settings, bundle: bundle)
        do {
            try worker.waitStopped(timeoutSeconds: 30)
            Issue.record("the worker ran without its output schema")
        } catch {
            let message = "\(error)"
            #expect(message.contains("'predictions-value'") && message.contains("401"), "\(message)")
            #expect(!message.contains("wrong-secret"))
        }
        #expect(worker.answered == 0)
    }

    /// The demo's event as Protobuf: `message Event { string id = 1; double f0 = 2; ... double f31 = 33; }`.
    static let protoSchema = "syntax = \"proto3\";\npackage weir.demo;\nmessage Event {\n  string id = 1;\n"
        + (0..<32).map { "  double f\($0) = \($0 + 2);\n" }.joined() + "}\n"

    static func protoEvent(_ index: Int, schemaID: UInt32) throws -> [UInt8] {
        var bytes = ConfluentFrame.header(schemaID: schemaID) + [0]  // message indexes [0]
        let id = Array("evt-\(index)".utf8)
        bytes += [0x0A, UInt8(id.count)] + id
        for (feature, text) in SyntheticEvents.featureTexts(index).enumerated() {
            let number = feature + 2
            // Field tag (number << 3 | 1, a 64-bit value) as a varint; numbers up to 33 take one or two bytes.
            var tag = UInt32(number << 3 | 1)
            while tag >= 0x80 { bytes.append(UInt8(tag & 0x7F) | 0x80); tag >>= 7 }
            bytes.append(UInt8(tag))
            withUnsafeBytes(of: Double(text)!.bitPattern.littleEndian) { bytes += $0 }
        }
        return bytes
    }

    @Test func protobufEventsArePredictedAsTheSameRowsInJSON() throws {
        let cluster = try EmbeddedCluster(brokers: 1, topics: [("events", 4), ("json-events", 4), ("predictions", 4), ("json-predictions", 4),
                                                               ("dead-letters", 4), ("json-dead-letters", 4)])
        defer { cluster.stopCheckingClients() }
        let registry = try SchemaRegistryServer()
        defer { registry.stop() }
        let schemaID = registry.register(subject: "events-value", schema: Self.protoSchema, schemaType: "PROTOBUF")
        let count = 60
        var records = try (0..<count).map { index -> (key: [UInt8]?, value: [UInt8]?, headers: [(String, String)]) in
            (SyntheticEvents.key(index), try Self.protoEvent(index, schemaID: schemaID), [])
        }
        var truncated = try Self.protoEvent(1, schemaID: schemaID)
        truncated.removeLast(3)
        records.append((nil, truncated, []))
        try produce(cluster, records)
        try produce(cluster, topic: "json-events", (0..<count).map { (SyntheticEvents.key($0), SyntheticEvents.event($0), []) })
        var settings = testSettings(cluster)
        settings.inputFormat = .protobuf
        settings.schemaRegistryURL = registry.url
        let worker = try RunningWorker(settings: settings, bundle: bundle)
        try worker.waitUntilReady()
        try waitFor("every Protobuf event answered") { worker.answered >= records.count }
        try worker.stop()
        try runJSONWorker(cluster, events: count)
        let protobuf = try Self.predictionsByID(try readTopic(cluster, "predictions").map(jsonObject))
        let json = try Self.predictionsByID(try readTopic(cluster, "json-predictions").map(jsonObject))
        #expect(protobuf.count == count && protobuf.keys.sorted() == json.keys.sorted())
        for (id, answer) in protobuf { #expect(answer.scores == json[id]?.scores, "\(id)") }
        let codes = try readTopic(cluster, "dead-letters").map { header($0, "weir-error") ?? "" }
        #expect(codes == ["malformed-protobuf"])
    }
}
