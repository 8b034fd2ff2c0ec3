import Foundation
import WeirCodec
import WeirControl
import WeirDrift
import WeirModel
import WeirWorker

/// What a backtest lane made of one chunk: per record both models read, each model's output row,
/// the outcome and the segment value; dead letters per model; the time each model took.
struct ComparedChunk: @unchecked Sendable {
    var currentScores: [Float] = []
    var candidateScores: [Float] = []
    var outcomes: [Outcome] = []
    var segments: [Float] = []
    var outcomeIDs: [UInt64] = []
    var currentDeadLetters: [DeadLetterCode: Int] = [:]
    var candidateDeadLetters: [DeadLetterCode: Int] = [:]
    var currentNanoseconds: UInt64 = 0
    var candidateNanoseconds: UInt64 = 0
    var tombstones = 0
}

/// Where a backtest's segment value comes from: a feature of either model.
struct SegmentSource: Sendable {
    /// Read from the current model's row (else the candidate's), at this feature.
    let fromCurrent: Bool
    let feature: Int
    let isCategorical: Bool
}

/// Scores chunks with both bundles, row by row on the same records.
final class BacktestLane: ChunkLane {
    private let current: LaneModel
    private let candidate: LaneModel
    private let labels: LabelReader?
    private let joinsOutcomes: Bool
    private let segment: SegmentSource?
    private let currentWidth: Int
    private let candidateWidth: Int
    /// Per pending row: its outcome, segment value and id hash, kept until the batch runs.
    private var pendingOutcomes: [Outcome] = []
    private var pendingSegments: [Float] = []
    private var pendingIDs: [UInt64] = []

    init(current: ModelBundle, candidate: ModelBundle, lane: Int, inputs: [InputDescription], options: BatchOptions, labelField: String?,
         joinsOutcomes: Bool, segment: SegmentSource?) {
        self.current = LaneModel(bundle: current, lane: lane, inputs: inputs, options: options)
        self.candidate = LaneModel(bundle: candidate, lane: lane, inputs: inputs, options: options)
        labels = (labelField != nil || joinsOutcomes)
            ? LabelReader(field: labelField ?? "label", manifest: current.manifest, inputs: inputs, options: options) : nil
        self.joinsOutcomes = joinsOutcomes
        self.segment = segment
        currentWidth = BacktestLane.outputWidth(current.manifest)
        candidateWidth = BacktestLane.outputWidth(candidate.manifest)
    }

    /// Columns of a model's output row as reports read it: a single positive-class probability
    /// becomes the two scores [1 − p, p], as in prediction records.
    static func outputWidth(_ manifest: BundleManifest) -> Int {
        manifest.outputs.isClassification ? max(manifest.outputs.labels?.count ?? 2, 2) : 1
    }

    func process(_ chunk: InputChunk) -> ComparedChunk {
        var result = ComparedChunk()
        let currentDecoder = current.decoder(for: chunk.input), candidateDecoder = candidate.decoder(for: chunk.input)
        var rows = 0
        for record in chunk.records {
            if record.count < 0 {
                result.tombstones += 1
                continue
            }
            let payload = chunk.value(record)
            var started = DispatchTime.now().uptimeNanoseconds
            let currentRead = currentDecoder.decode(payload, into: current.rows + rows * current.width)
            var now = DispatchTime.now().uptimeNanoseconds
            result.currentNanoseconds += now - started
            started = now
            let candidateRead = candidateDecoder.decode(payload, into: candidate.rows + rows * candidate.width)
            now = DispatchTime.now().uptimeNanoseconds
            result.candidateNanoseconds += now - started
            if case .failure(let failure) = currentRead { result.currentDeadLetters[DeadLetterCode(failure.code), default: 0] += 1 }
            if case .failure(let failure) = candidateRead { result.candidateDeadLetters[DeadLetterCode(failure.code), default: 0] += 1 }
            guard case .success = currentRead, case .success = candidateRead else { continue }
            var outcome = Outcome.nan
            var idHash: UInt64 = 0
            if let labels {
                let read = labels.read(payload, input: chunk.input)
                outcome = read.outcome
                idHash = read.id ?? 0
            }
            pendingOutcomes.append(outcome)
            pendingIDs.append(idHash)
            if let segment {
                let model = segment.fromCurrent ? current : candidate
                pendingSegments.append(model.rows[rows * model.width + segment.feature])
            }
            rows += 1
            if rows == current.batchRows {
                flush(rows, into: &result)
                rows = 0
            }
        }
        flush(rows, into: &result)
        return result
    }

    private func flush(_ rows: Int, into result: inout ComparedChunk) {
        guard rows > 0 else { return }
        defer {
            pendingOutcomes.removeAll(keepingCapacity: true)
            pendingSegments.removeAll(keepingCapacity: true)
            pendingIDs.removeAll(keepingCapacity: true)
        }
        var started = DispatchTime.now().uptimeNanoseconds
        let currentRows = answer(current, rows: rows, width: currentWidth)
        var now = DispatchTime.now().uptimeNanoseconds
        result.currentNanoseconds += now - started
        started = now
        let candidateRows = answer(candidate, rows: rows, width: candidateWidth)
        now = DispatchTime.now().uptimeNanoseconds
        result.candidateNanoseconds += now - started
        for row in 0..<rows {
            let a = currentRows[row * currentWidth..<(row + 1) * currentWidth]
            let b = candidateRows[row * candidateWidth..<(row + 1) * candidateWidth]
            // A row either model cannot answer (it failed, or gave a non-finite value) is that model's model-error.
            let aBad = a.contains { !$0.isFinite }, bBad = b.contains { !$0.isFinite }
            if aBad { result.currentDeadLetters[.modelError, default: 0] += 1 }
            if bBad { result.candidateDeadLetters[.modelError, default: 0] += 1 }
            if aBad || bBad { continue }
            result.currentScores.append(contentsOf: a)
            result.candidateScores.append(contentsOf: b)
            result.outcomes.append(pendingOutcomes[row])
            if joinsOutcomes { result.outcomeIDs.append(pendingIDs[row]) }
            if segment != nil { result.segments.append(pendingSegments[row]) }
        }
    }

    /// The model's answer rows (`width` columns each; NaN where it failed).
    private func answer(_ model: LaneModel, rows: Int, width: Int) -> [Float] {
        var out = [Float](repeating: .nan, count: rows * width)
        guard let run = try? model.run(rows) else { return out }
        _ = run.withFloats(model.outputName) { values, columns in
            for row in 0..<rows {
                let base = values.baseAddress! + row * columns
                if columns == 1 && width == 2 {
                    out[row * 2] = 1 - base[0]
                    out[row * 2 + 1] = base[0]
                } else {
                    for column in 0..<min(columns, width) { out[row * width + column] = base[column] }
                }
            }
        }
        return out
    }
}
