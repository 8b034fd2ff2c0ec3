import Foundation
import WeirCodec
import WeirControl
import WeirModel
import WeirWorker

/// What every offline run shares: how inputs are decoded and how rows are batched.
public struct BatchOptions: Sendable {
    /// Scoring threads, each with its own decoders, rows and model scratch (default: every core).
    public var threads = ProcessInfo.processInfo.activeProcessorCount
    /// Rows per model run.
    public var batchRows = 256
    /// Records per chunk: the unit a thread takes, and the unit of output order.
    public var recordsPerChunk = 2048
    /// Object keys leading to the features (`input.features-path`).
    public var featuresPath: [String] = []
    /// Larger values are dead-lettered as `too-large`.
    public var maxBytes = 1 << 20
    /// How Kafka record values are written (`input.format`).
    public var inputFormat: InputFormat = .json
    /// Writer schemas fetched for framed formats, shared by every lane.
    public var writerSchemas = WriterSchemas()

    public init() {}
}

/// A thread's worker for chunks: built on its thread and used there only.
protocol ChunkLane: SendableMetatype {
    associatedtype Output: Sendable
    func process(_ chunk: InputChunk) -> Output
}

/// One bundle on one lane thread: its decoder per input, its batch rows and its scratch.
final class LaneModel {
    let bundle: ModelBundle
    let width: Int
    let batchRows: Int
    let rows: UnsafeMutablePointer<Float>
    let scratch: ModelScratch
    /// The float output records read: class scores, or a regressor's value.
    let outputName: String
    private let decoders: [any RowDecoder]

    /// `lane` 0 runs the bundle it is given; every other lane compiles its own copy (one model
    /// instance per thread: lanes sharing one would bounce its reference counts between cores on
    /// every run).
    init(bundle shared: ModelBundle, lane: Int, inputs: [InputDescription], options: BatchOptions) {
        let bundle = lane == 0 ? shared : (try? shared.compiledCopy()) ?? shared
        self.bundle = bundle
        let manifest = bundle.manifest
        width = max(manifest.inputs.count, 1)
        batchRows = max(options.batchRows, 1)
        rows = .allocate(capacity: width * batchRows)
        rows.initialize(repeating: 0, count: width * batchRows)
        scratch = bundle.model.makeScratch()
        outputName = (manifest.outputs.isClassification ? manifest.outputs.scores : manifest.outputs.value) ?? ""
        let features = bundle.featureSchema(featuresPath: options.featuresPath, maxBytes: options.maxBytes)
        var json: EventDecoder?
        decoders = inputs.map { input -> any RowDecoder in
            switch input.format {
            case .csv: return CSVDecoder(schema: features, header: input.header)
            case .jsonl:
                if let json { return json }
                json = EventDecoder(schema: features)
                return json!
            case .kafka: return makeRowDecoder(options.inputFormat, features: features, writerSchemas: options.writerSchemas)
            }
        }
    }

    deinit { rows.deallocate() }

    func decoder(for input: Int) -> any RowDecoder { decoders[input] }

    /// Runs the first `count` rows.
    func run(_ count: Int) throws -> ModelRun {
        try bundle.model.run(rows: count, input: UnsafeBufferPointer(start: rows, count: count * width), scratch: scratch)
    }
}

/// A record answered by a dead letter, by its index in its chunk.
struct DeadLetterNote: Sendable {
    let record: Int32
    let code: DeadLetterCode
    let message: String
}

/// What a score lane made of one chunk: the prediction records (JSON lines, in input order),
/// where each ends and which record it answers, and the dead letters.
struct ScoredChunk: @unchecked Sendable {
    let chunk: InputChunk
    var predictions: [UInt8] = []
    var ends: [Int] = []
    var answered: [Int32] = []
    var deadLetters: [DeadLetterNote] = []
    var tombstones = 0
}

/// Scores chunks with one bundle: decode, run a batch, write a prediction record per row.
final class ScoreLane: ChunkLane {
    private let model: LaneModel
    private let inputs: [InputDescription]
    private let fields: PredictionFields
    private let writer = JSONWriter(capacity: 1 << 20)
    private var pending: [(record: Int32, id: EventID?)] = []

    init(bundle: ModelBundle, lane: Int, inputs: [InputDescription], options: BatchOptions) {
        model = LaneModel(bundle: bundle, lane: lane, inputs: inputs, options: options)
        self.inputs = inputs
        let manifest = bundle.manifest
        fields = PredictionFields(name: manifest.name, version: manifest.version, labels: manifest.outputs.labels,
                                  isClassification: manifest.outputs.isClassification)
        pending.reserveCapacity(model.batchRows)
    }

    func process(_ chunk: InputChunk) -> ScoredChunk {
        var result = ScoredChunk(chunk: chunk)
        result.ends.reserveCapacity(chunk.records.count)
        result.answered.reserveCapacity(chunk.records.count)
        writer.reset()
        let decoder = model.decoder(for: chunk.input)
        var batchStarted = DispatchTime.now().uptimeNanoseconds
        for index in chunk.records.indices {
            let record = chunk.records[index]
            if record.count < 0 {
                result.tombstones += 1
                continue
            }
            if pending.isEmpty { batchStarted = DispatchTime.now().uptimeNanoseconds }
            switch decoder.decode(chunk.value(record), into: model.rows + pending.count * model.width) {
            case .success(let id):
                pending.append((Int32(index), id))
                if pending.count == model.batchRows { flush(chunk, into: &result, since: batchStarted) }
            case .failure(let failure):
                result.deadLetters.append(DeadLetterNote(record: Int32(index), code: DeadLetterCode(failure.code), message: failure.message))
            }
        }
        flush(chunk, into: &result, since: batchStarted)
        result.predictions = Array(writer.bytes)
        if result.deadLetters.count > 1 { result.deadLetters.sort { $0.record < $1.record } }
        return result
    }

    /// Runs the pending rows and writes their records (or model-error dead letters).
    private func flush(_ chunk: InputChunk, into result: inout ScoredChunk, since started: UInt64) {
        guard !pending.isEmpty else { return }
        defer { pending.removeAll(keepingCapacity: true) }
        let run: ModelRun
        do { run = try model.run(pending.count) } catch {
            for entry in pending {
                result.deadLetters.append(DeadLetterNote(record: entry.record, code: .modelError, message: "the model failed on this batch: \(error)"))
            }
            return
        }
        let latencyMicros = (DispatchTime.now().uptimeNanoseconds - started) / 1000
        let input = inputs[chunk.input]
        let found: Void? = run.withFloats(model.outputName) { values, width in
            for (row, entry) in pending.enumerated() {
                let base = values.baseAddress! + row * width
                if let column = (0..<width).first(where: { !base[$0].isFinite }) {
                    result.deadLetters.append(DeadLetterNote(record: entry.record, code: .modelError,
                        message: "the model's output '\(model.outputName)' is \(base[column]) (not finite) at column \(column)"))
                    continue
                }
                let record = chunk.records[Int(entry.record)]
                writer.raw("{\"id\":")
                PredictionFields.writeID(entry.id, payload: chunk.value(record), into: writer)
                writer.raw(fields.modelFragment)
                fields.writeAnswer(base, width: width, into: writer)
                input.writeSource(of: record, into: writer)
                writer.raw("},\"latency_us\":")
                writer.unsigned(latencyMicros)
                writer.raw("}\n")
                result.ends.append(writer.count)
                result.answered.append(entry.record)
            }
        }
        if found == nil {
            for entry in pending {
                result.deadLetters.append(DeadLetterNote(record: entry.record, code: .modelError, message: "the model produced no output '\(model.outputName)'"))
            }
        }
    }
}

/// Chunks read ahead per lane. The reading and writing thread is a third thread on as many cores
/// as lanes: while the scheduler keeps it off a core, the lanes work through what it read ahead
/// (with 4 per lane they ran dry; 16 per lane is at most a few MB of results).
let readAhead = 16

/// Runs lanes on `threads` threads over the chunks `source` gives, and hands their outputs to
/// `consume` in input order on the calling thread, which also reads the input (at most
/// `threads * readAhead` chunks ahead). `tick` is called at least every 250 ms (the progress bar).
func runLanes<Lane: ChunkLane>(source: ChunkSource, threads: Int, makeLane: @escaping @Sendable (Int) -> Lane,
                               consume: (Lane.Output) throws(BatchError) -> Void, tick: () -> Void) throws(BatchError) {
    let queue = ChunkQueue<Lane.Output>(limit: max(threads, 1) * readAhead)
    let group = DispatchGroup()
    for index in 0..<max(threads, 1) {
        group.enter()
        let thread = Thread {
            let lane = makeLane(index)
            while let chunk = queue.take() { queue.complete(chunk.sequence, lane.process(chunk)) }
            group.leave()
        }
        thread.name = "weir-lane-\(index)"
        thread.stackSize = 8 << 20
        thread.start()
    }
    var readSequence = 0
    var writeSequence = 0
    var ended = false
    var failure: BatchError?
    while true {
        while !ended, queue.hasRoom {
            do {
                guard let chunk = try source.next(sequence: readSequence) else {
                    ended = true
                    queue.endInput()
                    break
                }
                queue.submit(chunk)
                readSequence += 1
            } catch {
                failure = error
                ended = true
                queue.endInput()
            }
        }
        if ended && writeSequence == readSequence { break }
        if let output = queue.result(writeSequence, timeoutMs: 250) {
            writeSequence += 1
            if failure == nil {
                do { try consume(output) } catch {
                    failure = error
                    if !ended {
                        ended = true
                        queue.endInput()
                    }
                }
            }
        }
        tick()
    }
    group.wait()
    if let failure { throw failure }
}
