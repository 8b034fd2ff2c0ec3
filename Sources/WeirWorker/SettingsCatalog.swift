import Foundation
import WeirCodec
import WeirModel

/// A setting that cannot be used: one line naming the setting, where it came from, and what to do.
public struct SettingsError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Where a value came from, for error messages.
public enum SettingSource: Sendable, CustomStringConvertible {
    case file(String), environment(String), flag(String), defaultValue
    public var description: String {
        switch self {
        case .file(let path): return "in \(path)"
        case .environment(let name): return "from \(name)"
        case .flag(let flag): return "from \(flag)"
        case .defaultValue: return "by default"
        }
    }
}

/// One entry of the settings catalog.
struct SettingSpec: Sendable {
    let key: String
    let help: String
    let apply: @Sendable (inout WorkerSettings, [String], SettingSource) throws -> Void
    let render: @Sendable (WorkerSettings) -> String?
    /// Takes several values (`input`): repeated flags, comma-separated env, YAML list.
    var isList = false

    var flag: String { "--" + key.replacingOccurrences(of: ".", with: "-") }
    var environmentName: String { environmentVariable(for: key) }
}

func environmentVariable(for key: String) -> String {
    "WEIR_" + key.uppercased().replacingOccurrences(of: ".", with: "_").replacingOccurrences(of: "-", with: "_")
}

func single(_ key: String, _ values: [String], _ source: SettingSource) throws -> String {
    guard let value = values.last else { throw SettingsError("\(key): no value given \(source)") }
    return value
}

private func text(_ key: String, _ help: String, _ path: WritableKeyPath<WorkerSettings, String> & Sendable) -> SettingSpec {
    SettingSpec(key: key, help: help, apply: { settings, values, source in
        let value = try single(key, values, source)
        if value.isEmpty { throw SettingsError("\(key): empty value \(source); give a name") }
        settings[keyPath: path] = value
    }, render: { $0[keyPath: path] })
}

private func optionalText(_ key: String, _ help: String, _ path: WritableKeyPath<WorkerSettings, String?> & Sendable) -> SettingSpec {
    SettingSpec(key: key, help: help, apply: { settings, values, source in
        let value = try single(key, values, source)
        settings[keyPath: path] = value.isEmpty ? nil : value
    }, render: { $0[keyPath: path] })
}

private func integer(_ key: String, _ help: String, _ range: ClosedRange<Int>,
                     _ path: WritableKeyPath<WorkerSettings, Int> & Sendable) -> SettingSpec {
    SettingSpec(key: key, help: help, apply: { settings, values, source in
        settings[keyPath: path] = try parseInteger(key, try single(key, values, source), range, source)
    }, render: { String($0[keyPath: path]) })
}

private func decimal(_ key: String, _ help: String, _ range: ClosedRange<Double>,
                     _ path: WritableKeyPath<WorkerSettings, Double> & Sendable) -> SettingSpec {
    SettingSpec(key: key, help: help, apply: { settings, values, source in
        let value = try single(key, values, source)
        guard let number = Double(value.trimmingCharacters(in: .whitespaces)), number.isFinite else {
            throw SettingsError("\(key): '\(value)' \(source) is not a number")
        }
        guard range.contains(number) else {
            throw SettingsError("\(key): \(number) \(source) is out of range; use \(range.lowerBound) to \(range.upperBound)")
        }
        settings[keyPath: path] = number
    }, render: { String($0[keyPath: path]) })
}

private func optionalInteger(_ key: String, _ help: String, _ range: ClosedRange<Int>,
                             _ path: WritableKeyPath<WorkerSettings, Int?> & Sendable) -> SettingSpec {
    SettingSpec(key: key, help: help, apply: { settings, values, source in
        let value = try single(key, values, source)
        settings[keyPath: path] = value.isEmpty ? nil : try parseInteger(key, value, range, source)
    }, render: { $0[keyPath: path].map(String.init) })
}

/// A setting with a fixed set of values (an enum's raw values), refused naming them all.
private func choice<Value: RawRepresentable & CaseIterable & Sendable>(
    _ key: String, _ help: String, _ what: String, _ path: WritableKeyPath<WorkerSettings, Value> & Sendable
) -> SettingSpec where Value.RawValue == String {
    SettingSpec(key: key, help: help, apply: { settings, values, source in
        let value = try single(key, values, source)
        guard let parsed = Value(rawValue: value) else {
            let names = Value.allCases.map(\.rawValue)
            let list = names.count > 1 ? names.dropLast().joined(separator: ", ") + " or " + names.last! : names.joined()
            throw SettingsError("\(key): '\(value)' \(source) is not \(what); use \(list)")
        }
        settings[keyPath: path] = parsed
    }, render: { $0[keyPath: path].rawValue })
}

private func parseInteger(_ key: String, _ value: String, _ range: ClosedRange<Int>, _ source: SettingSource) throws -> Int {
    guard let number = Int(value.trimmingCharacters(in: .whitespaces)) else {
        throw SettingsError("\(key): '\(value)' \(source) is not a whole number")
    }
    guard range.contains(number) else {
        throw SettingsError("\(key): \(number) \(source) is out of range; use \(range.lowerBound) to \(range.upperBound)")
    }
    return number
}

/// The catalog: every `serve` setting, in the order `--print-config` shows them.
let settingsCatalog: [SettingSpec] = [
    optionalText("brokers", "Kafka bootstrap servers (host:port,...); unset starts an embedded broker", \.brokers),
    text("group", "consumer group id", \.group),
    SettingSpec(key: "input", help: "input topic(s): repeat the flag, or comma-separate", apply: { settings, values, source in
        let topics = values.flatMap { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }.filter { !$0.isEmpty }
        if topics.isEmpty { throw SettingsError("input: no topic given \(source)") }
        settings.input = topics
    }, render: { $0.input.joined(separator: ",") }, isList: true),
    text("output", "topic for prediction records", \.output),
    text("dlq", "topic for dead-letter records", \.dlq),
    optionalText("drift-topic", "topic for drift window records", \.driftTopic),
    optionalText("control-topic", "topic of signed control messages", \.controlTopic),
    optionalText("status-topic", "topic for worker status records", \.statusTopic),
    optionalText("shadow-topic", "topic for shadow predictions", \.shadowTopic),
    optionalText("model", "model bundle to serve: a directory, file://, s3://bucket/prefix or https://", \.model),
    SettingSpec(key: "kernels", help: "CPU kernels for models: auto, avx512, avx2 or portable", apply: { settings, values, source in
        let value = try single("kernels", values, source)
        if value == "auto" { settings.kernels = nil; return }
        guard let kernels = KernelSet(name: value) else {
            throw SettingsError("kernels: '\(value)' \(source) is not a kernel set; use auto, avx512, avx2 or portable")
        }
        settings.kernels = kernels
    }, render: { $0.kernels.map { "\($0.name)" } ?? "auto" }),
    integer("batch.max-events", "a batch closes at this many events", 1...65_536, \.batchMaxEvents),
    integer("batch.max-delay-ms", "...or when its oldest event has waited this long", 0...60_000, \.batchMaxDelayMs),
    optionalInteger("drift.window-events", "drift window size in events", 1...100_000_000, \.driftWindowEvents),
    optionalInteger("drift.window-ms", "drift window length in event-time milliseconds", 1...86_400_000, \.driftWindowMs),
    optionalText("control.key-file", "file holding the control topic's HMAC key (32 bytes or more)", \.controlKeyFile),
    optionalText("control.public-keys", "PEM file of the Ed25519 public keys control messages are signed with", \.controlPublicKeys),
    integer("control.max-message-bytes", "larger control records are rejected unread", 1_024...(16 << 20), \.controlMaxMessageBytes),
    text("bundle-cache.dir", "local cache of downloaded (s3://, https://) bundles", \.bundleCacheDir),
    integer("bundle-cache.max-bytes", "the cache's size bound; least recently used bundles leave first", (1 << 20)...(1 << 40),
            \.bundleCacheMaxBytes),
    optionalText("bundle-store.https-token-file", "bearer token for https:// bundle locations", \.bundleStoreHTTPSTokenFile),
    optionalText("bundle-store.s3-region", "S3 region (default: AWS_REGION, AWS_DEFAULT_REGION, the profile's)", \.bundleStoreS3Region),
    choice("bundle-store.s3-addressing", "auto (path-style with a custom endpoint), path or virtual-host", "an addressing style",
           \.bundleStoreS3Addressing),
    integer("bundle-store.retry-for-ms", "retry a failing bundle download this long before rejecting its message", 0...86_400_000,
            \.bundleStoreRetryForMs),
    decimal("control.rollback.max-error-rate", "roll a candidate back above this model-error share", 0...1, \.rollbackMaxErrorRate),
    decimal("control.rollback.max-p99-ms", "...or above this p99 batch inference time (ms)", 0.001...600_000, \.rollbackMaxP99Ms),
    integer("control.rollback.min-events", "...judged after this many candidate events", 1...100_000_000, \.rollbackMinEvents),
    optionalText("feedback-topic", "topic of observed outcomes, joined to recent predictions per route", \.feedbackTopic),
    choice("feedback.join", "what a feedback record names its prediction by: id (the event's id) or key (the input key)", "a join",
           \.feedbackJoin),
    text("feedback.label-field", "the feedback record's field holding the observed label or value", \.feedbackLabelField),
    integer("feedback.max-pending", "predictions remembered for their outcomes (the oldest leave first)", 1...100_000_000,
            \.feedbackMaxPending),
    integer("feedback.max-age-ms", "...for at most this long", 1_000...2_592_000_000, \.feedbackMaxAgeMs),
    integer("feedback.window-outcomes", "an outcome window closes after this many outcomes of a route", 1...10_000_000,
            \.feedbackWindowOutcomes),
    integer("feedback.window-ms", "...or this long after its first outcome", 1_000...86_400_000, \.feedbackWindowMs),
    SettingSpec(key: "control.promote-when", help: "promote or roll back a canary on its outcomes: 'accuracy within 0.01 at 95% after 1000'",
                apply: { settings, values, source in
        let value = try single("control.promote-when", values, source)
        if value.trimmingCharacters(in: .whitespaces).isEmpty { settings.promoteWhen = nil; return }
        do throws(PromotionRule.ParseError) { settings.promoteWhen = try PromotionRule(parsing: value) } catch {
            throw SettingsError("control.promote-when: '\(value)' \(source): \(error.description)")
        }
    }, render: { $0.promoteWhen?.description }),
    integer("metrics-port", "port for /metrics, /healthz, /readyz (0: any free port)", 0...65_535, \.metricsPort),
    text("metrics-host", "address the metrics server listens on", \.metricsHost),
    choice("guarantee", "at-least-once or exactly-once", "a guarantee", \.guarantee),
    optionalText("input.features-path", "dotted path to the object or array holding the features", \.inputFeaturesPath),
    choice("input.format", "json, or a Schema Registry format in Confluent's wire format: avro, protobuf, json-schema", "an input format",
           \.inputFormat),
    choice("output.format", "json, or avro (registered under <topic>-value in the Schema Registry)", "an output format", \.outputFormat),
    optionalText("schema-registry.url", "Schema Registry base URL (http://host:8081), for framed input formats and Avro outputs", \.schemaRegistryURL),
    SettingSpec(key: "schema-registry.basic-auth", help: "user:password for the Schema Registry (a secret: never shown)",
                apply: { settings, values, source in
        let value = try single("schema-registry.basic-auth", values, source)
        if value.isEmpty { settings.schemaRegistryBasicAuth = nil; return }
        guard let colon = value.firstIndex(of: ":"), colon != value.startIndex else {
            // The value is a secret: the message does not repeat it.
            throw SettingsError("schema-registry.basic-auth: the value \(source) is not user:password; give the user, a colon, then the password")
        }
        settings.schemaRegistryBasicAuth = value
    }, render: { $0.schemaRegistryBasicAuth == nil ? nil : "[redacted]" }),
    optionalText("schema-registry.ca-file", "PEM file of the CA the registry's TLS certificate is checked against", \.schemaRegistryCAFile),
    optionalText("schema-registry.cert-file", "PEM client certificate for mutual TLS with the registry", \.schemaRegistryCertFile),
    optionalText("schema-registry.key-file", "PEM key of the client certificate", \.schemaRegistryKeyFile),
    integer("schema-registry.timeout-ms", "longest one Schema Registry request may take", 100...120_000, \.schemaRegistryTimeoutMs),
    SettingSpec(key: "output.headers", help: "input headers answers carry: copy-except-ce (default), copy, none, or a list of names",
                apply: { settings, values, source in
        let value = try single("output.headers", values, source)
        do throws(SettingsError) { settings.outputHeaders = try HeadersPolicy(parsing: value) } catch {
            throw SettingsError("\(error.description) (\(source))")
        }
    }, render: { $0.outputHeaders.description }),
    SettingSpec(key: "output.cloudevents", help: "true (default): answers carry CloudEvents headers of their own; false: none",
                apply: { settings, values, source in
        let value = try single("output.cloudevents", values, source)
        switch value.lowercased() {
        case "true", "on", "yes": settings.outputCloudEvents = true
        case "false", "off", "no": settings.outputCloudEvents = false
        default: throw SettingsError("output.cloudevents: '\(value)' \(source) is not true or false")
        }
    }, render: { String($0.outputCloudEvents) }),
    choice("tracing", "off, or otlp: spans per batch exported over OTLP (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_TRACES_SAMPLER, ...)",
           "a tracing mode", \.tracing),
    integer("input.max-bytes", "larger event values are dead-lettered as too-large", 2...(64 << 20), \.inputMaxBytes),
    integer("max-in-flight-events", "pause consuming above this many unanswered events", 1...10_000_000, \.maxInFlightEvents),
    integer("commit-interval-ms", "how often delivered offsets are committed", 10...600_000, \.commitIntervalMs),
    integer("health.max-poll-gap-ms", "/healthz fails when the poll loop has not turned for this long", 1_000...3_600_000, \.healthMaxPollGapMs),
    integer("health.max-unanswered-age-ms", "...or an event consumed this long ago is unanswered", 1_000...86_400_000, \.healthMaxUnansweredAgeMs),
    integer("output.max-retries", "resends of an answer whose delivery failed retriably, then it is refused for good", 0...100, \.outputMaxRetries),
    integer("shutdown-timeout-ms", "longest a stop may take to flush and commit", 100...600_000, \.shutdownTimeoutMs),
    text("worker-id", "this worker's name in status and drift records", \.workerID),
    choice("log.format", "human or json (one JSON object per line)", "a log format", \.logFormat),
]
