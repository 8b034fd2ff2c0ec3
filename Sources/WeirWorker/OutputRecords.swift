import Foundation
import Synchronization
import WeirCodec
import WeirDrift
import WeirKafka
import WeirRegistry

/// How prediction, shadow and drift records are written (`output.format`).
public enum OutputFormat: String, Sendable, CaseIterable {
    /// JSON objects (docs/contracts.md).
    case json
    /// Avro in Confluent's wire format, with schemas Weir registers under `<topic>-value`
    /// (TopicNameStrategy), so consumers read them with their usual deserializer.
    case avro
}

/// The record format a worker writes, and the schema ids the registry gave its Avro schemas:
/// shared by every model of the worker, set once at start before anything is consumed.
final class OutputRecords: Sendable {
    let format: OutputFormat
    let predictionSchemaID = Atomic<UInt32>(0)
    let driftSchemaID = Atomic<UInt32>(0)

    init(format: OutputFormat) { self.format = format }

    /// Predictions and shadow predictions: one schema for every model, so a model swap (even from a
    /// classifier to a regressor) never needs a new one. Fields as in the JSON record; `label` and
    /// `scores` are null for a regressor, `value` for a classifier; a label is its text.
    static let predictionSchema = #"""
        {"type":"record","name":"Prediction","namespace":"weir","doc":"A Weir prediction (docs/contracts.md)","fields":[\#
        {"name":"id","type":["null","string","long","double"],"default":null},\#
        {"name":"model","type":"string"},{"name":"version","type":"string"},\#
        {"name":"label","type":["null","string"],"default":null},\#
        {"name":"scores","type":["null",{"type":"array","items":"float"}],"default":null},\#
        {"name":"value","type":["null","float"],"default":null},\#
        {"name":"source","type":{"type":"record","name":"Source","fields":[\#
        {"name":"topic","type":"string"},{"name":"partition","type":"int"},{"name":"offset","type":"long"}]}},\#
        {"name":"latency_us","type":"long"}]}
        """#

    /// Drift records: the JSON record's fields; offsets per topic and partition (as text) are maps.
    static let driftSchema = #"""
        {"type":"record","name":"DriftWindow","namespace":"weir","doc":"A Weir drift window (docs/drift.md)","fields":[\#
        {"name":"model","type":"string"},{"name":"version","type":"string"},{"name":"reference","type":"string"},\#
        {"name":"worker","type":"string"},\#
        {"name":"window","type":{"type":"record","name":"Window","fields":[{"name":"start","type":"long"},{"name":"end","type":"long"},\#
        {"name":"events","type":"long"},{"name":"offsets","type":{"type":"map","values":{"type":"map","values":\#
        {"type":"record","name":"OffsetRange","fields":[{"name":"first","type":"long"},{"name":"last","type":"long"}]}}}}]}},\#
        {"name":"features","type":{"type":"map","values":{"type":"record","name":"ColumnDrift","fields":[\#
        {"name":"n","type":"long"},{"name":"missing","type":"long"},{"name":"nan","type":"long"},{"name":"out_of_range","type":"long"},\#
        {"name":"mean","type":"double"},{"name":"std","type":"double"},{"name":"psi","type":"double"},{"name":"js","type":"double"},\#
        {"name":"wasserstein","type":"double"},{"name":"ks","type":"double"},{"name":"ks_p","type":"double"},\#
        {"name":"drift","type":"boolean"},{"name":"threshold","type":"double"},\#
        {"name":"chi_square","type":["null","double"],"default":null},{"name":"chi_square_p","type":["null","double"],"default":null},\#
        {"name":"unseen_share","type":["null","double"],"default":null}]}}},\#
        {"name":"prediction","type":{"type":"map","values":"ColumnDrift"}},\#
        {"name":"drifted_share","type":"double"},{"name":"drift","type":"boolean"}]}
        """#

    /// Registers the schemas the worker's topics need under `<topic>-value`, trying again after
    /// 100 ms doubling to 5 s while the registry cannot answer (until `stopRequested`); a refusal
    /// (an incompatible schema already under the subject, bad credentials) is thrown, naming the subject.
    func register(settings: WorkerSettings, client: SchemaRegistryClient, stopRequested: () -> Bool,
                  wait: (Int) -> Void, log: WorkerLog) throws {
        guard format == .avro else { return }
        var subjects: [(topic: String, isDrift: Bool)] = [(settings.output, false)]
        if let shadow = settings.shadowTopic { subjects.append((shadow, false)) }
        if let drift = settings.driftTopic { subjects.append((drift, true)) }
        for (topic, isDrift) in subjects {
            let schema = isDrift ? Self.driftSchema : Self.predictionSchema
            let subject = topic + "-value"
            var backoffMs = 100
            var warned = false
            while true {
                do {
                    let registered = try client.register(subject: subject, schema: schema)
                    if isDrift { driftSchemaID.store(registered, ordering: .relaxed) } else { predictionSchemaID.store(registered, ordering: .relaxed) }
                    log("output.format avro: \(subject) is schema id \(registered)")
                    break
                } catch {
                    guard case .unavailable = error else {
                        throw WorkerError("output.format avro: the Schema Registry did not register the schema under '\(subject)': \(error)",
                                          kind: .configuration)
                    }
                    if !warned {
                        log("output.format avro: cannot register the schema under '\(subject)' yet: \(error); consuming waits until it is registered",
                            level: .warning)
                        warned = true
                    }
                    if stopRequested() { return }
                    wait(backoffMs)
                    backoffMs = min(backoffMs * 2, 5_000)
                }
            }
        }
    }
}

extension AnswerWriter {
    /// Writes the prediction for `row` as Avro into `avro` (framed with the registered id).
    func encodeAvroPrediction(base: UnsafePointer<Float>, width: Int, message: KafkaMessage, id: EventID?,
                              topic: [UInt8], latencyMicros: UInt64, schemaID: UInt32) {
        avro.reset()
        avro.frame(schemaID: schemaID)
        writeAvroID(id, value: message.value)
        avro.string(modelName)
        avro.string(modelVersion)
        if isClassification {
            let best = PredictionFields.bestClass(base, width: width)
            avro.long(1)
            avro.string(labelText[best])
            avro.long(1)
            if width == 1 {
                avro.long(2)
                avro.float(1 - base[0])
                avro.float(base[0])
            } else {
                avro.long(Int64(width))
                for column in 0..<width { avro.float(base[column]) }
            }
            avro.long(0)
            avro.long(0)
        } else {
            avro.long(0)
            avro.long(0)
            avro.long(1)
            avro.float(base[0])
        }
        avro.string(topic)
        avro.long(Int64(message.partition))
        avro.long(message.offset)
        avro.long(Int64(clamping: latencyMicros))
    }

    /// The id union: null, string, long or double.
    private func writeAvroID(_ id: EventID?, value: UnsafeRawBufferPointer?) {
        guard let id, let value else { avro.long(0); return }
        switch id.form {
        case .text:
            avro.long(1)
            avro.string(UnsafeRawBufferPointer(rebasing: value[id.start..<id.end]))
        case .integer:
            avro.long(2)
            avro.long(id.integer)
        case .jsonToken:
            let token = UnsafeRawBufferPointer(rebasing: value[id.start..<id.end])
            if id.isString {
                let inner = UnsafeRawBufferPointer(rebasing: token[(token.startIndex + 1)..<(token.endIndex - 1)])
                avro.long(1)
                if !inner.contains(UInt8(ascii: "\\")) {
                    avro.string(inner)
                } else if let text = (try? JSONSerialization.jsonObject(with: Data(token), options: [.fragmentsAllowed])) as? String {
                    avro.string(text)  // escapes: rare, so the slow path
                } else {
                    avro.string(inner)
                }
            } else if let integer = Int64(String(decoding: token, as: UTF8.self)) {
                avro.long(2)
                avro.long(integer)
            } else {
                avro.long(3)
                avro.double(Double(String(decoding: token, as: UTF8.self)) ?? .nan)
            }
        }
    }
}

extension DriftTap {
    /// Writes the record of a closed window as Avro into `avro`.
    func encodeAvro(_ drift: WindowDrift, schemaID: UInt32) {
        avro.reset()
        avro.frame(schemaID: schemaID)
        avro.string(modelName)
        avro.string(modelVersion)
        avro.string(referenceID)
        avro.string(workerID)
        avro.long(drift.startMs)
        avro.long(drift.endMs)
        avro.long(Int64(drift.events))
        let topics = drift.offsets.sorted { $0.key < $1.key }
        if !topics.isEmpty {
            avro.long(Int64(topics.count))
            for (topic, partitions) in topics {
                avro.string(topic)
                avro.long(Int64(partitions.count))
                for (partition, range) in partitions.sorted(by: { $0.key < $1.key }) {
                    avro.string(String(partition))
                    avro.long(range.first)
                    avro.long(range.last)
                }
                avro.long(0)
            }
        }
        avro.long(0)
        avroColumns(drift.features)
        avroColumns(drift.predictions)
        avro.double(drift.driftedShare)
        avro.boolean(drift.drift)
    }

    private func avroColumns(_ list: [ColumnDrift]) {
        if !list.isEmpty {
            avro.long(Int64(list.count))
            for column in list {
                avro.string(column.name)
                avro.long(Int64(column.n))
                avro.long(Int64(column.missing))
                avro.long(Int64(column.nan))
                avro.long(Int64(column.outOfRange))
                for value in [column.mean, column.std, column.psi, column.js, column.wasserstein, column.ks, column.ksP] { avro.double(value) }
                avro.boolean(column.drift)
                avro.double(column.threshold)
                // Categorical features only: union branch 1 (double), else 0 (null).
                for value in [column.chiSquare, column.chiSquareP, column.unseenShare] {
                    if let value {
                        avro.long(1)
                        avro.double(value)
                    } else {
                        avro.long(0)
                    }
                }
            }
        }
        avro.long(0)
    }
}
