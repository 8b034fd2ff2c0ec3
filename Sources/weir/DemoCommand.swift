import ArgumentParser
import Foundation
import WeirControl
import WeirRegistry
import WeirWorker

/// How synthetic events are written: JSON, or Avro in Confluent's wire format with a Schema Registry.
enum EventFormat: String, ExpressibleByArgument, CaseIterable {
    case json, avro
}

/// `weir demo`: embedded broker, a synthetic producer, one worker on the demo bundle, and a live
/// one-line summary each second.
struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Embedded broker + synthetic producer + one worker, with a live summary each second.")

    @Option(help: "Events per second the synthetic producer publishes.")
    var rate = 2_000

    @Option(help: "Stop by itself after this many seconds (default: run until Ctrl-C).")
    var duration: Double?

    @Option(help: "One in this many events is bad (cycling through the dead-letter codes); 0 for none.")
    var badEvery = 200

    @Option(help: "The model bundle to serve.")
    var model = "models/payments"

    @Option(help: "Port for /metrics, /healthz, /readyz (0: any free port).")
    var metricsPort = 9464

    @Option(help: "Events per batch at most.")
    var batchMaxEvents = 256

    @Option(help: "json, or avro: Confluent-framed Avro with an in-process Schema Registry.")
    var format = EventFormat.json

    @Option(help: "Longest wait for a batch to fill, in milliseconds.")
    var batchMaxDelayMs = 5

    func validate() throws {
        if rate < 0 { throw ValidationError("--rate must be 0 or more events per second") }
        if let duration, duration <= 0 { throw ValidationError("--duration must be a positive number of seconds") }
        if badEvery < 0 { throw ValidationError("--bad-every must be 0 or more") }
    }

    func run() throws {
        let bundle: ModelBundle
        do { bundle = try ModelBundle(directory: URL(fileURLWithPath: model)) } catch {
            throw CommandFailure("--model: \(error)")
        }
        var settings = WorkerSettings()
        settings.model = model
        settings.metricsPort = metricsPort
        settings.batchMaxEvents = batchMaxEvents
        settings.batchMaxDelayMs = batchMaxDelayMs
        settings.group = "weir-demo"
        settings.workerID = "demo-worker"
        // Small enough that the demo's oversized events stay under the broker's message limit.
        settings.inputMaxBytes = 64 << 10
        var registry: SchemaRegistryServer?
        var schemaID: UInt32?
        if format == .avro {
            let server: SchemaRegistryServer
            do { server = try SchemaRegistryServer() } catch { throw CommandFailure("--format avro: cannot start the demo's Schema Registry: \(error)") }
            schemaID = server.register(subject: settings.input[0] + "-value", schema: SyntheticEvents.avroSchema)
            settings.inputFormat = .avro
            settings.schemaRegistryURL = server.url
            registry = server
            logLine("demo Schema Registry at \(server.url): events are Avro, schema id \(schemaID!) under \(settings.input[0])-value")
        }
        defer { registry?.stop() }
        let rate = self.rate, duration = self.duration, badEvery = self.badEvery
        try runWorker(settings: settings, bundle: bundle) { worker, brokers in
            let producer: SyntheticProducer
            do {
                producer = try SyntheticProducer(brokers: brokers, topic: settings.input[0], rate: rate, badEvery: badEvery,
                                                 maxBytes: settings.inputMaxBytes, avroSchemaID: schemaID)
            } catch {
                logLine("demo producer failed to start: \(error)")
                worker.stop()
                return {}
            }
            let summary = Thread {
                let started = Date()
                var previous = 0
                while true {
                    Thread.sleep(forTimeInterval: 1)
                    let metrics = worker.metrics
                    let predictions = metrics.predictionTotal.load(ordering: .relaxed)
                    let deadLetters = metrics.deadLetterTotal.load(ordering: .relaxed)
                    let answered = predictions + deadLetters + metrics.tombstoneTotal.load(ordering: .relaxed)
                    let window = metrics.latency.snapshot(reset: true)
                    func milliseconds(_ micros: UInt64?) -> String {
                        guard let micros else { return "-" }
                        return String(Double(micros / 100) / 10) + " ms"
                    }
                    let elapsed = Date().timeIntervalSince(started)
                    writeLine("t=\(Int(elapsed.rounded()))s  events/s \(answered - previous)  p50 \(milliseconds(window.quantile(0.5)))"
                          + "  p99 \(milliseconds(window.quantile(0.99)))  predictions \(predictions)  dead letters \(deadLetters)"
                          + "  model \(bundle.manifest.name) \(worker.servingVersions.primary)", to: STDOUT_FILENO)
                    previous = answered
                    if let duration, elapsed >= duration - 0.5 {
                        worker.stop()
                        break
                    }
                    if !worker.isRunning && elapsed > 10 { break }
                }
            }
            summary.start()
            return { producer.stop() }
        }
    }
}

/// `weir produce`: the demo's synthetic producer against any Kafka (the compose file's producer).
struct ProduceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "produce",
        abstract: "Publish synthetic ~750-byte events with 32 numbers and 3 categories (the demo stream) to a topic.")

    @Option(help: "Kafka bootstrap servers (host:port,...).")
    var brokers: String

    @Option(help: "The topic to publish to.")
    var topic = "events"

    @Option(help: "Events per second (0: as fast as the client takes them).")
    var rate = 500

    @Option(help: "One in this many events is bad (cycling through the dead-letter codes); 0 for none.")
    var badEvery = 200

    @Option(help: "One in this many events is a poison record (odd timestamps, hostile JSON, a 100 KB key); 0 for none.")
    var poisonEvery = 0

    @Option(help: "Stop after this many seconds (default: run until Ctrl-C or SIGTERM).")
    var duration: Double?

    @Option(help: "Also publish each good event's observed outcome ({\"id\":..,\"label\":0|1}, keyed like the event) to this topic.")
    var outcomes: String?

    @Option(name: .customLong("outcome-delay-ms"), help: "How long after its event an outcome is published.")
    var outcomeDelayMs = 2_000

    @Option(help: "json, or avro: Confluent-framed Avro, its schema registered under <topic>-value.")
    var format = EventFormat.json

    @Option(help: "The Schema Registry's base URL (with --format avro).")
    var schemaRegistryURL: String?

    @Option(help: "user:password for the Schema Registry (a secret; WEIR_SCHEMA_REGISTRY_BASIC_AUTH also works).")
    var schemaRegistryBasicAuth: String?

    func validate() throws {
        if rate < 0 { throw ValidationError("--rate must be 0 or more events per second") }
        if format == .avro && schemaRegistryURL == nil {
            throw ValidationError("--schema-registry-url: required with --format avro; give the registry's base URL")
        }
        if badEvery < 0 { throw ValidationError("--bad-every must be 0 or more") }
        if poisonEvery < 0 { throw ValidationError("--poison-every must be 0 or more") }
        if let duration, duration <= 0 { throw ValidationError("--duration must be a positive number of seconds") }
        if outcomeDelayMs < 0 { throw ValidationError("--outcome-delay-ms must be 0 or more") }
        if outcomes == topic { throw ValidationError("--outcomes: '\(topic)' is the events' topic; give outcomes their own topic") }
        if outcomeDelayMs < 0 { throw ValidationError("--outcome-delay-ms must be 0 or more") }
        if outcomes == topic { throw ValidationError("--outcomes: '\(topic)' is the events' topic; give outcomes their own topic") }
    }

    func run() throws {
        var schemaID: UInt32?
        if format == .avro, let url = schemaRegistryURL {
            let auth = schemaRegistryBasicAuth ?? ProcessInfo.processInfo.environment["WEIR_SCHEMA_REGISTRY_BASIC_AUTH"]
            let client = SchemaRegistryClient(RegistryConfiguration(url: url, basicAuth: auth))
            do { schemaID = try client.register(subject: topic + "-value", schema: SyntheticEvents.avroSchema) } catch {
                throw CommandFailure("--schema-registry-url: cannot register the events' schema under \(topic)-value: \(error)")
            }
            logLine("registered the events' Avro schema under \(topic)-value as id \(schemaID!)")
        }
        let producer: SyntheticProducer
        do {
            producer = try SyntheticProducer(brokers: brokers, topic: topic, rate: rate, badEvery: badEvery, poisonEvery: poisonEvery,
                                             maxBytes: 64 << 10, avroSchemaID: schemaID, outcomes: outcomes, outcomeDelayMs: outcomeDelayMs)
        } catch {
            throw CommandFailure("--brokers: cannot start a producer: \(error)")
        }
        let stop = DispatchSemaphore(value: 0)
        var sources = [any DispatchSourceSignal]()
        for number in [SIGTERM, SIGINT] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number)
            source.setEventHandler { stop.signal() }
            source.resume()
            sources.append(source)
        }
        if let duration { _ = stop.wait(timeout: .now() + duration) } else { stop.wait() }
        withExtendedLifetime(sources) {}
        producer.stop()
        logLine("produced \(producer.sent.load(ordering: .relaxed)) events to \(topic) (\(producer.failed.load(ordering: .relaxed)) refused)"
            + (outcomes.map { ", \(producer.sentOutcomes.load(ordering: .relaxed)) outcomes to \($0)" } ?? ""))
    }
}
