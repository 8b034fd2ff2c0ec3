import Foundation
import WeirCodec
import WeirControl
import WeirDrift
import WeirRegistry
import WeirWorker

/// `weir backtest`: the current and the candidate bundle over the same records, row by row, and a
/// report of how they differ and (with outcomes) which is right more often.
public struct BacktestRun {
    public var current: ModelBundle
    public var candidate: ModelBundle
    public var input: BatchInput
    public var options = BatchOptions()
    public var registry: RegistryConfiguration?
    /// The field (JSON) or column (CSV) holding each record's outcome, read from the records.
    public var labelField: String?
    /// Outcomes given apart from the records, joined by id (files or a topic).
    public var labels: BatchInput?
    /// A feature of either model to compare per segment: its categories, or numeric buckets.
    public var segmentFeature: String?
    public var segmentBuckets = 5
    /// Regressors: answers within this absolute difference agree.
    public var agreementTolerance: Double = 1e-3
    public var gates: [Gate] = []
    public var showsProgress = false
    /// Where the bundles were read from (for the report).
    public var currentPath = ""
    public var candidatePath = ""

    public init(current: ModelBundle, candidate: ModelBundle, input: BatchInput) {
        self.current = current
        self.candidate = candidate
        self.input = input
    }

    public func run() throws(BatchError) -> BacktestReport {
        let currentManifest = current.manifest, candidateManifest = candidate.manifest
        guard currentManifest.outputs.isClassification == candidateManifest.outputs.isClassification else {
            throw BatchError("--candidate: \(candidatePath) is a \(candidateManifest.outputs.task) model and --model \(currentPath) a \(currentManifest.outputs.task) one; a backtest compares models of one task")
        }
        if currentManifest.outputs.isClassification, currentManifest.outputs.labels != candidateManifest.outputs.labels {
            throw BatchError("--candidate: its labels \(candidateManifest.outputs.labels ?? []) are not the current model's \(currentManifest.outputs.labels ?? []); a backtest compares the same classes")
        }
        let segment = try segmentSource()
        var outcomeTable: OutcomeTable?
        if let labels {
            outcomeTable = try OutcomeTable.read(labels, field: labelField ?? "label", manifest: currentManifest, options: options)
        }
        let started = DispatchTime.now().uptimeNanoseconds
        let source = try openSource(input, options: options)
        defer { source.close() }
        let inputs = source.inputs
        var merged = ComparedChunk()
        var seen = 0
        let progress = ProgressLine(enabled: showsProgress)
        let current = self.current, candidate = self.candidate, options = self.options
        let labelField = self.labelField ?? (outcomeTable == nil ? nil : "label")
        let joins = outcomeTable != nil
        try runLanes(source: SchemaPrefetch(options: options, registry: registry).wrapping(source), threads: options.threads,
                     makeLane: { lane in
                         BacktestLane(current: current, candidate: candidate, lane: lane, inputs: inputs, options: options,
                                      labelField: labelField, joinsOutcomes: joins, segment: segment)
                     },
                     consume: { (chunk: ComparedChunk) throws(BatchError) in
            merged.currentScores.append(contentsOf: chunk.currentScores)
            merged.candidateScores.append(contentsOf: chunk.candidateScores)
            merged.segments.append(contentsOf: chunk.segments)
            if let outcomeTable {
                for id in chunk.outcomeIDs { merged.outcomes.append(outcomeTable.byID[id] ?? .nan) }
            } else {
                merged.outcomes.append(contentsOf: chunk.outcomes)
            }
            merged.currentDeadLetters.merge(chunk.currentDeadLetters, uniquingKeysWith: +)
            merged.candidateDeadLetters.merge(chunk.candidateDeadLetters, uniquingKeysWith: +)
            merged.currentNanoseconds += chunk.currentNanoseconds
            merged.candidateNanoseconds += chunk.candidateNanoseconds
            merged.tombstones += chunk.tombstones
            seen += chunk.outcomes.count + chunk.currentDeadLetters.values.reduce(0, +)
        }, tick: {
            progress.draw(events: seen, startedAt: started, fraction: source.fractionRead)
        })
        progress.clear()
        var report = BacktestReport.compute(from: merged, current: describe(current, path: currentPath),
                                            candidate: describe(candidate, path: candidatePath),
                                            isClassification: currentManifest.outputs.isClassification,
                                            labels: currentManifest.outputs.labels ?? [],
                                            segment: segmentFeature.map { ($0, segment!) }, segmentBuckets: segmentBuckets,
                                            categoryNames: segmentCategoryNames(segment),
                                            tolerance: agreementTolerance)
        report.inputs = inputs.map(\.name)
        report.outsideRange = source.skipped
        report.tombstones = merged.tombstones
        report.seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        report.threads = max(options.threads, 1)
        report.apply(gates)
        return report
    }

    private func describe(_ bundle: ModelBundle, path: String) -> BacktestReport.Bundle {
        BacktestReport.Bundle(name: bundle.manifest.name, version: bundle.manifest.version, sha256: bundle.id, path: path)
    }

    private func segmentSource() throws(BatchError) -> SegmentSource? {
        guard let segmentFeature else { return nil }
        if let index = current.manifest.inputs.firstIndex(where: { $0.name == segmentFeature }) {
            return SegmentSource(fromCurrent: true, feature: index, isCategorical: current.manifest.inputs[index].isCategorical)
        }
        if let index = candidate.manifest.inputs.firstIndex(where: { $0.name == segmentFeature }) {
            return SegmentSource(fromCurrent: false, feature: index, isCategorical: candidate.manifest.inputs[index].isCategorical)
        }
        throw BatchError("--segment \(segmentFeature): neither model has a feature of that name")
    }

    /// A categorical segment's values are model symbols: their texts.
    private func segmentCategoryNames(_ segment: SegmentSource?) -> [String] {
        guard let segment, segment.isCategorical else { return [] }
        return (segment.fromCurrent ? current : candidate).categorySymbols.strings
    }
}
