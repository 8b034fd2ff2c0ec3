import Foundation
import WeirCodec
import WeirControl
import WeirModel

/// One loaded bundle, ready to answer on the poll thread: its decoder, its batch matrix, model
/// scratch, record writer and drift window. Built off the poll thread (the loader) and handed over
/// whole, so a swap is one reference assignment between two batches.
final class ServingModel {
    let bundle: ModelBundle
    let ref: BundleRef
    /// Reads events in `input.format` into this model's rows.
    let decoder: any RowDecoder
    /// Writer schemas by registry id (framed formats), shared by every model of the worker.
    let writerSchemas: WriterSchemas
    let scratch: ModelScratch
    let answers: AnswerWriter
    let width: Int
    /// Row-major feature rows of the open batch routed to this model; `count` are filled.
    let rows: UnsafeMutablePointer<Float>
    var count = 0
    /// Per row and feature: whether the decoder used the default (drift counts these as missing).
    let missingFlags: UnsafeMutablePointer<Bool>
    /// Drift windows of this model version, when the worker has a drift topic.
    let drift: DriftTap?
    private let capacity: Int

    /// What the model did since it went on trial (automatic rollback reads these).
    var trialEvents = 0
    var trialErrors = 0
    /// Recent batch inference times in microseconds (a ring).
    private(set) var inferenceMicros = [UInt32](repeating: 0, count: 256)
    private(set) var inferenceSamples = 0

    var version: String { bundle.manifest.version }

    init(bundle: ModelBundle, ref: BundleRef, settings: WorkerSettings, writerSchemas: WriterSchemas, records: OutputRecords,
         log: (String) -> Void) throws {
        self.bundle = bundle
        self.ref = ref
        let manifest = bundle.manifest
        width = manifest.inputs.count
        let path = settings.inputFeaturesPath.map { $0.split(separator: ".").map(String.init) } ?? []
        let features = bundle.featureSchema(featuresPath: path, maxBytes: settings.inputMaxBytes)
        self.writerSchemas = writerSchemas
        decoder = makeRowDecoder(settings.inputFormat, features: features, writerSchemas: writerSchemas)
        scratch = bundle.model.makeScratch()
        answers = AnswerWriter(manifest: manifest, records: records)
        capacity = settings.batchMaxEvents * max(width, 1)
        rows = .allocate(capacity: capacity)
        rows.initialize(repeating: 0, count: capacity)
        if settings.driftTopic != nil {
            guard let reference = bundle.reference, let referenceID = manifest.sha256["reference.json"] else {
                rows.deallocate()
                throw WorkerError("drift-topic: the bundle at \(bundle.directory.path) has no reference.json; package it again with weir model package")
            }
            drift = DriftTap(bundle: bundle, reference: reference, settings: settings, referenceID: referenceID, records: records, log: log)
        } else {
            drift = nil
        }
        let flagCount = drift == nil ? 1 : capacity
        missingFlags = .allocate(capacity: flagCount)
        missingFlags.initialize(repeating: false, count: flagCount)
    }

    deinit {
        rows.deallocate()
        missingFlags.deallocate()
    }

    /// Records which features of `row` the decoder defaulted (drift counts them as missing).
    @inline(__always)
    func noteDefaults(row: Int) {
        let flags = missingFlags + row * width
        if decoder.defaultedCount == 0 {
            flags.update(repeating: false, count: width)
        } else {
            for feature in 0..<width { flags[feature] = decoder.wasDefaulted(feature) }
        }
    }

    /// Runs the filled rows.
    func run() throws -> ModelRun {
        try bundle.model.run(rows: count, input: UnsafeBufferPointer(start: rows, count: count * width), scratch: scratch)
    }

    func noteInference(nanoseconds: UInt64) {
        inferenceMicros[inferenceSamples % inferenceMicros.count] = UInt32(min(nanoseconds / 1000, UInt64(UInt32.max)))
        inferenceSamples += 1
    }

    /// p99 of the recent batch inference times, in milliseconds.
    var inferenceP99Ms: Double {
        let samples = inferenceMicros.prefix(min(inferenceSamples, inferenceMicros.count)).sorted()
        guard !samples.isEmpty else { return 0 }
        let index = min(samples.count - 1, Int((Double(samples.count) * 0.99).rounded(.up)) - 1)
        return Double(samples[max(index, 0)]) / 1000
    }

    func resetTrial() {
        trialEvents = 0
        trialErrors = 0
        inferenceSamples = 0
    }

    /// Decodes `events` (recent real payloads) and runs them: the candidate's warm-up and schema
    /// check before it takes traffic. Returns the rows that decoded, or the rejection.
    func warmUp(on events: [[UInt8]], fallbackSchemaOf active: BundleManifest?) -> Result<Int, ControlRejection> {
        guard !events.isEmpty else {
            // Nothing seen yet: compare schemas instead. A feature the candidate requires (no
            // default) that the active model does not read may be absent from every event.
            if let active {
                let known = Set(active.inputs.map(\.name))
                if let missing = bundle.manifest.inputs.first(where: { $0.default == nil && !known.contains($0.name) }) {
                    return .failure(ControlRejection(.incompatibleSchema,
                        "input '\(missing.name)' is required by \(version) but not read by \(active.version), and no events were seen to check it"))
                }
            }
            return .success(0)
        }
        var failed = 0
        var firstFailure: String?
        count = 0
        defer { count = 0 }
        for event in events {
            let row = rows + count * width
            let result = event.withUnsafeBytes { decoder.decode($0, into: row) }
            switch result {
            case .success: count += 1
            case .failure(let failure):
                failed += 1
                if firstFailure == nil { firstFailure = failure.message }
            }
            if count * width >= capacity { break }
        }
        // Events the active model decoded: a candidate that cannot read more than a tenth of them
        // would dead-letter traffic the active one answers.
        if failed * 10 > events.count {
            return .failure(ControlRejection(.incompatibleSchema,
                "\(failed) of the last \(events.count) events cannot be read by \(version): \(firstFailure ?? "")"))
        }
        guard count > 0 else { return .success(0) }
        do {
            let run = try run()
            var finiteRows = 0
            answers.withOutputs(of: run) { outputs in
                guard let outputs else { return }
                for row in 0..<count {
                    let base = outputs.values.baseAddress! + row * outputs.width
                    if (0..<outputs.width).allSatisfy({ base[$0].isFinite }) { finiteRows += 1 }
                }
            }
            if finiteRows == 0 {
                return .failure(ControlRejection(.warmUpFailed, "\(version) gave no finite answer on any of \(count) recent events"))
            }
        } catch {
            return .failure(ControlRejection(.warmUpFailed, "\(version) failed on \(count) recent events: \(error)"))
        }
        return .success(count)
    }
}

/// The decoder for `format`: JSON objects, Avro records, Protobuf messages, or JSON objects behind Confluent's frame.
public func makeRowDecoder(_ format: InputFormat, features: FeatureSchema, writerSchemas: WriterSchemas) -> any RowDecoder {
    switch format {
    case .json: return EventDecoder(schema: features)
    case .avro: return AvroDecoder(schema: features, writerSchemas: writerSchemas)
    case .jsonSchema: return FramedJSONDecoder(schema: features, writerSchemas: writerSchemas)
    case .protobuf: return ProtobufDecoder(schema: features, writerSchemas: writerSchemas)
    }
}

extension ModelBundle {
    /// What the decoders read for this bundle: its features in input order, their defaults, and
    /// its categories. Categories travel as the model's symbols (training categories it does not
    /// know get their own, as the packager numbered them, which the model reads as unknown); a
    /// categorical default is its category's symbol.
    public func featureSchema(featuresPath: [String] = [], maxBytes: Int = 1 << 20) -> FeatureSchema {
        let symbols = categorySymbols
        let defaults = manifest.inputs.map { input -> Float? in
            input.isCategorical ? input.defaultCategory.map { Float(symbols.symbol(of: $0)) } : input.default
        }
        let categorical = manifest.inputs.map(\.isCategorical)
        return FeatureSchema(names: manifest.inputs.map(\.name), defaults: defaults, featuresPath: featuresPath,
                             maxBytes: maxBytes, categorical: categorical,
                             categories: categorical.contains(true) ? ModelCategories(symbols) : nil)
    }
}

/// A model's symbol table as the decoders' category lookup: an event's category becomes the
/// symbol the model's encoders compare, found from its bytes without allocating.
public final class ModelCategories: CategoryLookup {
    public let symbols: SymbolTable
    public init(_ symbols: SymbolTable) { self.symbols = symbols }
    public func code(utf8 text: UnsafeRawBufferPointer) -> Int64 { symbols.symbol(utf8: text) }
}
