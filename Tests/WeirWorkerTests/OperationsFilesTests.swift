import Foundation
import Testing
import WeirTestSupport
import WeirWorker
import Yams

/// The Docker, compose, Kubernetes and Grafana files cannot run here (no Docker engine, no cluster):
/// these tests parse every one and check that names, ports, paths, settings and metric names agree
/// with each other and with the code.
@Suite(.timeLimit(.minutes(3))) struct OperationsFilesTests {
    func text(_ path: String) throws -> String {
        try String(contentsOf: repositoryRoot.appendingPathComponent(path), encoding: .utf8)
    }

    func yaml(_ path: String) throws -> [String: Any] {
        guard let object = try Yams.load(yaml: try text(path)) as? [String: Any] else { throw TestFailure("\(path): not a mapping") }
        return object
    }

    func dig(_ object: Any?, _ path: String) -> Any? {
        var current = object
        for part in path.split(separator: ".") {
            if let index = Int(part), let list = current as? [Any] { current = index < list.count ? list[index] : nil; continue }
            current = (current as? [String: Any])?[String(part)]
        }
        return current
    }

    /// Every metric name the worker declares (`label: "weir_..."` in Metrics.swift).
    func declaredMetrics() throws -> Set<String> {
        let source = try text("Sources/WeirWorker/Metrics.swift")
        var names = Set<String>()
        // swift-metrics handles (`label:`) and the histograms Weir renders itself (`name:`).
        for marker in ["label: \"weir_", "name: \"weir_"] {
            var rest = Substring(source)
            while let range = rest.range(of: marker) {
                let name = rest[rest.index(range.upperBound, offsetBy: -5)...].prefix { $0 != "\"" }
                names.insert(String(name))
                rest = rest[range.upperBound...]
            }
        }
        return names
    }

    /// Metric names used in an expression, without histogram suffixes.
    func usedMetrics(_ expression: String) -> Set<String> {
        var names = Set<String>()
        var rest = Substring(expression)
        while let range = rest.range(of: "weir_") {
            let name = String(rest[range.lowerBound...].prefix { $0.isLetter || $0.isNumber || $0 == "_" })
            names.insert(name.replacingOccurrences(of: "_bucket", with: "").replacingOccurrences(of: "_count", with: ""))
            rest = rest[range.upperBound...]
        }
        return names
    }

    @Test func everyManifestParsesAndKustomizeReferencesExist() throws {
        for directory in ["deploy/base", "deploy/overlays/dev", "deploy/overlays/prod"] {
            let kustomization = try yaml("\(directory)/kustomization.yaml")
            let listed = (kustomization["resources"] as? [String] ?? [])
                + ((kustomization["patches"] as? [[String: Any]]) ?? []).compactMap { $0["path"] as? String }
                + ((kustomization["configMapGenerator"] as? [[String: Any]]) ?? []).flatMap { $0["files"] as? [String] ?? [] }
            #expect(!listed.isEmpty)
            for entry in listed {
                let url = repositoryRoot.appendingPathComponent(directory).appendingPathComponent(entry)
                #expect(FileManager.default.fileExists(atPath: url.path), "\(directory) lists \(entry)")
                if entry.hasSuffix(".yaml") {
                    let object = try Yams.load(yaml: String(contentsOf: url, encoding: .utf8)) as? [String: Any]
                    #expect(object != nil, "\(entry) parses to a mapping")
                    if !entry.hasPrefix("weir"), let object {
                        #expect(object["apiVersion"] is String && object["kind"] is String, "\(entry) has apiVersion and kind")
                    }
                }
            }
        }
    }

    @Test func theDeploymentAgreesWithTheWorkersSettingsAndEndpoints() throws {
        let settings = try SettingsLoader.load(file: repositoryRoot.appendingPathComponent("deploy/base/weir.yaml").path,
                                               environment: [:], arguments: [])
        let deployment = try yaml("deploy/base/deployment.yaml")
        let container = try #require(dig(deployment, "spec.template.spec.containers.0") as? [String: Any])
        let ports = try #require(container["ports"] as? [[String: Any]])
        #expect(ports.contains { $0["name"] as? String == "metrics" && $0["containerPort"] as? Int == settings.metricsPort })
        #expect(dig(container, "readinessProbe.httpGet.path") as? String == "/readyz")
        #expect(dig(container, "livenessProbe.httpGet.path") as? String == "/healthz")
        #expect(dig(container, "readinessProbe.httpGet.port") as? String == "metrics")
        #expect(dig(container, "securityContext.readOnlyRootFilesystem") as? Bool == true)
        #expect(settings.logFormat == .json, "the cluster's log pipeline gets JSON lines")
        #expect(dig(deployment, "spec.template.spec.securityContext.runAsNonRoot") as? Bool == true)
        #expect(dig(container, "resources.requests.cpu") != nil && dig(container, "resources.limits.memory") != nil)
        let grace = try #require(dig(deployment, "spec.template.spec.terminationGracePeriodSeconds") as? Int)
        #expect(grace * 1000 > settings.shutdownTimeoutMs + 5_000, "termination grace \(grace) s over shutdown-timeout-ms \(settings.shutdownTimeoutMs)")
        // The public keys land where control.public-keys says; workers hold no signing key.
        let mounts = try #require(container["volumeMounts"] as? [[String: Any]])
        let keyMount = try #require(mounts.first { $0["name"] as? String == "control-public-keys" }?["mountPath"] as? String)
        let volumes = try #require(dig(deployment, "spec.template.spec.volumes") as? [[String: Any]])
        let keyPath = try #require(dig(volumes.first { $0["name"] as? String == "control-public-keys" }, "configMap.items.0.path") as? String)
        #expect(settings.controlPublicKeys == "\(keyMount)/\(keyPath)" && settings.controlKeyFile == nil)
        // Bundles come from object storage into a writable cache volume (the root filesystem is read-only).
        #expect(settings.model?.hasPrefix("s3://") == true)
        #expect(mounts.first { $0["name"] as? String == "bundle-cache" }?["mountPath"] as? String == settings.bundleCacheDir)
        #expect(dig(volumes.first { $0["name"] as? String == "bundle-cache" }, "emptyDir") != nil)
        let account = try yaml("deploy/base/serviceaccount.yaml")
        #expect(dig(deployment, "spec.template.spec.serviceAccountName") as? String == dig(account, "metadata.name") as? String)
        #expect((dig(account, "metadata.annotations") as? [String: Any])?["eks.amazonaws.com/role-arn"] is String, "an IAM role reads the bundles")
        // The metrics Service and ServiceMonitor point at the container's metrics port.
        let service = try yaml("deploy/base/service.yaml")
        #expect(dig(service, "spec.ports.0.targetPort") as? String == "metrics" && dig(service, "spec.ports.0.port") as? Int == settings.metricsPort)
        let monitor = try yaml("deploy/base/servicemonitor.yaml")
        #expect(dig(monitor, "spec.endpoints.0.port") as? String == dig(service, "spec.ports.0.name") as? String)
        #expect(dig(monitor, "spec.endpoints.0.path") as? String == "/metrics")
        // KEDA scales the Deployment on this group's lag of the input topic, never beyond its partitions.
        let scaled = try yaml("deploy/base/scaledobject.yaml")
        #expect(dig(scaled, "spec.scaleTargetRef.name") as? String == dig(deployment, "metadata.name") as? String)
        #expect(dig(scaled, "spec.triggers.0.type") as? String == "kafka")
        #expect(dig(scaled, "spec.triggers.0.metadata.consumerGroup") as? String == settings.group)
        #expect(dig(scaled, "spec.triggers.0.metadata.topic") as? String == settings.input.first)
        #expect((dig(scaled, "spec.maxReplicaCount") as? Int ?? 99) <= 8, "max replicas within the 8 input partitions")
        #expect(dig(scaled, "spec.triggers.0.metadata.activationLagThreshold") is String)
        #expect(dig(scaled, "spec.triggers.0.metadata.allowIdleConsumers") as? String == "false")
        // prod: KEDA authenticates to the SASL_SSL listener with the workers' Secret.
        let auth = try yaml("deploy/overlays/prod/keda-auth.yaml")
        #expect(auth["kind"] as? String == "TriggerAuthentication")
        let parameters = Set(((dig(auth, "spec.secretTargetRef") as? [[String: Any]]) ?? []).compactMap { $0["parameter"] as? String })
        #expect(parameters.isSuperset(of: ["sasl", "username", "password", "tls", "ca"]))
        let prodKustomization = try text("deploy/overlays/prod/kustomization.yaml")
        #expect(prodKustomization.contains("keda-auth.yaml") && prodKustomization.contains("path: /spec/triggers/0/authenticationRef")
                && prodKustomization.contains("name: \(dig(auth, "metadata.name") as? String ?? "?")"))
        for overlay in ["dev", "prod"] {
            let text = try text("deploy/overlays/\(overlay)/kustomization.yaml")
            // Every overlay sets its own ceiling; a missing patch is a failure, not a skip.
            let range = try #require(text.range(of: "path: /spec/maxReplicaCount\n        value: "),
                                     "\(overlay) patches the ScaledObject's maxReplicaCount")
            let value = try #require(Int(text[range.upperBound...].prefix { $0.isNumber }), "\(overlay) max replicas is a number")
            #expect(value >= 1 && value <= 8, "\(overlay) max replicas \(value)")
        }
        // prod's SASL settings reach librdkafka through WEIR_KAFKA_* and stay out of --print-config.
        let sasl = try yaml("deploy/overlays/prod/sasl.yaml")
        let env = try #require(dig(sasl, "spec.template.spec.containers.0.env") as? [[String: Any]])
        var environment = [String: String]()
        for entry in env {
            let name = entry["name"] as! String
            environment[name] = entry["value"] as? String ?? "from-secret-\(dig(entry, "valueFrom.secretKeyRef.key") as? String ?? "?")"
        }
        let prod = try SettingsLoader.load(file: repositoryRoot.appendingPathComponent("deploy/base/weir.yaml").path,
                                           environment: environment, arguments: [])
        #expect(prod.kafka["security.protocol"] == "SASL_SSL" && prod.kafka["sasl.password"] == "from-secret-password")
        #expect(!SettingsLoader.render(prod).contains("from-secret-password"), "the password is redacted")
    }

    @Test func alertsAndTheDashboardUseMetricsTheWorkerExports() throws {
        let declared = try declaredMetrics()
        #expect(declared.contains("weir_consumer_lag") && declared.contains("weir_automatic_rollbacks_total"))
        let rules = try yaml("deploy/base/prometheusrule.yaml")
        let alerts = try #require(dig(rules, "spec.groups.0.rules") as? [[String: Any]])
        #expect(Set(alerts.compactMap { $0["alert"] as? String }) ==
                ["WeirLagGrowing", "WeirDeadLetterRate", "WeirDriftFlagged", "WeirAutomaticRollback", "WeirNoReadyReplicas",
                 "WeirPollLoopStalled", "WeirEventsWaitingForAnswers", "WeirSchemaRegistryUnavailable"])
        for alert in alerts {
            let expression = try #require(alert["expr"] as? String)
            let unknown = usedMetrics(expression).subtracting(declared)
            #expect(unknown.isEmpty, "\(alert["alert"]!) uses \(unknown)")
        }
        let operations = try text("docs/operations.md")
        for alert in alerts { #expect(operations.contains(alert["alert"] as! String), "docs/operations.md explains \(alert["alert"]!)") }
        let dashboard = try JSONSerialization.jsonObject(with: Data(text("deploy/grafana/weir.json").utf8)) as! [String: Any]
        let panels = try #require(dashboard["panels"] as? [[String: Any]])
        #expect(panels.count >= 6)
        let expressions = panels.flatMap { ($0["targets"] as? [[String: Any]] ?? []).compactMap { $0["expr"] as? String } }
        let used = expressions.reduce(into: Set<String>()) { $0.formUnion(usedMetrics($1)) }
        #expect(used.subtracting(declared).isEmpty, "the dashboard uses \(used.subtracting(declared))")
        for needed in ["weir_events_consumed_total", "weir_event_latency_seconds", "weir_dead_letters_total", "weir_consumer_lag",
                       "weir_drift_psi", "weir_model_info"] {
            #expect(used.contains(needed), "the dashboard shows \(needed)")
        }
    }

    @Test func theImageAndComposeFilesAgree() throws {
        let dockerfile = try text("docker/Dockerfile")
        let stages = dockerfile.split(separator: "\n").filter { $0.hasPrefix("FROM ") }
        #expect(stages.count == 2 && stages[0].contains("bookworm") && stages[1].contains("bookworm-slim"))
        for package in ["librdkafka1", "libjansson4", "libssl3", "libcurl4"] { #expect(dockerfile.contains(package)) }
        #expect(dockerfile.contains("USER 10001") && dockerfile.contains("/healthz")
                && dockerfile.contains(#"ENTRYPOINT ["/usr/local/bin/weir", "serve"]"#))
        let compose = try yaml("docker/compose.yaml")
        let services = try #require(compose["services"] as? [String: Any])
        #expect(Set(services.keys).isSuperset(of: ["kafka", "topic-init", "weir-1", "weir-2", "producer", "prometheus"]))
        #expect(dig(services, "kafka.environment.KAFKA_PROCESS_ROLES") as? String == "broker,controller", "Kafka runs in KRaft mode")
        #expect(dig(services, "weir-2.build.dockerfile") as? String == "docker/Dockerfile", "weir-2 shares weir-1's definition")
        let settings = try SettingsLoader.load(file: repositoryRoot.appendingPathComponent("docker/weir.yaml").path,
                                               environment: [:], arguments: [])
        let initScript = (dig(services, "topic-init.command.0") as? String) ?? ""
        for topic in settings.input + [settings.output, settings.dlq] + [settings.driftTopic, settings.statusTopic, settings.shadowTopic].compactMap({ $0 }) {
            #expect(initScript.contains(topic), "topic-init creates \(topic)")
        }
        #expect(initScript.contains("--topic \(settings.controlTopic!) --partitions 1"))
        let volumes = (dig(services, "weir-1.volumes") as? [String]) ?? []
        #expect(volumes.contains { $0.hasSuffix(":/etc/weir/weir.yaml:ro") })
        #expect(volumes.contains { $0.hasSuffix(":\(settings.controlKeyFile!):ro") })
        for volume in volumes {
            let local = String(volume.prefix { $0 != ":" })
            #expect(FileManager.default.fileExists(atPath: repositoryRoot.appendingPathComponent("docker").appendingPathComponent(local).path))
        }
        let prometheus = try yaml("docker/prometheus.yaml")
        let targets = (dig(prometheus, "scrape_configs.0.static_configs.0.targets") as? [String]) ?? []
        #expect(Set(targets) == ["weir-1:\(settings.metricsPort)", "weir-2:\(settings.metricsPort)"])
        #expect((dig(services, "producer.entrypoint") as? [String])?.last == "produce")
    }
}
