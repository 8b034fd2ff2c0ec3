import Foundation
import WeirCodec
import WeirControl
import WeirKafka
import WeirRegistry
import WeirWorker
#if canImport(Glibc)
import Glibc
#endif

/// Where a run reads: files (JSONL or CSV; `-` is standard input) or a retained Kafka range.
public enum BatchInput: Sendable {
    case files([String], format: RecordFormat?)
    case kafka(KafkaRange)
}

/// The end of a `weir score` run, as printed and as `--summary-json` writes it.
public struct ScoreSummary: Codable, Sendable {
    public var model: String
    public var version: String
    /// The bundle's identity (sha256 of its manifest).
    public var sha256: String
    public var inputs: [String]
    public var output: String
    public var scored = 0
    public var deadLetters = 0
    /// Dead letters by code (`missing-feature`, ...).
    public var deadLettersByCode: [String: Int] = [:]
    /// Kafka tombstones (null values): skipped and counted, as `serve` does.
    public var tombstones = 0
    /// Kafka records outside `--from-time`/`--to-time`.
    public var outsideRange = 0
    public var seconds = 0.0
    public var eventsPerSecond = 0.0
    public var threads = 0

    enum CodingKeys: String, CodingKey {
        case model, version, sha256, inputs, output, scored, seconds, threads, tombstones
        case deadLetters = "dead_letters", deadLettersByCode = "dead_letters_by_code", outsideRange = "outside_range"
        case eventsPerSecond = "events_per_second"
    }

    /// The one line printed at the end.
    public var line: String {
        var text = "scored \(scored) events, \(deadLetters) dead letters"
        if !deadLettersByCode.isEmpty {
            text += " (" + deadLettersByCode.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ") + ")"
        }
        if tombstones > 0 { text += ", \(tombstones) tombstones skipped" }
        if outsideRange > 0 { text += ", \(outsideRange) outside the time range" }
        text += String(format: " in %.2f s: %.0f events/s on %d threads", seconds, eventsPerSecond, threads)
        return text
    }
}

/// `weir score`: one bundle over files or a retained range, on every core, with the decoders,
/// model and record shapes of `serve`. Predictions keep their input order per file or partition.
public struct ScoreRun {
    public var bundle: ModelBundle
    public var input: BatchInput
    public var output: RecordDestination
    /// Where dead letters go; nil: next to a file output (`<output>.dead-letters.jsonl`), else
    /// `dead-letters.jsonl` (created only when there is one).
    public var deadLetters: RecordDestination?
    public var options = BatchOptions()
    /// Schema Registry for framed Kafka inputs.
    public var registry: RegistryConfiguration?
    /// Draw a progress line on standard error (the command sets it when that is a terminal).
    public var showsProgress = false

    public init(bundle: ModelBundle, input: BatchInput, output: RecordDestination) {
        self.bundle = bundle
        self.input = input
        self.output = output
    }

    public func run() throws(BatchError) -> ScoreSummary {
        let started = DispatchTime.now().uptimeNanoseconds
        let source = try openSource(input, options: options)
        defer { source.close() }
        let inputs = source.inputs
        let manifest = bundle.manifest
        var summary = ScoreSummary(model: manifest.name, version: manifest.version, sha256: bundle.id,
                                   inputs: inputs.map(\.name), output: output.label, threads: max(options.threads, 1))
        let schemas = SchemaPrefetch(options: options, registry: registry)
        let predictionFile: FileWriter?
        let predictionTopic: TopicWriter?
        switch output {
        case .topic(let brokers, let topic, let properties):
            predictionTopic = try TopicWriter(brokers: brokers, topic: topic, properties: properties, option: "--output-topic")
            predictionFile = nil
        default:
            predictionFile = try FileWriter(output, option: "--output")
            predictionTopic = nil
        }
        let deadLetterDestination = deadLetters ?? {
            if case .file(let path) = output { return .file(path + ".dead-letters.jsonl") }
            return .file("dead-letters.jsonl")
        }()
        var deadLetterWriter: DeadLetterWriter?
        let progress = ProgressLine(enabled: showsProgress)
        let bundle = self.bundle, options = self.options
        let modelName = manifest.name, modelVersion = manifest.version
        try runLanes(source: schemas.wrapping(source), threads: options.threads,
                     makeLane: { ScoreLane(bundle: bundle, lane: $0, inputs: inputs, options: options) },
                     consume: { (scored: ScoredChunk) throws(BatchError) in
            let chunk = scored.chunk
            if let predictionFile { try predictionFile.write(scored.predictions) }
            if let predictionTopic {
                var start = 0
                for (index, end) in scored.ends.enumerated() {
                    let record = chunk.records[Int(scored.answered[index])]
                    try predictionTopic.send(key: chunk.key(record), value: scored.predictions, range: start..<(end - 1), copying: record,
                                             of: chunk, headers: [("weir-model", modelName), ("weir-version", modelVersion)])
                    start = end
                }
            }
            if !scored.deadLetters.isEmpty {
                if deadLetterWriter == nil {
                    deadLetterWriter = try DeadLetterWriter(deadLetterDestination, model: manifest.name, version: manifest.version)
                }
                for note in scored.deadLetters {
                    try deadLetterWriter!.write(note, chunk: chunk, input: inputs[chunk.input])
                    summary.deadLettersByCode[note.code.rawValue, default: 0] += 1
                }
            }
            summary.scored += scored.ends.count
            summary.deadLetters += scored.deadLetters.count
            summary.tombstones += scored.tombstones
        }, tick: {
            progress.draw(events: summary.scored + summary.deadLetters, startedAt: started, fraction: source.fractionRead)
        })
        progress.clear()
        try predictionFile?.close()
        try predictionTopic?.close()
        try deadLetterWriter?.close()
        summary.outsideRange = source.skipped
        summary.seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        summary.eventsPerSecond = summary.seconds > 0 ? Double(summary.scored + summary.deadLetters) / summary.seconds : 0
        return summary
    }
}

/// Opens the run's input.
func openSource(_ input: BatchInput, options: BatchOptions) throws(BatchError) -> ChunkSource {
    switch input {
    case .files(let paths, let format):
        guard !paths.isEmpty else { throw BatchError("--input: give a file (or - for standard input), or --brokers and --topic") }
        if paths.filter({ $0 == "-" }).count > 1 { throw BatchError("--input: standard input (-) can be read once") }
        return try FileSource(paths: paths, format: format, recordsPerChunk: options.recordsPerChunk)
    case .kafka(let range):
        return try KafkaRangeSource(range: range, recordsPerChunk: options.recordsPerChunk)
    }
}

/// Framed Kafka inputs: before a chunk reaches the lanes, every writer schema id in it is fetched
/// (the lanes' decoders only read the shared `WriterSchemas`). A registry that cannot answer is
/// retried for `timeoutMs`, then the run stops naming the record; an id it says does not exist
/// dead-letters its records as `unknown-schema`, as `serve` does.
final class SchemaPrefetch {
    private let options: BatchOptions
    private let client: SchemaRegistryClient?

    init(options: BatchOptions, registry: RegistryConfiguration?) {
        self.options = options
        client = options.inputFormat.isFramed ? registry.map { SchemaRegistryClient($0) } : nil
    }

    func wrapping(_ source: ChunkSource) -> ChunkSource {
        guard client != nil else { return source }
        return PrefetchingSource(inner: source, prefetch: self)
    }

    func fetch(_ chunk: InputChunk, topic: String) throws(BatchError) {
        guard let client else { return }
        for record in chunk.records where record.count >= 0 {
            guard let id = ConfluentFrame.schemaID(of: chunk.value(record)), options.writerSchemas.entry(id) == nil else { continue }
            var waitedMs = 0
            var backoffMs = 100
            while true {
                switch SchemaFetcher.entry(for: id, client: client, format: options.inputFormat) {
                case .success(let entry):
                    options.writerSchemas.store(entry, for: id)
                case .failure(let error):
                    if waitedMs < 30_000 {
                        usleep(UInt32(backoffMs) * 1000)
                        waitedMs += backoffMs
                        backoffMs = min(backoffMs * 2, 5_000)
                        continue
                    }
                    throw BatchError("\(topic) partition \(record.partition) offset \(record.position): the Schema Registry did not give schema id \(id) within 30 s: \(error)")
                }
                break
            }
        }
    }
}

/// A source whose chunks have their writer schemas fetched before the lanes see them.
final class PrefetchingSource: ChunkSource {
    private let inner: ChunkSource
    private let prefetch: SchemaPrefetch
    init(inner: ChunkSource, prefetch: SchemaPrefetch) {
        self.inner = inner
        self.prefetch = prefetch
    }
    var inputs: [InputDescription] { inner.inputs }
    var fractionRead: Double? { inner.fractionRead }
    var skipped: Int { inner.skipped }
    func close() { inner.close() }
    func next(sequence: Int) throws(BatchError) -> InputChunk? {
        guard let chunk = try inner.next(sequence: sequence) else { return nil }
        try prefetch.fetch(chunk, topic: inner.inputs[chunk.input].name)
        return chunk
    }
}

/// The progress line on a terminal: events, events/s and the time left, redrawn at most 4 times a second.
final class ProgressLine {
    private let enabled: Bool
    private var lastDrawn: UInt64 = 0
    private var drew = false

    init(enabled: Bool) { self.enabled = enabled }

    func draw(events: Int, startedAt: UInt64, fraction: Double?) {
        guard enabled else { return }
        let now = DispatchTime.now().uptimeNanoseconds
        guard now - lastDrawn >= 250_000_000 else { return }
        lastDrawn = now
        let seconds = Double(now - startedAt) / 1e9
        let rate = seconds > 0 ? Double(events) / seconds : 0
        var line = String(format: "\r%12d events  %10.0f events/s", events, rate)
        if let fraction, fraction > 0.001, fraction < 1 {
            let left = seconds * (1 - fraction) / fraction
            line += String(format: "  %3.0f%%  ETA %d:%02d", fraction * 100, Int(left) / 60, Int(left) % 60)
        }
        writeStandardError(line + "\u{1B}[K")
        drew = true
    }

    func clear() {
        if drew { writeStandardError("\r\u{1B}[K") }
    }
}

/// Writes to standard error directly (progress lines: unbuffered, no shared `FILE`).
func writeStandardError(_ text: String) {
    var text = text
    text.withUTF8 { bytes in _ = write(2, bytes.baseAddress, bytes.count) }
}
