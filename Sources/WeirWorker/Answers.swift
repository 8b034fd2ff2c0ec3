import WeirCodec
import WeirControl
import WeirKafka
import WeirModel

/// Which model answered an event: `weir-route` on prediction records.
enum Route: UInt8, CaseIterable {
    case primary, canary, shadow
    var name: String { ["primary", "canary", "shadow"][Int(rawValue)] }

    /// The route a `weir-route` header names.
    init?(name: String) {
        guard let route = Self.allCases.first(where: { $0.name == name }) else { return nil }
        self = route
    }
}

/// Why an event was answered by a dead letter: `weir-error` on the record and the `code` label of
/// `weir_dead_letters_total` (docs/contracts.md).
public enum DeadLetterCode: String, CaseIterable, Sendable {
    case malformedJSON = "malformed-json"
    case missingFeature = "missing-feature"
    case notANumber = "not-a-number"
    case tooLarge = "too-large"
    /// The model failed on the event's batch, or gave an answer that cannot be a record.
    case modelError = "model-error"
    /// The output topic refused the event's prediction for good (or past its retries); the
    /// broker's error is in `weir-error-message`.
    case outputRefused = "output-refused"
    /// librdkafka could not read the record (a corrupt or undecompressable batch); the worker
    /// answers its offset and moves past it.
    case consumeError = "consume-error"
    /// A framed input format's value without Confluent's magic byte and schema id.
    case badWireFormat = "bad-wire-format"
    /// An Avro value that ends early or does not match its writer schema (the field is named).
    case malformedAvro = "malformed-avro"
    /// The Schema Registry says the value's schema id does not exist.
    case unknownSchema = "unknown-schema"
    /// A Protobuf value that ends early or breaks the wire format (the field number is named).
    case malformedProtobuf = "malformed-protobuf"
    /// A CSV row that is not well formed (`weir score` and `weir backtest` inputs only).
    case malformedCSV = "malformed-csv"

    public init(_ code: DecodeFailure.Code) {
        switch code {
        case .malformedJSON: self = .malformedJSON
        case .missingFeature: self = .missingFeature
        case .notANumber: self = .notANumber
        case .tooLarge: self = .tooLarge
        case .badWireFormat: self = .badWireFormat
        case .malformedAvro: self = .malformedAvro
        case .unknownSchema: self = .unknownSchema
        case .malformedProtobuf: self = .malformedProtobuf
        case .malformedCSV: self = .malformedCSV
        }
    }
}

/// Writes prediction records and dead-letter headers (docs/contracts.md) into a reused buffer.
final class AnswerWriter {
    let writer = JSONWriter(capacity: 1024)
    /// Avro records (`output.format avro`), framed with the registered schema id.
    let avro = AvroRecordWriter(capacity: 512)
    /// The worker's record format and registered schema ids.
    let records: OutputRecords
    let manifest: BundleManifest
    let isClassification: Bool
    private let outputTensor: String
    /// The labels as text (Avro records).
    let labelText: [[UInt8]]
    /// The record's model fields and answer, shared with `weir score`.
    let fields: PredictionFields
    let modelName: [UInt8]
    let modelVersion: [UInt8]
    /// The metrics of the route this model answers on, set by the batcher whenever it takes one.
    var routeMetrics: RouteMetrics!
    private static let routeNames = Route.allCases.map { Array($0.name.utf8) }

    init(manifest: BundleManifest, records: OutputRecords) {
        self.manifest = manifest
        self.records = records
        labelText = (manifest.outputs.labels ?? []).map { Array($0.utf8) }
        isClassification = manifest.outputs.isClassification
        outputTensor = (isClassification ? manifest.outputs.scores : manifest.outputs.value) ?? ""
        fields = PredictionFields(name: manifest.name, version: manifest.version, labels: manifest.outputs.labels,
                                  isClassification: isClassification)
        modelName = Array(manifest.name.utf8)
        modelVersion = Array(manifest.version.utf8)
    }

    /// The float output the records read, for one run.
    struct Outputs {
        let values: UnsafeBufferPointer<Float>
        let width: Int
    }

    func withOutputs(of run: ModelRun, _ body: (Outputs?) -> Void) {
        let found: Void? = run.withFloats(outputTensor) { values, width in body(Outputs(values: values, width: width)) }
        if found == nil { body(nil) }
    }

    /// Writes the prediction record for `row` into `writer`; returns a problem (for a `model-error`
    /// dead letter) instead when the model's answer cannot be a record.
    func encodePrediction(row: Int, outputs: Outputs?, message: KafkaMessage, id: EventID?, track: PartitionTrack,
                          latencyMicros: UInt64) -> String? {
        guard let outputs else { return "the model produced no output '\(outputTensor)'" }
        let base = outputs.values.baseAddress! + row * outputs.width
        for column in 0..<outputs.width where !base[column].isFinite {
            return "the model's output '\(outputTensor)' is \(base[column]) (not finite) at column \(column)"
        }
        if records.format == .avro {
            encodeAvroPrediction(base: base, width: outputs.width, message: message, id: id, topic: track.topicBytes,
                                 latencyMicros: latencyMicros, schemaID: records.predictionSchemaID.load(ordering: .relaxed))
            return nil
        }
        let topicJSON = track.topicJSON
        writer.reset()
        writer.raw("{\"id\":")
        PredictionFields.writeID(id, payload: message.value, into: writer)
        writer.raw(fields.modelFragment)
        fields.writeAnswer(base, width: outputs.width, into: writer)
        writer.raw(",\"source\":{\"topic\":")
        writer.raw(topicJSON)
        writer.raw(",\"partition\":")
        writer.integer(Int64(message.partition))
        writer.raw(",\"offset\":")
        writer.integer(message.offset)
        writer.raw("},\"latency_us\":")
        writer.unsigned(latencyMicros)
        writer.raw(UInt8(ascii: "}"))
        return nil
    }

    /// The record `encodePrediction` wrote, in the worker's output format; valid until the next one.
    var record: UnsafeRawBufferPointer { records.format == .avro ? avro.bytes : writer.bytes }

    func appendPredictionHeaders(to headers: inout OutgoingHeaders, route: Route) {
        modelName.withUnsafeBytes { headers.append(name: "weir-model", value: $0) }
        modelVersion.withUnsafeBytes { headers.append(name: "weir-version", value: $0) }
        Self.routeNames[Int(route.rawValue)].withUnsafeBytes { headers.append(name: "weir-route", value: $0) }
    }

    /// The dead-letter headers as a copyable list (the slow paths: a dead letter made smaller, a
    /// refused prediction turned into one).
    func deadLetterHeaderList(code: DeadLetterCode, reason: String, source: EventSource) -> [(name: String, value: [UInt8]?)] {
        Self.deadLetterHeaderList(code: code, reason: reason, source: source, model: modelName, version: modelVersion)
    }

    static func deadLetterHeaderList(code: DeadLetterCode, reason: String, source: EventSource, model: [UInt8],
                                     version: [UInt8]) -> [(name: String, value: [UInt8]?)] {
        deadLetterHeaders(code: code, reason: reason,
                          source: [("weir-source-topic", source.partition.topic), ("weir-source-partition", String(source.partition.partition)),
                                   ("weir-source-offset", String(source.offset))],
                          model: model, version: version,
                          kafka: (source.partition.topic, source.partition.partition, source.offset))
    }

    func appendDeadLetterHeaders(to headers: inout OutgoingHeaders, code: DeadLetterCode, reason: String, message: KafkaMessage) {
        let topic = message.topic
        let partition = String(message.partition)
        let offset = String(message.offset)
        headers.append(name: "weir-error", value: code.rawValue)
        headers.append(name: "weir-error-message", value: reason)
        headers.append(name: "weir-source-topic", value: topic)
        headers.append(name: "weir-source-partition", value: partition)
        headers.append(name: "weir-source-offset", value: offset)
        modelName.withUnsafeBytes { headers.append(name: "weir-model", value: $0) }
        modelVersion.withUnsafeBytes { headers.append(name: "weir-version", value: $0) }
        headers.append(name: ConnectErrorHeaders.topic, value: topic)
        headers.append(name: ConnectErrorHeaders.partition, value: partition)
        headers.append(name: ConnectErrorHeaders.offset, value: offset)
        headers.append(name: ConnectErrorHeaders.className, value: code.rawValue)
        headers.append(name: ConnectErrorHeaders.message, value: reason)
    }
}

/// The headers of a dead letter (docs/contracts.md): Weir's `weir-*` headers (its code and
/// message, where the record came from (`source`: the `weir-source-*` headers), the model and its
/// version), then Kafka Connect's `__connect.errors.*` ones, which generic dead-letter tooling reads
/// (`kafka`: the input topic, partition and offset, when the record came from Kafka; the code as
/// the exception class, the message as its message). Serve's dead letters and `weir score`'s
/// dead-letter topic write the same list.
public func deadLetterHeaders(code: DeadLetterCode, reason: String, source: [(name: String, value: String)], model: [UInt8],
                              version: [UInt8], kafka: (topic: String, partition: Int32, offset: Int64)?) -> [(name: String, value: [UInt8]?)] {
    var headers: [(name: String, value: [UInt8]?)] = [("weir-error", Array(code.rawValue.utf8)), ("weir-error-message", Array(reason.utf8))]
    headers += source.map { ($0.name, Array($0.value.utf8)) } + [("weir-model", model), ("weir-version", version)]
    if let kafka {
        headers += [(ConnectErrorHeaders.topic, Array(kafka.topic.utf8)), (ConnectErrorHeaders.partition, Array(String(kafka.partition).utf8)),
                    (ConnectErrorHeaders.offset, Array(String(kafka.offset).utf8))]
    }
    headers += [(ConnectErrorHeaders.className, Array(code.rawValue.utf8)), (ConnectErrorHeaders.message, Array(reason.utf8))]
    return headers
}

/// Kafka Connect's dead-letter header names (its `errors.deadletterqueue.context.headers.enable`),
/// values as UTF-8 text as Connect writes them.
public enum ConnectErrorHeaders {
    public static let topic = "__connect.errors.topic"
    public static let partition = "__connect.errors.partition"
    public static let offset = "__connect.errors.offset"
    public static let className = "__connect.errors.exception.class.name"
    public static let message = "__connect.errors.exception.message"
}
