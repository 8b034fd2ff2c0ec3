import Foundation
import WeirCodec
import WeirControl
import WeirWorker

/// The observed outcome of a record, as a float: a classifier's class index (-1: a label the model
/// does not have), a regressor's value; NaN when the record has none.
typealias Outcome = Float

/// Reads a record's label field (`--label-field`) with the same decoders as the features: a number
/// first, then text (a classifier's label name). One per lane thread.
final class LabelReader {
    /// Per input.
    private let readers: [OutcomeReader]

    init(field: String, manifest: BundleManifest, inputs: [InputDescription], options: BatchOptions) {
        let labels = manifest.outputs.isClassification ? LabelIndex(labels: manifest.outputs.labels ?? ["0", "1"]) : nil
        let schemas = OutcomeReader.schemas(field: field, labels: labels, maxBytes: options.maxBytes)
        func decoder(_ schema: FeatureSchema, _ input: InputDescription) -> any RowDecoder {
            switch input.format {
            case .csv: return CSVDecoder(schema: schema, header: input.header)
            case .jsonl: return EventDecoder(schema: schema)
            case .kafka: return makeRowDecoder(options.inputFormat, features: schema, writerSchemas: options.writerSchemas)
            }
        }
        readers = inputs.map { input in
            // CSV cells are text: a classifier's CSV label goes through the label names only.
            let numeric = input.format == .csv && labels != nil ? nil : decoder(schemas.numeric, input)
            return OutcomeReader(numeric: numeric, text: schemas.text.map { decoder($0, input) }, labels: labels)
        }
    }

    /// The record's outcome and its id's hash (for joining outcomes given apart), if any.
    func read(_ payload: UnsafeRawBufferPointer, input: Int) -> (outcome: Outcome, id: UInt64?) {
        guard let read = readers[input].read(payload) else { return (.nan, nil) }
        return (read.outcome, read.id.map { OutcomeKeys.hash($0, payload: payload) })
    }
}

/// Outcomes given apart from the records (`--labels`): read whole before the run, by id.
struct OutcomeTable: Sendable {
    var byID: [UInt64: Outcome] = [:]

    /// Reads every record of `input` (files or a topic) for its id and `field`.
    static func read(_ input: BatchInput, field: String, manifest: BundleManifest, options: BatchOptions) throws(BatchError) -> OutcomeTable {
        let source = try openSource(input, options: options)
        defer { source.close() }
        let reader = LabelReader(field: field, manifest: manifest, inputs: source.inputs, options: options)
        var table = OutcomeTable()
        var sequence = 0
        while let chunk = try source.next(sequence: sequence) {
            sequence += 1
            for record in chunk.records where record.count >= 0 {
                let (outcome, id) = reader.read(chunk.value(record), input: chunk.input)
                if let id, !outcome.isNaN { table.byID[id] = outcome }
            }
        }
        return table
    }
}
