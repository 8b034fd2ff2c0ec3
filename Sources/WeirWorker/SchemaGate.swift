import Foundation
import Synchronization
import WeirCodec
import WeirKafka
import WeirRegistry

/// Fetches writer schemas from the Schema Registry on its own thread, so a slow or absent
/// registry never blocks the poll thread. Each id asked for is fetched until the registry gives
/// an answer: the schema (stored in `WriterSchemas`), or that the id does not exist. Anything
/// else (down, slow, 5xx, refused credentials) is retried with backoff from 100 ms to 5 s; the
/// poll thread keeps the affected partitions paused meanwhile. Completions wake the poll thread.
public final class SchemaFetcher: Sendable {
    private let client: SchemaRegistryClient
    private let schemas: WriterSchemas
    private let format: InputFormat
    private let signal: EventSignal
    private let log: WorkerLog
    private let metrics: WorkerMetrics
    private let state = Mutex(State())
    private let wake = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)

    private struct State {
        var requested: [UInt32] = []
        var completed: [UInt32] = []
        var stopping = false
    }

    init(configuration: RegistryConfiguration, schemas: WriterSchemas, format: InputFormat, signal: EventSignal,
         metrics: WorkerMetrics, log: WorkerLog) {
        client = SchemaRegistryClient(configuration)
        self.schemas = schemas
        self.format = format
        self.signal = signal
        self.metrics = metrics
        self.log = log
        metrics.schemaRegistryAvailable.record(1)
        let thread = Thread { [self] in run() }
        thread.name = "weir-schemas"
        thread.start()
    }

    /// Asks for `id` (poll thread; the caller asks once per id).
    func request(_ id: UInt32) {
        state.withLock { $0.requested.append(id) }
        wake.signal()
    }

    /// Ids answered since the last call (their entries are in `WriterSchemas`).
    func takeCompleted() -> [UInt32] {
        state.withLock { state in
            defer { state.completed.removeAll() }
            return state.completed
        }
    }

    /// Stops the thread; waits at most 200 ms (a fetch under way ends by its own timeout, and its
    /// answer is dropped).
    func stop() {
        state.withLock { $0.stopping = true }
        wake.signal()
        _ = finished.wait(timeout: .now() + .milliseconds(200))
    }

    private var stopping: Bool { state.withLock { $0.stopping } }

    private func run() {
        defer { finished.signal() }
        var outageSince: UInt64?
        while true {
            wake.wait()
            while let id = state.withLock({ $0.stopping ? nil : ($0.requested.isEmpty ? nil : $0.requested.removeFirst()) }) {
                var backoffMs = 100
                while !stopping {
                    switch Self.entry(for: id, client: client, format: format) {
                    case .success(let entry):
                        schemas.store(entry, for: id)
                        if let since = outageSince {
                            let seconds = Double(monotonicNanoseconds() - since) / 1e9
                            log(String(format: "schema registry: answering again after %.1f s; resuming the partitions that waited", seconds))
                            outageSince = nil
                            metrics.schemaRegistryAvailable.record(1)
                        }
                        metrics.schemasKnown.record(schemas.count)
                        state.withLock { $0.completed.append(id) }
                        signal.raise()
                    case .failure(let error):
                        metrics.schemaRegistryErrors.increment()
                        if outageSince == nil {
                            outageSince = monotonicNanoseconds()
                            metrics.schemaRegistryAvailable.record(0)
                            log("schema registry: cannot fetch schema id \(id): \(error); the partitions whose events need it stay paused until it answers",
                                level: .warning)
                        }
                        // Backoff, woken early only to stop.
                        _ = wake.wait(timeout: .now() + .milliseconds(backoffMs))
                        backoffMs = min(backoffMs * 2, 5_000)
                        continue
                    }
                    break
                }
            }
            if stopping { return }
        }
    }

    /// What the registry's schema `id` (and the schemas it references) is to `format`: a parsed
    /// schema, one this format cannot use (with why), an id that does not exist; or the failure
    /// to answer, which is retried.
    public static func entry(for id: UInt32, client: SchemaRegistryClient, format: InputFormat) -> Result<WriterSchemas.Entry, RegistryError> {
        let schema: RegisteredSchema
        do { schema = try client.schema(id: id) } catch {
            if case .notFound(_, let message) = error { return .success(.unknown("the Schema Registry does not know it (\(message))")) }
            return .failure(error)
        }
        guard let expected = format.registrySchemaType, schema.schemaType == expected else {
            return .success(.unusable("it is a \(schema.schemaType) schema, and input.format is \(format.rawValue)"))
        }
        if format == .jsonSchema { return .success(.present) }
        let dependencies: [(name: String, text: String)]
        do { dependencies = try client.dependencies(of: schema) } catch {
            switch error {
            case .unavailable: return .failure(error)
            default: return .success(.unusable("a schema it references cannot be read: \(error)"))
            }
        }
        do {
            if format == .avro { return .success(.avro(try AvroType.parse(schema.text, references: dependencies.map(\.text)))) }
            let imports = Dictionary(dependencies.map { ($0.name, $0.text) }, uniquingKeysWith: { first, _ in first })
            return .success(.protobuf(try ProtoFile.parse(schema.text, imports: imports)))
        } catch {
            return .success(.unusable("\(error)"))
        }
    }
}

/// Framed inputs: an event whose schema id is not known yet waits, with every later event of its
/// partition, while the id is fetched; the partition is paused meanwhile (like a broker outage,
/// nothing is dead-lettered for it). When the id is answered the waiting events are decoded in
/// their order and the partition resumes. Poll thread only.
final class SchemaGate {
    private let schemas: WriterSchemas
    private let fetcher: SchemaFetcher
    private let metrics: WorkerMetrics
    /// Ids with an entry, seen by this thread (saves the shared store's lock per event).
    private var known = Set<UInt32>()
    private var lastKnown: UInt32?
    /// Ids asked for and not answered yet.
    private var requested = Set<UInt32>()
    /// Per waiting partition: its events in order, and the id they wait for.
    private var waiting: [TopicPartition: (id: UInt32, messages: [RetainedMessage])] = [:]

    init(schemas: WriterSchemas, fetcher: SchemaFetcher, metrics: WorkerMetrics) {
        self.schemas = schemas
        self.fetcher = fetcher
        self.metrics = metrics
    }

    /// Partitions whose events wait for a schema (kept paused by `PartitionFlow`).
    var waitingPartitions: Set<TopicPartition> { Set(waiting.keys) }
    /// Set when the waiting partitions change; the loop clears it after telling `PartitionFlow`.
    var waitingChanged = false

    /// Whether `retained` must wait: its partition already waits, or its value's schema id is not
    /// known yet (then the id is fetched). A value without a frame does not wait: the decoder
    /// dead-letters it as `bad-wire-format`.
    @inline(__always)
    func holds(_ retained: RetainedMessage) -> Bool {
        let message = retained.message
        if !waiting.isEmpty {
            let partition = TopicPartition(message.topic, message.partition)
            if waiting[partition] != nil {
                waiting[partition]!.messages.append(retained)
                return true
            }
        }
        guard let value = message.value, let id = ConfluentFrame.schemaID(of: value) else { return false }
        if id == lastKnown { return false }
        if known.contains(id) || schemas.entry(id) != nil {
            known.insert(id)
            lastKnown = id
            return false
        }
        waiting[TopicPartition(message.topic, message.partition)] = (id, [retained])
        waitingChanged = true
        if requested.insert(id).inserted { fetcher.request(id) }
        metrics.schemaWaitingPartitions.record(waiting.count)
        return true
    }

    /// The events of partitions whose schema has been answered, in order, taken out of waiting.
    func released() -> [RetainedMessage] {
        let completed = fetcher.takeCompleted()
        guard !completed.isEmpty else { return [] }
        for id in completed {
            requested.remove(id)
            known.insert(id)
        }
        var out: [RetainedMessage] = []
        for (partition, entry) in waiting where known.contains(entry.id) {
            out.append(contentsOf: entry.messages)
            waiting[partition] = nil
            waitingChanged = true
        }
        metrics.schemaWaitingPartitions.record(waiting.count)
        return out
    }

    /// Drops the waiting events of partitions leaving this worker (their next owner reads them
    /// from the committed offset: none of them was begun, so none was committed past).
    func drop(_ partitions: some Sequence<TopicPartition>) {
        for partition in partitions {
            if let entry = waiting.removeValue(forKey: partition) {
                entry.messages.forEach { $0.release() }
                waitingChanged = true
            }
        }
        metrics.schemaWaitingPartitions.record(waiting.count)
    }

    /// At stop: every waiting event is released unanswered (uncommitted, read again later).
    func dropAll() {
        for entry in waiting.values { entry.messages.forEach { $0.release() } }
        waiting.removeAll()
        fetcher.stop()
    }
}
