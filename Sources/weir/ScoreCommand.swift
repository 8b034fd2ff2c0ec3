import ArgumentParser
import Foundation
import WeirBatch
import WeirCodec
import WeirControl
import WeirModel
import WeirRegistry
import WeirWorker
#if canImport(Glibc)
import Glibc
#endif

/// The inputs `weir score` and `weir backtest` share: files, or a retained Kafka range.
struct BatchInputOptions: ParsableArguments {
    @Option(name: .customLong("input"), help: "A JSONL or CSV file (repeatable; - for standard input).")
    var inputs: [String] = []

    @Option(help: "File format: jsonl or csv (default: csv for *.csv, else jsonl).")
    var format: String?

    @Option(help: "Kafka bootstrap servers: read a retained range of --topic instead of files.")
    var brokers: String?

    @Option(help: "The topic to read (with --brokers).")
    var topic: String?

    @Option(help: "Partitions to read, comma-separated (default: all).")
    var partitions: String?

    @Option(name: .customLong("from-time"), help: "Records at or after this time (RFC 3339).")
    var fromTime: String?

    @Option(name: .customLong("to-time"), help: "Records before this time (RFC 3339).")
    var toTime: String?

    @Option(name: .customLong("from-offset"), help: "The first offset read in each partition (default: the earliest retained).")
    var fromOffset: Int64?

    @Option(name: .customLong("to-offset"), help: "The offset each partition stops before (default: its end when the run starts).")
    var toOffset: Int64?

    @Option(name: .customLong("input-format"), help: "Kafka values: json, avro, protobuf or json-schema (as serve's input.format).")
    var inputFormat = "json"

    @Option(name: .customLong("schema-registry-url"), help: "The Schema Registry (framed --input-format).")
    var schemaRegistryURL: String?

    @Option(name: .customLong("schema-registry-basic-auth"), help: "user:password for the registry (a secret: never printed).")
    var schemaRegistryBasicAuth: String?

    @Option(name: .customLong("features-path"), help: "Object keys to the features, dotted (as serve's input.features-path).")
    var featuresPath: String?

    @Option(name: .customLong("input-max-bytes"), help: "Larger records are dead-lettered as too-large.")
    var inputMaxBytes = 1 << 20

    @Option(help: "Scoring threads (default: every core).")
    var threads: Int?

    @Option(name: .customLong("batch-rows"), help: "Rows per model run.")
    var batchRows = 256

    @Option(name: .customLong("chunk-records"), help: "Records a thread takes at a time (the unit of output order).")
    var chunkRecords = 1024

    @Option(help: "CPU kernels: auto, avx512, avx2 or portable.")
    var kernels = "auto"

    @Option(name: .customLong("kafka"), parsing: .upToNextOption, help: "librdkafka properties as name=value.")
    var kafka: [String] = []

    @Flag(inversion: .prefixedNo, help: "Show a progress line (default: when standard error is a terminal).")
    var progress: Bool?

    var kafkaProperties: [String: String] {
        get throws { try parseKafkaProperties(kafka) }
    }

    var showsProgress: Bool { progress ?? (isatty(2) != 0) }

    func modelOptions() throws -> ModelOptions {
        var options = ModelOptions()
        if kernels != "auto" {
            guard let chosen = KernelSet(name: kernels) else { throw CommandFailure("--kernels \(kernels): use auto, avx512, avx2 or portable") }
            options.kernels = chosen
        }
        return options
    }

    func loadBundle(_ path: String, option: String) throws -> ModelBundle {
        do { return try ModelBundle(directory: URL(fileURLWithPath: path), options: try modelOptions()) } catch let failure as CommandFailure {
            throw failure
        } catch {
            throw CommandFailure("\(option) \(path): \(error)")
        }
    }

    func batchOptions() throws -> BatchOptions {
        var options = BatchOptions()
        if let threads {
            guard threads >= 1 else { throw CommandFailure("--threads: give at least 1") }
            options.threads = threads
        }
        guard batchRows >= 1 else { throw CommandFailure("--batch-rows: give at least 1") }
        options.batchRows = batchRows
        guard chunkRecords >= 1 else { throw CommandFailure("--chunk-records: give at least 1") }
        options.recordsPerChunk = chunkRecords
        guard inputMaxBytes >= 1 else { throw CommandFailure("--input-max-bytes: give at least 1") }
        options.maxBytes = inputMaxBytes
        options.featuresPath = featuresPath.map { $0.split(separator: ".").map(String.init) } ?? []
        guard let format = InputFormat(rawValue: inputFormat) else {
            throw CommandFailure("--input-format: '\(inputFormat)' is not json, avro, protobuf or json-schema")
        }
        options.inputFormat = format
        if format.isFramed && schemaRegistryURL == nil {
            throw CommandFailure("--schema-registry-url: --input-format \(inputFormat) needs the registry holding the writer schemas")
        }
        return options
    }

    var registry: RegistryConfiguration? {
        schemaRegistryURL.map { RegistryConfiguration(url: $0, basicAuth: schemaRegistryBasicAuth) }
    }

    func input() throws -> BatchInput {
        if let brokers {
            guard inputs.isEmpty else { throw CommandFailure("--input: read files or a topic (--brokers), not both") }
            guard let topic else { throw CommandFailure("--topic: --brokers reads a topic; name it") }
            var range = KafkaRange(brokers: brokers, topic: topic)
            range.properties = try kafkaProperties
            if let partitions {
                range.partitions = try partitions.split(separator: ",").map { text in
                    guard let number = Int32(text.trimmingCharacters(in: .whitespaces)), number >= 0 else {
                        throw CommandFailure("--partitions: '\(text)' is not a partition number")
                    }
                    return number
                }
            }
            range.fromTimeMs = try fromTime.map { try Self.parseTime($0, option: "--from-time") }
            range.toTimeMs = try toTime.map { try Self.parseTime($0, option: "--to-time") }
            if let from = range.fromTimeMs, let to = range.toTimeMs, to <= from {
                throw CommandFailure("--to-time: \(toTime!) is not after --from-time \(fromTime!)")
            }
            if let fromOffset, fromOffset < 0 { throw CommandFailure("--from-offset: give an offset of 0 or more") }
            if let toOffset, toOffset < 0 { throw CommandFailure("--to-offset: give an offset of 0 or more") }
            if let fromOffset, let toOffset, toOffset <= fromOffset {
                throw CommandFailure("--to-offset: \(toOffset) is not after --from-offset \(fromOffset)")
            }
            range.fromOffset = fromOffset
            range.toOffset = toOffset
            return .kafka(range)
        }
        if topic != nil { throw CommandFailure("--brokers: --topic needs the brokers to read it from") }
        guard !inputs.isEmpty else { throw CommandFailure("--input: give a JSONL or CSV file (- for standard input), or --brokers and --topic") }
        var recordFormat: RecordFormat?
        if let format {
            guard let parsed = RecordFormat(rawValue: format), parsed != .kafka else {
                throw CommandFailure("--format: '\(format)' is not jsonl or csv")
            }
            recordFormat = parsed
        }
        return .files(inputs, format: recordFormat)
    }

    /// RFC 3339 (with or without fractional seconds) as milliseconds since the epoch.
    static func parseTime(_ text: String, option: String) throws -> Int64 {
        let plain = ISO8601DateFormatter()
        plain.formatOptions = [.withInternetDateTime]
        let fractional = ISO8601DateFormatter()
        fractional.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        guard let date = plain.date(from: text) ?? fractional.date(from: text) else {
            throw CommandFailure("\(option): '\(text)' is not an RFC 3339 time such as 2026-12-01T00:00:00Z")
        }
        return Int64((date.timeIntervalSince1970 * 1000).rounded())
    }
}

/// `weir score`: offline batch scoring with the same decoders, model and records as `serve`.
struct ScoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "score",
        abstract: "Score JSONL or CSV files, or a retained Kafka range, with one bundle on every core.",
        discussion: """
        Predictions are serve's records (source: file and line, or topic, partition and offset), in input \
        order per file or partition. Bad records go to --dead-letters (a JSONL file; default next to \
        --output) or --dead-letter-topic with serve's codes. Ends with one summary line on standard error; \
        exit status 0 when the run finished, whatever the dead letters.
        """)

    @Option(help: "The model bundle directory.")
    var model: String

    @OptionGroup var input: BatchInputOptions

    @Option(help: "Predictions as JSON lines (- for standard output).")
    var output = "-"

    @Option(name: .customLong("output-topic"), help: "Publish predictions to this topic on --output-brokers (or --brokers) instead.")
    var outputTopic: String?

    @Option(name: .customLong("output-brokers"), help: "Brokers for --output-topic and --dead-letter-topic (default: --brokers).")
    var outputBrokers: String?

    @Option(name: .customLong("dead-letters"), help: "Dead letters as JSON lines (default: <output>.dead-letters.jsonl, or dead-letters.jsonl).")
    var deadLetters: String?

    @Option(name: .customLong("dead-letter-topic"), help: "Publish dead letters to this topic, as serve's dlq records.")
    var deadLetterTopic: String?

    @Option(name: .customLong("summary-json"), help: "Write the run's summary as JSON to this file.")
    var summaryJSON: String?

    func run() throws {
        let bundle = try input.loadBundle(model, option: "--model")
        let source = try input.input()
        let properties = try input.kafkaProperties
        let topicBrokers = outputBrokers ?? input.brokers
        var destination = RecordDestination.path(output)
        if let outputTopic {
            guard let topicBrokers else { throw CommandFailure("--output-topic: give --output-brokers (or read from --brokers)") }
            destination = .topic(brokers: topicBrokers, topic: outputTopic, properties: properties)
        }
        var run = ScoreRun(bundle: bundle, input: source, output: destination)
        if let deadLetterTopic {
            guard let topicBrokers else { throw CommandFailure("--dead-letter-topic: give --output-brokers (or read from --brokers)") }
            if deadLetters != nil { throw CommandFailure("--dead-letters: give a file or --dead-letter-topic, not both") }
            run.deadLetters = .topic(brokers: topicBrokers, topic: deadLetterTopic, properties: properties)
        } else if let deadLetters {
            run.deadLetters = .path(deadLetters)
        }
        run.options = try input.batchOptions()
        run.registry = input.registry
        run.showsProgress = input.showsProgress
        let summary: ScoreSummary
        do { summary = try run.run() } catch { throw CommandFailure("\(error)") }
        FileHandle.standardError.write(Data((summary.line + "\n").utf8))
        if let summaryJSON {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            do { try encoder.encode(summary).write(to: URL(fileURLWithPath: summaryJSON)) } catch {
                throw CommandFailure("--summary-json \(summaryJSON): \(error)")
            }
        }
    }
}
