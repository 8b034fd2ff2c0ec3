import Foundation
import WeirKafka
import WeirCodec
import WeirModel
import WeirRegistry
import WeirStore
import Yams

/// Everything `weir serve` can be told (docs/contracts.md). Each setting has a file key
/// (`batch.max-events`), a flag (`--batch-max-events`) and an environment variable
/// (`WEIR_BATCH_MAX_EVENTS`); flag beats environment beats file beats default.
public struct WorkerSettings: Sendable, Equatable {
    /// Bootstrap servers; nil starts an embedded broker in-process.
    public var brokers: String?
    public var group = "weir"
    public var input = ["events"]
    public var output = "predictions"
    public var dlq = "dead-letters"
    public var driftTopic: String?
    public var controlTopic: String?
    public var statusTopic: String?
    public var shadowTopic: String?
    /// The model bundle directory served until the control topic says otherwise.
    public var model: String?
    /// The CPU kernels models run on; nil: the widest this machine runs. Integer layers give the
    /// same results on every set, but the plan (which layers are int8, int7 or fp32) follows the
    /// set, so a fleet of mixed machines that must score alike sets the narrowest they share.
    public var kernels: KernelSet?
    public var batchMaxEvents = 256
    public var batchMaxDelayMs = 5
    public var driftWindowEvents: Int?
    public var driftWindowMs: Int?
    public var controlKeyFile: String?
    /// PEM file of the Ed25519 public keys control messages may be signed with (one or more, for
    /// rotation; re-read when it changes): workers hold no key that can sign.
    public var controlPublicKeys: String?
    /// Control records with larger values are rejected unread (a control message is a few hundred bytes).
    public var controlMaxMessageBytes = 65_536
    /// The local cache of downloaded bundles (`s3://`, `https://` locations)...
    public var bundleCacheDir = BundleStoreSettings.defaultCacheDirectory
    /// ...and its size bound (least recently used bundles not in use leave first).
    public var bundleCacheMaxBytes = 2 << 30
    /// A bearer token for `https://` bundle locations, re-read at each download.
    public var bundleStoreHTTPSTokenFile: String?
    /// The S3 region; nil: `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's, `us-east-1`.
    public var bundleStoreS3Region: String?
    /// S3 addressing: `auto` is path-style with a custom endpoint, virtual-host on AWS.
    public var bundleStoreS3Addressing = S3Addressing.auto
    /// How long a bundle download that keeps failing is retried (with backoff) before its control
    /// message is rejected; the current model serves meanwhile.
    public var bundleStoreRetryForMs = 600_000
    /// Automatic rollback: a candidate whose model-error share passes this (0...1) is taken out.
    public var rollbackMaxErrorRate = 0.05
    /// ...or whose p99 batch inference time passes this many milliseconds.
    public var rollbackMaxP99Ms = 100.0
    /// ...judged only after the candidate has answered this many events.
    public var rollbackMinEvents = 200
    /// Observed outcomes (labels or values) of earlier predictions, joined to them per route.
    public var feedbackTopic: String?
    /// What a feedback record names its prediction by: the event's `id`, or the input record's key.
    public var feedbackJoin = FeedbackJoin.id
    /// The feedback record's field holding the observed label (classifiers) or value (regressors).
    public var feedbackLabelField = "label"
    /// Predictions remembered while their outcome may still come (the oldest leave first).
    public var feedbackMaxPending = 1_000_000
    /// ...and for at most this long.
    public var feedbackMaxAgeMs = 604_800_000
    /// An outcome window closes after this many outcomes of a route...
    public var feedbackWindowOutcomes = 1_000
    /// ...or this long after its first outcome.
    public var feedbackWindowMs = 60_000
    /// Promote or roll back a canary (or shadow) on a sequential test of its outcomes against the primary's.
    public var promoteWhen: PromotionRule?
    /// Port of `/metrics`, `/healthz`, `/readyz`; 0 picks a free port (logged).
    public var metricsPort = 9464
    public var metricsHost = "0.0.0.0"
    public var guarantee = Guarantee.atLeastOnce
    /// Dotted path to the object or array holding the features (`input.features-path`).
    public var inputFeaturesPath: String?
    /// How event values are written: JSON, or a Schema Registry format in Confluent's wire format.
    public var inputFormat = InputFormat.json
    /// How prediction, shadow and drift records are written: JSON, or Avro registered in the Schema Registry.
    public var outputFormat = OutputFormat.json
    /// The Schema Registry's base URL (framed input formats, Avro outputs).
    public var schemaRegistryURL: String?
    /// `user:password` for the registry: a secret, redacted from `--print-config` and never logged.
    public var schemaRegistryBasicAuth: String?
    /// PEM files for TLS to the registry: the CA to trust, a client certificate and its key.
    public var schemaRegistryCAFile: String?
    public var schemaRegistryCertFile: String?
    public var schemaRegistryKeyFile: String?
    /// Longest one registry request may take.
    public var schemaRegistryTimeoutMs = 5_000
    /// Which input headers answers carry on; each answer also gets CloudEvents headers of its own.
    public var outputHeaders = HeadersPolicy.copyExceptCloudEvents
    /// Whether answers carry their own CloudEvents headers (six headers each: off saves their cost
    /// where nothing downstream reads them).
    public var outputCloudEvents = true
    /// `otlp`: a span per batch (and its steps) exported over OTLP, configured by `OTEL_*`.
    public var tracing = TracingMode.off
    /// Larger event values go to the dead-letter topic as `too-large`.
    public var inputMaxBytes = 1 << 20
    /// Events consumed but not yet answered (delivered); above it the worker pauses its partitions.
    public var maxInFlightEvents = 20_000
    public var commitIntervalMs = 1_000
    /// `/healthz` fails when the poll loop has not turned for this long...
    public var healthMaxPollGapMs = 30_000
    /// ...or when an event consumed this long ago is still unanswered.
    public var healthMaxUnansweredAgeMs = 600_000
    /// Tries after a retriable delivery failure before the answer is treated as refused for good.
    public var outputMaxRetries = 5
    public var shutdownTimeoutMs = 8_000
    /// Identifies this worker in status and drift records.
    public var workerID = defaultWorkerID()
    /// `human` lines or `json` lines (one object each, with worker, model, version, partition).
    public var logFormat = LogFormat.human
    /// librdkafka properties for both clients (`kafka.security.protocol` -> `security.protocol`);
    /// `kafka.consumer.<property>` / `kafka.producer.<property>` reach one client only.
    public var kafka: [String: String] = [:]

    public init() {}

    /// How to reach the Schema Registry; nil when `schema-registry.url` is not set.
    public var registryConfiguration: RegistryConfiguration? {
        schemaRegistryURL.map {
            RegistryConfiguration(url: $0, basicAuth: schemaRegistryBasicAuth, caFile: schemaRegistryCAFile, certFile: schemaRegistryCertFile,
                                  keyFile: schemaRegistryKeyFile, timeoutMs: schemaRegistryTimeoutMs)
        }
    }

    /// Where this worker's bundles come from and where downloads are kept.
    public var bundleStoreSettings: BundleStoreSettings {
        BundleStoreSettings(cacheDirectory: bundleCacheDir, cacheMaxBytes: bundleCacheMaxBytes, httpsTokenFile: bundleStoreHTTPSTokenFile,
                            s3Region: bundleStoreS3Region, s3PathStyle: bundleStoreS3Addressing.pathStyle)
    }

    /// How this worker compiles models (the `kernels` setting).
    public var modelOptions: ModelOptions {
        var options = ModelOptions()
        if let kernels { options.kernels = kernels }
        return options
    }
}

/// Whether the worker traces (`tracing`).
public enum TracingMode: String, Sendable, CaseIterable {
    case off, otlp
}

/// S3 request addressing (`bundle-store.s3-addressing`).
public enum S3Addressing: String, Sendable, CaseIterable {
    /// Path-style with a custom endpoint (MinIO, Ceph), virtual-host on AWS.
    case auto
    /// `https://endpoint/bucket/key`.
    case path
    /// `https://bucket.endpoint/key`.
    case virtualHost = "virtual-host"

    var pathStyle: Bool? {
        switch self {
        case .auto: nil
        case .path: true
        case .virtualHost: false
        }
    }
}

func defaultWorkerID() -> String {
    var name = [CChar](repeating: 0, count: 256)
    gethostname(&name, name.count - 1)
    let host = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    return "\(host.isEmpty ? "weir" : host)-\(getpid())"
}

/// Reads settings from the file, the environment and flags, in that order of precedence (lowest first).
public enum SettingsLoader {
    /// Every flag `serve` understands besides `--config` and `--print-config`, for help text.
    public static var flagHelp: String {
        let rows = settingsCatalog.map { spec in
            "  \(spec.flag.padding(toLength: 26, withPad: " ", startingAt: 0)) \(spec.help) [\(spec.environmentName)]"
        }
        return (rows + ["  --kafka-<property>           any librdkafka property, dots as dashes [WEIR_KAFKA_<PROPERTY>]"])
            .joined(separator: "\n")
    }

    /// Loads settings. `arguments` are `serve`'s flags other than `--config`/`--print-config`.
    public static func load(file: String?, environment: [String: String], arguments: [String],
                            base: WorkerSettings = WorkerSettings()) throws -> WorkerSettings {
        var settings = base
        let byKey = Dictionary(uniqueKeysWithValues: settingsCatalog.map { ($0.key, $0) })
        if let file {
            for (key, values) in try readFile(file) {
                let source = SettingSource.file(file)
                if key.hasPrefix("kafka.") {
                    try setKafka(&settings, String(key.dropFirst(6)), try single(key, values, source), source)
                } else if let spec = byKey[key] {
                    if values.count > 1 && !spec.isList { throw SettingsError("\(key): a list \(source); give one value") }
                    try spec.apply(&settings, values, source)
                } else {
                    throw SettingsError("\(key): unknown setting \(source)\(suggestion(for: key))")
                }
            }
        }
        for spec in settingsCatalog {
            if let value = environment[spec.environmentName] {
                try spec.apply(&settings, [value], .environment(spec.environmentName))
            }
        }
        for (name, value) in environment.sorted(by: { $0.key < $1.key }) where name.hasPrefix("WEIR_KAFKA_") {
            let property = name.dropFirst("WEIR_KAFKA_".count).lowercased().replacingOccurrences(of: "_", with: ".")
            try setKafka(&settings, property, value, .environment(name))
        }
        try applyFlags(arguments, to: &settings, byKey: byKey)
        try validate(settings)
        return settings
    }

    private static func applyFlags(_ arguments: [String], to settings: inout WorkerSettings,
                                   byKey: [String: SettingSpec]) throws {
        let byFlag = Dictionary(uniqueKeysWithValues: settingsCatalog.map { ($0.flag, $0) })
        var lists = [String: [String]]()
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            guard argument.hasPrefix("--") else { throw SettingsError("'\(argument)': unexpected argument; settings are --name value") }
            var flag = argument
            var value: String?
            if let equals = argument.firstIndex(of: "=") {
                flag = String(argument[..<equals])
                value = String(argument[argument.index(after: equals)...])
            }
            if value == nil {
                guard index + 1 < arguments.count else { throw SettingsError("\(flag): needs a value") }
                index += 1
                value = arguments[index]
            }
            index += 1
            let source = SettingSource.flag(flag)
            if flag.hasPrefix("--kafka-") {
                let property = flag.dropFirst("--kafka-".count).replacingOccurrences(of: "-", with: ".")
                try setKafka(&settings, property, value!, source)
            } else if let spec = byFlag[flag] {
                if spec.isList { lists[spec.key, default: []].append(value!) } else { try spec.apply(&settings, [value!], source) }
            } else {
                throw SettingsError("\(flag): unknown flag\(suggestion(for: String(flag.dropFirst(2)).replacingOccurrences(of: "-", with: ".")))")
            }
        }
        for (key, values) in lists { try byKey[key]!.apply(&settings, values, .flag("--" + key)) }
    }

    private static func setKafka(_ settings: inout WorkerSettings, _ property: String, _ value: String,
                                 _ source: SettingSource) throws {
        if property.isEmpty { throw SettingsError("kafka.: a librdkafka property name is missing \(source)") }
        let managed = ["bootstrap.servers", "group.id", "enable.auto.commit", "enable.auto.offset.store", "transactional.id"]
        let bare = property.hasPrefix("consumer.") ? String(property.dropFirst(9))
            : property.hasPrefix("producer.") ? String(property.dropFirst(9)) : property
        if managed.contains(bare) {
            throw SettingsError("kafka.\(property) \(source): Weir sets this itself; use the brokers/group settings instead")
        }
        settings.kafka[property] = value
    }

    private static func suggestion(for key: String) -> String {
        let known = settingsCatalog.map(\.key)
        let close = known.min { distance($0, key) < distance($1, key) }
        if let close, distance(close, key) <= 3 { return "; did you mean \(close)?" }
        return "; see weir serve --help"
    }

    private static func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        if a.isEmpty { return b.count }
        var previous = Array(0...b.count)
        for i in 1...a.count {
            var current = [i] + Array(repeating: 0, count: b.count)
            for j in 1...max(b.count, 1) where j <= b.count {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            previous = current
        }
        return previous[b.count]
    }

    /// Flattens a YAML mapping into dotted keys; lists stay lists of scalars.
    static func readFile(_ path: String) throws -> [(String, [String])] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw SettingsError("--config \(path): cannot read the file")
        }
        let node: Node?
        do { node = try Yams.compose(yaml: text) } catch {
            throw SettingsError("--config \(path): not valid YAML: \(String(describing: error).split(separator: "\n").first ?? "")")
        }
        guard let node else { return [] }
        guard case .mapping = node else { throw SettingsError("--config \(path): the top level must be a mapping of settings") }
        var result = [(String, [String])]()
        func walk(_ node: Node, prefix: String) throws {
            switch node {
            case .mapping(let mapping):
                for (key, value) in mapping {
                    guard let name = key.string else { throw SettingsError("--config \(path): a key under '\(prefix)' is not text") }
                    let full = prefix.isEmpty ? name : "\(prefix).\(name)"
                    // kafka.* keys are librdkafka properties: nested maps still join with dots.
                    try walk(value, prefix: full)
                }
            case .sequence(let sequence):
                result.append((prefix, try sequence.map { item in
                    guard let scalar = item.scalar else { throw SettingsError("\(prefix): list items must be plain values in \(path)") }
                    return scalar.string
                }))
            case .scalar(let scalar):
                result.append((prefix, [scalar.string == "~" || scalar.string == "null" ? "" : scalar.string]))
            case .alias:
                throw SettingsError("\(prefix): YAML aliases are not supported in \(path)")
            }
        }
        try walk(node, prefix: "")
        return result
    }

    /// Checks settings against each other.
    public static func validate(_ settings: WorkerSettings) throws {
        if settings.controlTopic != nil && settings.controlKeyFile == nil && settings.controlPublicKeys == nil {
            throw SettingsError("control.public-keys: required with control-topic; give the PEM file of the operators' Ed25519 public keys (or control.key-file, a shared HMAC key)")
        }
        let outputs = [("output", settings.output), ("dlq", settings.dlq)] + [("drift-topic", settings.driftTopic),
            ("status-topic", settings.statusTopic), ("shadow-topic", settings.shadowTopic), ("control-topic", settings.controlTopic)]
            .compactMap { name, topic in topic.map { (name, $0) } }
        for (name, topic) in outputs where settings.input.contains(topic) {
            throw SettingsError("\(name): '\(topic)' is also an input topic; the worker would read its own records")
        }
        if let shadow = settings.shadowTopic, shadow == settings.output || shadow == settings.dlq {
            throw SettingsError("shadow-topic: '\(shadow)' is also the output or dlq topic; shadow records need their own topic")
        }
        if settings.output == settings.dlq {
            throw SettingsError("dlq: '\(settings.dlq)' is the output topic too; give dead letters their own topic")
        }
        try validateRegistry(settings)
        if let feedback = settings.feedbackTopic {
            if settings.input.contains(feedback) || feedback == settings.output || feedback == settings.dlq {
                throw SettingsError("feedback-topic: '\(feedback)' is also an input, output or dlq topic; outcomes need their own topic")
            }
        } else if settings.promoteWhen != nil {
            throw SettingsError("control.promote-when: needs feedback-topic, where the outcomes it tests arrive")
        }
        if settings.promoteWhen != nil && (settings.controlTopic == nil || settings.statusTopic == nil) {
            throw SettingsError("control.promote-when: needs control-topic (where candidates come from) and status-topic (where the group's decisions go)")
        }
        if let path = settings.inputFeaturesPath, path.split(separator: ".", omittingEmptySubsequences: false).contains(where: \.isEmpty) {
            throw SettingsError("input.features-path: '\(path)' has an empty part; use names separated by single dots")
        }
    }

    /// The input format against the `schema-registry.*` settings.
    private static func validateRegistry(_ settings: WorkerSettings) throws {
        guard let url = settings.schemaRegistryURL else {
            if settings.inputFormat.isFramed {
                throw SettingsError("schema-registry.url: required with input.format \(settings.inputFormat.rawValue); give the registry's base URL, such as http://registry:8081")
            }
            if settings.outputFormat == .avro {
                throw SettingsError("schema-registry.url: required with output.format avro; give the registry's base URL, such as http://registry:8081")
            }
            return
        }
        guard url.hasPrefix("http://") || url.hasPrefix("https://") else {
            throw SettingsError("schema-registry.url: '\(url)' is not an http:// or https:// URL")
        }
        let authority = url.split(separator: "/", maxSplits: 3, omittingEmptySubsequences: false).dropFirst(2).first ?? ""
        if authority.contains("@") {
            throw SettingsError("schema-registry.url: has credentials in it, which would be logged; put them in schema-registry.basic-auth")
        }
        if authority.isEmpty { throw SettingsError("schema-registry.url: '\(url)' has no host") }
        for (key, path) in [("schema-registry.ca-file", settings.schemaRegistryCAFile), ("schema-registry.cert-file", settings.schemaRegistryCertFile),
                            ("schema-registry.key-file", settings.schemaRegistryKeyFile)] {
            if let path, !FileManager.default.isReadableFile(atPath: path) {
                throw SettingsError("\(key): cannot read '\(path)'; give a readable PEM file")
            }
        }
        if settings.schemaRegistryKeyFile != nil && settings.schemaRegistryCertFile == nil {
            throw SettingsError("schema-registry.key-file: given without schema-registry.cert-file; give the client certificate too")
        }
    }

    /// The effective settings as YAML, secrets (passwords, keys, tokens) redacted.
    public static func render(_ settings: WorkerSettings) -> String {
        var lines = [String]()
        for spec in settingsCatalog {
            let value = spec.render(settings)
            lines.append("\(spec.key): \(value.map(yamlScalar) ?? "~")")
        }
        for (property, value) in settings.kafka.sorted(by: { $0.key < $1.key }) {
            lines.append("kafka.\(property): \(isSecretProperty(property) ? "'[redacted]'" : yamlScalar(value))")
        }
        return lines.joined(separator: "\n")
    }

    private static func yamlScalar(_ value: String) -> String {
        let plain = value.allSatisfy { $0.isLetter || $0.isNumber || "-_.:/,@".contains($0) } && !value.isEmpty
        return plain ? value : "'" + value.replacingOccurrences(of: "'", with: "''") + "'"
    }
}

/// Printed whole, settings show `--print-config`'s rendering: secrets redacted, never their values.
extension WorkerSettings: CustomStringConvertible, CustomDebugStringConvertible {
    public var description: String { SettingsLoader.render(self) }
    public var debugDescription: String { SettingsLoader.render(self) }
}

/// What the worker promises about each input event's answer (docs/reliability.md).
public enum Guarantee: String, Sendable, CaseIterable {
    /// Every event is answered at least once: offsets are committed after their answers are
    /// delivered; after a crash or rebalance, uncommitted events are answered again.
    case atLeastOnce = "at-least-once"
    /// Answers and input offsets are committed in one Kafka transaction: readers with
    /// `isolation.level=read_committed` see each event's answer once.
    case exactlyOnce = "exactly-once"
}

extension WorkerSettings {
    /// One transactional id per worker: a restarted worker with the same worker-id fences its zombie.
    var transactionalID: String { "weir-\(group)-\(workerID)" }
}
