import Foundation
import Testing
import WeirControl
import WeirModel
import WeirTestSupport
@testable import WeirWorker

@Suite(.timeLimit(.minutes(1))) final class SettingsTests {
    /// Config files this test wrote, removed when it ends (a suite instance lives for one test).
    private var written = [URL]()

    deinit { for url in written { try? FileManager.default.removeItem(at: url) } }

    func writeConfig(_ text: String) throws -> String {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("weir-\(UUID().uuidString).yaml")
        try text.write(to: url, atomically: true, encoding: .utf8)
        written.append(url)
        return url.path
    }

    @Test func flagBeatsEnvironmentBeatsFileBeatsDefault() throws {
        let file = try writeConfig("""
            brokers: file:9092
            group: from-file
            input: [a, b]
            batch:
              max-events: 100
              max-delay-ms: 7
            kafka:
              security.protocol: SASL_SSL
              sasl.password: hunter2
            """)
        let settings = try SettingsLoader.load(
            file: file,
            environment: ["WEIR_GROUP": "from-env", "WEIR_BATCH_MAX_EVENTS": "200", "WEIR_KAFKA_SASL_USERNAME": "alice",
                          "UNRELATED": "x"],
            arguments: ["--batch-max-events", "300", "--input=c", "--input", "d", "--kafka-client-rack=r1"])
        #expect(settings.brokers == "file:9092")
        #expect(settings.group == "from-env")
        #expect(settings.batchMaxEvents == 300)
        #expect(settings.batchMaxDelayMs == 7)
        #expect(settings.input == ["c", "d"])
        #expect(settings.output == "predictions")
        #expect(settings.kafka == ["security.protocol": "SASL_SSL", "sasl.password": "hunter2", "sasl.username": "alice",
                                   "client.rack": "r1"])
        let printed = SettingsLoader.render(settings)
        #expect(printed.contains("batch.max-events: 300"))
        #expect(printed.contains("kafka.security.protocol: SASL_SSL"))
        #expect(printed.contains("kafka.sasl.password: '[redacted]'"))
        #expect(!printed.contains("hunter2"))
    }

    /// `kafka.*` keys follow the same precedence as every setting; a client-specific key
    /// (`kafka.consumer.*`) beats the shared one for that client only.
    @Test func kafkaPropertiesFollowThePrecedenceAndClientKeysWin() throws {
        let file = try writeConfig("""
            kafka:
              fetch.wait.max.ms: 100
              linger.ms: 20
              consumer:
                fetch.wait.max.ms: 50
            """)
        let fileOnly = try SettingsLoader.load(file: file, environment: [:], arguments: [])
        #expect(fileOnly.kafka == ["fetch.wait.max.ms": "100", "linger.ms": "20", "consumer.fetch.wait.max.ms": "50"])
        let settings = try SettingsLoader.load(
            file: file, environment: ["WEIR_KAFKA_LINGER_MS": "10", "WEIR_KAFKA_FETCH_WAIT_MAX_MS": "90"],
            arguments: ["--kafka-linger-ms", "2", "--kafka-producer-linger-ms=3"])
        #expect(settings.kafka["linger.ms"] == "2", "flag beats environment beats file")
        #expect(settings.kafka["fetch.wait.max.ms"] == "90", "environment beats file")
        #expect(settings.kafkaProperties(for: "consumer")["fetch.wait.max.ms"] == "50", "the consumer's own key wins for the consumer")
        #expect(settings.kafkaProperties(for: "producer")["fetch.wait.max.ms"] == "90", "the shared key reaches the producer")
        #expect(settings.kafkaProperties(for: "producer")["linger.ms"] == "3")
        #expect(settings.kafkaProperties(for: "consumer")["linger.ms"] == "2")
        #expect(settings.kafkaProperties(for: "consumer").keys.allSatisfy { !$0.hasPrefix("consumer.") && !$0.hasPrefix("producer.") })
    }

    /// A list setting is replaced whole by a higher source, never merged with a lower one.
    @Test func aListIsReplacedWholeByAHigherSource() throws {
        let file = try writeConfig("input: [a, b]\n")
        #expect(try SettingsLoader.load(file: file, environment: [:], arguments: []).input == ["a", "b"])
        #expect(try SettingsLoader.load(file: file, environment: ["WEIR_INPUT": "e1, e2"], arguments: []).input == ["e1", "e2"])
        #expect(try SettingsLoader.load(file: file, environment: ["WEIR_INPUT": "e1"], arguments: ["--input", "c,d", "--input=f"]).input
                == ["c", "d", "f"])
        #expect { _ = try SettingsLoader.load(file: nil, environment: [:], arguments: ["--input", " , "]) } throws: {
            "\($0)" == "input: no topic given from --input"
        }
    }

    /// A secret librdkafka refuses is named, never shown: not in the worker's error, nor in the
    /// printed settings.
    @Test func aRefusedSecretIsNamedButNotShown() throws {
        var settings = WorkerSettings()
        settings.brokers = "127.0.0.1:1"
        settings.model = "models/demo"
        settings.kafka["ssl.key.passwordx"] = "hunter2-secret"
        settings.kafka["consumer.sasl.oauthbearer.tokenx"] = "hunter3-secret"
        let worker = try Worker(settings: settings, bundle: try ModelBundle(directory: demoBundleURL))
        var message = ""
        do { try worker.run() } catch { message = "\(error)" }
        #expect(message.contains("ssl.key.passwordx") || message.contains("sasl.oauthbearer.tokenx"), "the property is named: \(message)")
        #expect(!message.contains("hunter2") && !message.contains("hunter3"), "the value is not shown: \(message)")
        let printed = SettingsLoader.render(settings)
        #expect(!printed.contains("hunter2") && !printed.contains("hunter3"))
        #expect(printed.contains("kafka.ssl.key.passwordx: '[redacted]'"))
    }

    @Test(arguments: [
        (["--batch-max-events", "lots"], "batch.max-events: 'lots' from --batch-max-events is not a whole number"),
        (["--batch-max-events", "0"], "batch.max-events: 0 from --batch-max-events is out of range; use 1 to 65536"),
        (["--batch-max-evnts", "5"], "--batch-max-evnts: unknown flag; did you mean batch.max-events?"),
        (["--guarantee", "maybe"], "guarantee: 'maybe' from --guarantee is not a guarantee; use at-least-once or exactly-once"),
        (["--output", "events"], "output: 'events' is also an input topic; the worker would read its own records"),
        (["--kafka-group-id", "x"], "kafka.group.id from --kafka-group-id: Weir sets this itself; use the brokers/group settings instead"),
        (["--metrics-port"], "--metrics-port: needs a value"),
        (["--control-topic", "control"], "control.public-keys: required with control-topic; give the PEM file of the operators' Ed25519 public keys (or control.key-file, a shared HMAC key)"),
        (["--control-rollback-max-error-rate", "5%"], "control.rollback.max-error-rate: '5%' from --control-rollback-max-error-rate is not a number"),
        (["--control-rollback-max-error-rate", "1.5"], "control.rollback.max-error-rate: 1.5 from --control-rollback-max-error-rate is out of range; use 0.0 to 1.0"),
        (["--shadow-topic", "predictions"], "shadow-topic: 'predictions' is also the output or dlq topic; shadow records need their own topic"),
        (["--status-topic", "events"], "status-topic: 'events' is also an input topic; the worker would read its own records"),
        (["--log-format", "xml"], "log.format: 'xml' from --log-format is not a log format; use human or json"),
        (["--kernels", "sse9"], "kernels: 'sse9' from --kernels is not a kernel set; use auto, avx512, avx2 or portable"),
        (["--input-format", "xml"], "input.format: 'xml' from --input-format is not an input format; use json, avro, protobuf or json-schema"),
        (["--output-format", "xml"], "output.format: 'xml' from --output-format is not an output format; use json or avro"),
        (["--output-format", "avro"], "schema-registry.url: required with output.format avro; give the registry's base URL, such as http://registry:8081"),
        (["--input-format", "avro"], "schema-registry.url: required with input.format avro; give the registry's base URL, such as http://registry:8081"),
        (["--input-format", "protobuf"], "schema-registry.url: required with input.format protobuf; give the registry's base URL, such as http://registry:8081"),
        (["--input-format", "avro", "--schema-registry-url", "registry:8081"], "schema-registry.url: 'registry:8081' is not an http:// or https:// URL"),
        (["--input-format", "avro", "--schema-registry-url", "https://bob:pw@registry:8081"],
         "schema-registry.url: has credentials in it, which would be logged; put them in schema-registry.basic-auth"),
        (["--schema-registry-url", "https://r", "--schema-registry-ca-file", "/nonexistent/ca.pem"],
         "schema-registry.ca-file: cannot read '/nonexistent/ca.pem'; give a readable PEM file"),
        (["--schema-registry-basic-auth", "no-colon-secret"],
         "schema-registry.basic-auth: the value from --schema-registry-basic-auth is not user:password; give the user, a colon, then the password"),
    ])
    func badFlagsNameTheSetting(arguments: [String], message: String) throws {
        #expect(throws: SettingsError.self) { try SettingsLoader.load(file: nil, environment: [:], arguments: arguments) }
        do {
            _ = try SettingsLoader.load(file: nil, environment: [:], arguments: arguments)
        } catch {
            #expect("\(error)" == message)
            #expect(!"\(error)".contains("\n"))
        }
    }

    /// The Schema Registry's settings: precedence as every setting, the password never printed.
    @Test func schemaRegistrySettingsFollowThePrecedenceAndTheirSecretIsNeverShown() throws {
        let file = try writeConfig("input:\n  format: avro\nschema-registry:\n  url: http://file:8081\n  basic-auth: bob:file-secret\n")
        let settings = try SettingsLoader.load(file: file, environment: ["WEIR_SCHEMA_REGISTRY_BASIC_AUTH": "bob:env-secret"],
                                               arguments: ["--schema-registry-url", "https://flag:8081/", "--schema-registry-timeout-ms", "900"])
        #expect(settings.inputFormat == .avro)
        #expect(settings.schemaRegistryBasicAuth == "bob:env-secret")
        let registry = try #require(settings.registryConfiguration)
        #expect(registry.url == "https://flag:8081" && registry.timeoutMs == 900)
        let printed = SettingsLoader.render(settings)
        #expect(printed.contains("schema-registry.basic-auth: '[redacted]'"))
        #expect(printed.contains("input.format: avro"))
        #expect(!printed.contains("secret"))
        // Settings printed whole (a stray log line, an error) show the rendering, secrets redacted.
        #expect(!"\(settings)".contains("secret") && !String(reflecting: settings).contains("secret"))
        let plain = try SettingsLoader.load(file: nil, environment: [:], arguments: [])
        #expect(plain.inputFormat == .json && plain.registryConfiguration == nil)
        #expect(SettingsLoader.render(plain).contains("schema-registry.basic-auth: ~"))
    }

    /// `kernels` caps the CPU kernels a worker compiles models for (a mixed fleet scores alike on
    /// the narrowest set its machines share); auto leaves them to the machine.
    @Test func kernelsSettingReachesTheModelOptions() throws {
        let auto = try SettingsLoader.load(file: nil, environment: [:], arguments: [])
        #expect(auto.kernels == nil && auto.modelOptions.kernels == KernelSet.best)
        #expect(SettingsLoader.render(auto).contains("kernels: auto"))
        let avx2 = try SettingsLoader.load(file: nil, environment: ["WEIR_KERNELS": "avx2"], arguments: [])
        #expect(avx2.kernels == .avx2 && avx2.modelOptions.kernels == .avx2)
        #expect(SettingsLoader.render(avx2).contains("kernels: avx2"))
        let flag = try SettingsLoader.load(file: try writeConfig("kernels: avx512\n"), environment: [:], arguments: ["--kernels", "portable"])
        #expect(flag.kernels == .portable)
    }

    @Test func badFileAndEnvironmentValuesNameTheSettingAndSource() throws {
        let file = try writeConfig("batch:\n  max-delay-ms: soon\n")
        do {
            _ = try SettingsLoader.load(file: file, environment: [:], arguments: [])
            Issue.record("expected an error")
        } catch {
            #expect("\(error)" == "batch.max-delay-ms: 'soon' in \(file) is not a whole number")
        }
        let unknown = try writeConfig("batch:\n  max-event: 5\n")
        do {
            _ = try SettingsLoader.load(file: unknown, environment: [:], arguments: [])
            Issue.record("expected an error")
        } catch {
            #expect("\(error)" == "batch.max-event: unknown setting in \(unknown); did you mean batch.max-events?")
        }
        do {
            _ = try SettingsLoader.load(file: nil, environment: ["WEIR_METRICS_PORT": "70000"], arguments: [])
            Issue.record("expected an error")
        } catch {
            #expect("\(error)" == "metrics-port: 70000 from WEIR_METRICS_PORT is out of range; use 0 to 65535")
        }
    }

    @Test func serveExitsNonZeroWithOneLineForABadSetting() throws {
        let weir = builtProduct("weir").path
        let bad = try run([weir, "serve", "--batch-max-events", "abc"])
        #expect(bad.status != 0)
        let lines = bad.errors.split(separator: "\n")
        #expect(lines.count == 1, "one line: \(bad.errors)")
        #expect(bad.errors.contains("batch.max-events: 'abc' from --batch-max-events is not a whole number"))
        let noModel = try run([weir, "serve", "--brokers", "127.0.0.1:1"])
        #expect(noModel.status != 0)
        #expect(noModel.errors.contains("model: not set"))
        let printed = try run(["env", "WEIR_KAFKA_SSL_KEY_PASSWORD=secret", weir, "serve", "--print-config", "--model", "m"])
        #expect(printed.status == 0)
        #expect(printed.output.contains("kafka.ssl.key.password: '[redacted]'"))
        #expect(printed.output.contains("model: m"))
        #expect(!printed.output.contains("secret"))
    }

    /// Log records: JSON lines escape what JSON must escape and leave out fields that do not apply;
    /// human lines show level and the partition the line is about.
    @Test func logRecordsRenderAsOneLineEach() throws {
        var record = LogRecord(level: .warning, message: "quote \" backslash \\ newline \n tab \t bell \u{7} é",
                               time: Date(timeIntervalSince1970: 1_795_000_000.123))
        record.worker = "w-1"
        record.version = "1.2.0"
        record.topic = "events"
        record.partition = 3
        record.offset = 42
        let json = record.rendered(as: .json)
        #expect(!json.contains("\n"))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        #expect(object["msg"] as? String == record.message)
        #expect(object["ts"] as? String == "2026-11-18T11:06:40.123Z")
        #expect(object["level"] as? String == "warning" && object["worker"] as? String == "w-1")
        #expect(object["partition"] as? Int == 3 && object["offset"] as? Int == 42 && object["topic"] as? String == "events")
        #expect(object["model"] == nil && object["partitions"] == nil, "absent fields are left out")
        let human = record.rendered(as: .human)
        #expect(human.hasPrefix("2026-11-18T11:06:40.123Z warning [events[3]@42] quote"))
        #expect(!human.contains("\n") && human.contains("newline \\n tab"), "a human line stays one line: \(human)")
        // A line written while a sampled batch is answered names its trace (`tracing otlp`).
        let trace = try #require(TraceIDs(traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"))
        record.traceID = trace.traceID
        record.spanID = trace.spanID
        let traced = try #require(try JSONSerialization.jsonObject(with: Data(record.rendered(as: .json).utf8)) as? [String: Any])
        #expect(traced["trace_id"] as? String == "0af7651916cd43dd8448eb211c80319c" && traced["span_id"] as? String == "b7ad6b7169203331")
        #expect(record.rendered(as: .human).contains("[events[3]@42 trace 0af7651916cd43dd8448eb211c80319c]"))
        #expect(TraceIDs(traceparent: "00-short-b7ad6b7169203331-01") == nil)
        #expect(try SettingsLoader.load(file: nil, environment: ["WEIR_LOG_FORMAT": "json"], arguments: []).logFormat == .json)
        #expect(LogLevel(syslog: 3) == .error && LogLevel(syslog: 4) == .warning && LogLevel(syslog: 6) == .info && LogLevel(syslog: 7) == .debug)
    }

    @Test func exactlyOnceIsAccepted() throws {
        let settings = try SettingsLoader.load(file: nil, environment: ["WEIR_GUARANTEE": "exactly-once"], arguments: [])
        #expect(settings.guarantee == .exactlyOnce)
    }
}
