import ArgumentParser
import Dispatch
import Foundation
import Synchronization
import WeirControl
import WeirStore
import WeirKafka
import WeirWorker

/// `weir serve`: one worker. Settings come from `--config FILE`, `WEIR_*` variables and flags.
struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run one worker: events in, predictions and dead letters out.",
        discussion: "Settings (flag beats WEIR_ variable beats file beats default):\n" + SettingsLoader.flagHelp)

    @Option(help: "A YAML file of settings (keys like batch.max-events, nested or dotted).")
    var config: String?

    @Flag(help: "Print the effective settings (secrets redacted) and exit.")
    var printConfig = false

    @Argument(parsing: .allUnrecognized, help: .hidden)
    var settings: [String] = []

    func run() throws {
        let settings: WorkerSettings
        do {
            settings = try SettingsLoader.load(file: config, environment: ProcessInfo.processInfo.environment, arguments: self.settings)
        } catch {
            throw CommandFailure("\(error)")
        }
        if printConfig {
            print(SettingsLoader.render(settings))
            return
        }
        guard let modelPath = settings.model else {
            throw CommandFailure("model: not set; give --model DIR (a bundle made by weir model package) or WEIR_MODEL")
        }
        let bundle: ModelBundle
        do {
            // A directory (relative to the working directory too), file://, s3:// or https:// (downloads
            // verified and kept in bundle-cache.dir).
            let location = modelPath.contains("://") ? modelPath : URL(fileURLWithPath: modelPath).standardizedFileURL.path
            let fetched = try BundleStore(settings: settings.bundleStoreSettings).fetch(location: location, identity: nil)
            bundle = try ModelBundle(files: fetched.files, directory: fetched.directory, options: settings.modelOptions)
        } catch {
            throw CommandFailure("model: \(error)")
        }
        try runWorker(settings: settings, bundle: bundle)
    }
}

/// Starts an embedded broker when no brokers are set, the status server and the worker; stops on
/// SIGTERM/SIGINT. `alongside` runs once the worker is built (the demo's producer and summary).
func runWorker(settings original: WorkerSettings, bundle: ModelBundle,
               alongside: ((Worker, String) -> (() -> Void))? = nil) throws {
    var settings = original
    ProcessLog.shared.configure(format: settings.logFormat, worker: settings.workerID, model: bundle.manifest.name)
    // librdkafka lines of clients no worker claims (the embedded broker's) in the same format.
    KafkaLog.setFallback { line in ProcessLog.shared.kafka(line) }
    defer { KafkaLog.setFallback(nil) }
    var cluster: EmbeddedCluster?
    if settings.brokers == nil {
        let topics = Array(Set(settings.input + [settings.output, settings.dlq]
            + [settings.driftTopic, settings.statusTopic, settings.shadowTopic, settings.feedbackTopic].compactMap { $0 }))
        do {
            let embedded = try EmbeddedCluster(brokers: 1, topics: topics.sorted().map { ($0, 8) }
                + (settings.controlTopic.map { [($0, 1)] } ?? []))
            cluster = embedded
            settings.brokers = embedded.bootstrapServers
            // The mock broker holds every empty fetch for the full fetch.wait.max.ms (a real broker
            // answers as soon as data arrives), so keep it short or latency reads as ~500 ms.
            if settings.kafka["consumer.fetch.wait.max.ms"] == nil { settings.kafka["consumer.fetch.wait.max.ms"] = "5" }
            logLine("embedded broker on \(embedded.bootstrapServers) (topics \(topics.sorted().joined(separator: ", ")), 8 partitions each)")
        } catch {
            throw CommandFailure("brokers: not set, and the embedded broker failed to start: \(error)")
        }
    }
    defer { cluster?.stop() }
    try serve(settings: settings, bundle: bundle, alongside: alongside)
}

/// The worker's lifetime, kept in its own scope so its clients close before an embedded broker stops.
private func serve(settings: WorkerSettings, bundle: ModelBundle, alongside: ((Worker, String) -> (() -> Void))?) throws {
    let worker: Worker
    do {
        worker = try Worker(settings: settings, bundle: bundle, log: { ProcessLog.shared.write($0) })
    } catch {
        throw CommandFailure("\(error)")
    }
    let server: StatusServer
    do {
        server = try StatusServer(host: settings.metricsHost, port: settings.metricsPort,
                                  metrics: { [metrics = worker.metrics] in metrics.exposition() },
                                  openMetrics: { [metrics = worker.metrics] in metrics.openMetricsExposition() },
                                  ready: { [worker] in worker.isReady },
                                  unhealthy: { [worker] in worker.unhealthyReason() })
    } catch {
        throw CommandFailure("\(error)")
    }
    logLine("metrics on http://\(settings.metricsHost):\(server.port)/metrics (also /healthz, /readyz)")
    signal(SIGTERM, SIG_IGN)
    signal(SIGINT, SIG_IGN)
    let signalQueue = DispatchQueue(label: "weir.signals")
    var sources = [DispatchSourceSignal]()
    for number in [SIGTERM, SIGINT] {
        let source = DispatchSource.makeSignalSource(signal: number, queue: signalQueue)
        source.setEventHandler {
            logLine("received \(number == SIGTERM ? "SIGTERM" : "SIGINT"): finishing the batch, flushing, committing")
            worker.stop()
        }
        source.resume()
        sources.append(source)
    }
    let cleanUp = alongside?(worker, settings.brokers!)
    var failure: (any Error)?
    do { try worker.run() } catch { failure = error }
    cleanUp?()
    server.stop()
    for source in sources { source.cancel() }
    if let failure { throw CommandFailure("\(failure)") }
}

/// The process's log on stderr: one line per record, human or JSON (`log.format`), every line
/// stamped with the worker id and model once `runWorker` knows them.
final class ProcessLog: Sendable {
    static let shared = ProcessLog()
    private let context = Mutex<(format: LogFormat, worker: String?, model: String?)>((.human, nil, nil))

    func configure(format: LogFormat, worker: String, model: String) {
        context.withLock { $0 = (format, worker, model) }
    }

    /// Writes `record`, filling in the worker and model when the record has none.
    func write(_ record: LogRecord) {
        var record = record
        let (format, worker, model) = context.withLock { $0 }
        if record.worker == nil { record.worker = worker }
        if record.model == nil { record.model = model }
        printError(record.rendered(as: format))
    }

    /// Writes one of librdkafka's lines (from a client no worker claims).
    func kafka(_ line: KafkaLogLine) {
        var record = LogRecord(level: LogLevel(syslog: line.level), message: line.message)
        record.source = "kafka"
        record.facility = line.facility
        write(record)
    }
}

/// One log line of the process itself (not of the worker): on stderr, in the configured format.
func logLine(_ text: String, level: LogLevel = .info) {
    ProcessLog.shared.write(LogRecord(level: level, message: text))
}
