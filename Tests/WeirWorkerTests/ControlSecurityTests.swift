import Foundation
import Testing
import WeirControl
import WeirKafka
import WeirStore
import WeirTestSupport
@testable import WeirWorker

/// The control plane a compromised pod cannot abuse (docs/control.md): bundles from an S3 store
/// (moto's server, a real S3 API), Ed25519 signatures checked with public keys only, replay
/// protection that survives compaction and restarts, junk that cannot stall a start, and
/// automatic rollbacks the whole group follows.
@Suite(.serialized, .timeLimit(.minutes(6))) struct ControlSecurityTests {
    let bundles = TestBundles()
    let keys: URL
    let operatorKey: ControlPrivateKey
    let strangerKey: ControlPrivateKey

    init() throws {
        try FileManager.default.createDirectory(at: bundles.root, withIntermediateDirectories: true)
        keys = bundles.root.appendingPathComponent("keys")
        try FileManager.default.createDirectory(at: keys, withIntermediateDirectories: true)
        _ = try ControlPrivateKey.generate(privateKeyFile: keys.appendingPathComponent("operator.key").path,
                                           publicKeyFile: keys.appendingPathComponent("operator.pub").path)
        _ = try ControlPrivateKey.generate(privateKeyFile: keys.appendingPathComponent("stranger.key").path,
                                           publicKeyFile: keys.appendingPathComponent("stranger.pub").path)
        operatorKey = try ControlPrivateKey(path: keys.appendingPathComponent("operator.key").path)
        strangerKey = try ControlPrivateKey(path: keys.appendingPathComponent("stranger.key").path)
    }

    func cluster(controlPartitions: Int = 1) throws -> EmbeddedCluster {
        try EmbeddedCluster(brokers: 1, topics: [("events", 6), ("predictions", 6), ("dead-letters", 6), ("status", 1),
                                                 ("control", controlPartitions), ("control-compacted", 1)])
    }

    /// A worker holding only the operator's public key; its own bundle cache.
    func settings(_ cluster: EmbeddedCluster, worker: String, group: String, environment: [String: String] = [:]) -> WorkerSettings {
        var settings = testSettings(cluster, group: group)
        settings.workerID = worker
        settings.controlTopic = "control"
        settings.controlPublicKeys = keys.appendingPathComponent("operator.pub").path
        settings.statusTopic = "status"
        settings.bundleCacheDir = bundles.root.appendingPathComponent("cache-\(worker)").path
        settings.bundleStoreRetryForMs = 60_000
        settings.shutdownTimeoutMs = 20_000
        return settings
    }

    func client(_ cluster: EmbeddedCluster, _ key: ControlPrivateKey? = nil, topic: String = "control") -> ControlClient {
        ControlClient(brokers: cluster.bootstrapServers, topic: topic, signer: .ed25519(key ?? operatorKey))
    }

    func deploy(_ files: BundleFiles, at location: String, _ kind: RolloutMode = .replace, percent: Double? = nil) -> ControlMessage {
        ControlMessage(action: .deploy, model: "fraud", version: files.manifest.version, bundle: location, sha256: files.identity,
                       strategy: RolloutStrategy(kind: kind, percent: percent), sequence: 0)
    }

    /// The moto endpoint and test credentials, for this process (the workers' stores read them).
    func useStore(_ moto: MotoServer) {
        for (name, value) in moto.environment { setenv(name, value, 1) }
    }

    func forgetStore() {
        for name in ["AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"] { unsetenv(name) }
    }

    /// Three workers serve a bundle named by an `s3://` location within a bound; the same deploy
    /// from the cache is faster. Forged, wrong-key, HMAC-signed and oversized messages are all
    /// rejected, and a download that fails is retried while the current model serves.
    @Test func threeWorkersServeAnS3BundleAndRefuseEveryForgery() throws {
        defer { bundles.remove() }
        let moto = try MotoServer()
        defer { moto.stop() }
        useStore(moto)
        defer { forgetStore() }
        let s3 = S3Client(configuration: S3Configuration(environment: moto.environment))
        try s3.createBucket("models").get()
        let store = BundleStore(settings: BundleStoreSettings(cacheDirectory: bundles.root.appendingPathComponent("push-cache").path,
                                                              environment: moto.environment))
        let v2 = try BundleFiles(directory: try bundles.make("1.1.0"))
        let v3 = try BundleFiles(directory: try bundles.make("1.2.0"))
        try store.push(v2, to: "s3://models/fraud/1.1.0")
        try store.push(v3, to: "s3://models/fraud/1.2.0")

        let cluster = try cluster()
        defer { cluster.stopCheckingClients() }
        let group = "security-\(UUID().uuidString)"
        let base = try ModelBundle(directory: demoBundleURL)
        let workers = try ["worker-a", "worker-b", "worker-c"].map {
            try RunningWorker(settings: settings(cluster, worker: $0, group: group), bundle: base)
        }
        try waitFor("three workers own partitions", timeoutSeconds: 60) { workers.allSatisfy { $0.worker.isReady } }
        let status = try TopicFollower(cluster, "status", partitions: 1)
        defer { status.stop() }
        let client = client(cluster)
        func timeToServe(_ version: String, _ message: ControlMessage) throws -> Double {
            let start = Date()
            try client.send(try client.prepare(message))
            try waitFor("all three serving \(version)", timeoutSeconds: 60) { workers.allSatisfy { $0.worker.servingVersions.primary == version } }
            return Date().timeIntervalSince(start)
        }
        let cold = try timeToServe("1.1.0", deploy(v2, at: "s3://models/fraud/1.1.0"))
        _ = try timeToServe("1.2.0", deploy(v3, at: "s3://models/fraud/1.2.0"))
        // 1.1.0 left the workers' memory with the 1.2.0 rollout's promote... (replace keeps it as
        // previous), so end that rollout first: then 1.1.0 comes back from the cache only.
        try client.send(try client.prepare(ControlMessage(action: .promote, model: "fraud", sequence: 0)))
        try status.wait(for: "the promotion on every worker") { records in
            Set(plainStatuses(records).filter { $0.reason.hasPrefix("applied promote") }.map(\.worker)) == ["worker-a", "worker-b", "worker-c"]
        }
        let warm = try timeToServe("1.1.0", deploy(v2, at: "s3://models/fraud/1.1.0"))
        let warmLog = workers[0].log.lines.withLock { $0 }.filter { $0.contains("1.1.0 found in the bundle cache") }
        #expect(!warmLog.isEmpty, "the second 1.1.0 deploy came from the cache")
        print("figure: signed s3:// deploy to 3 workers serving: cold \(String(format: "%.2f", cold)) s, warm cache \(String(format: "%.2f", warm)) s")
        #expect(cold < 30 && warm < 30)

        // Forgeries: signed by a key the workers do not hold; a tampered value; HMAC-signed (no
        // HMAC key on these workers); unsigned; oversized. All rejected, none applied.
        let pause = ControlMessage(action: .pause, model: "fraud", sequence: 1_000)
        let value = pause.encoded()
        try self.client(cluster, strangerKey).send(pause)
        let header = ControlSigner.ed25519(operatorKey).header(for: value)
        try client.sendRaw(key: Array("fraud".utf8), value: value + Array(" ".utf8), headers: [(ControlSignature.headerName, header)])
        try client.sendRaw(key: Array("fraud".utf8), value: value,
                           headers: [(ControlSignature.headerName, ControlSignature.sign(value: value, key: Array(repeating: 1, count: 32)))])
        try client.sendRaw(key: Array("fraud".utf8), value: value, headers: [])
        let big = Array(repeating: UInt8(ascii: " "), count: 70_000) + value
        try client.sendRaw(key: Array("fraud".utf8), value: big, headers: [(ControlSignature.headerName, ControlSigner.ed25519(operatorKey).header(for: big))])
        let sent = 5
        try status.wait(for: "five rejections on each worker") { records in
            let rejected = plainStatuses(records).filter { $0.state == "rejected" && $0.reason.contains("offset") }
            return ["worker-a", "worker-b", "worker-c"].allSatisfy { worker in rejected.filter { $0.worker == worker }.count >= sent }
        }
        let reasons = plainStatuses(status.all).filter { $0.state == "rejected" && $0.worker == "worker-a" }.map(\.reason)
        for code in ["unknown-key", "bad-signature", "missing-signature", "too-large"] {
            #expect(reasons.contains { $0.hasPrefix(code) }, "\(code) in \(reasons)")
        }
        for running in workers {
            #expect(running.worker.servingVersions.primary == "1.1.0")
            #expect(running.worker.metrics.controlRejectedTotal.load(ordering: .relaxed) == sent)
        }
        print("figure: forged/wrong-key/unsigned/oversized control messages rejected \(sent) of \(sent) on each of 3 workers")

        // A bundle not uploaded yet: retried with backoff while 1.1.0 serves, applied once it is there.
        let v4 = try BundleFiles(directory: try bundles.make("1.3.0"))
        try client.send(try client.prepare(deploy(v4, at: "s3://models/fraud/1.3.0")))
        try status.wait(for: "a retrying status") { records in
            plainStatuses(records).contains { $0.state == "loading" && $0.reason.hasPrefix("retrying in 1 s") && $0.reason.contains("answered 404") }
        }
        #expect(workers.allSatisfy { $0.worker.servingVersions.primary == "1.1.0" })
        try store.push(v4, to: "s3://models/fraud/1.3.0")
        try waitFor("all three serving 1.3.0", timeoutSeconds: 60) { workers.allSatisfy { $0.worker.servingVersions.primary == "1.3.0" } }
        for running in workers { try running.stop(timeoutSeconds: 25) }
        // A restart reuses the cache: nothing downloaded again.
        let restarted = try RunningWorker(settings: settings(cluster, worker: "worker-a", group: "security-restart-\(UUID().uuidString)"), bundle: base)
        try restarted.waitUntilReady()
        #expect(restarted.worker.servingVersions.primary == "1.3.0")
        let lines = restarted.log.lines.withLock { $0 }
        #expect(lines.contains { $0.contains("1.3.0 found in the bundle cache") } && !lines.contains { $0.contains("downloaded to") }, "\(lines.filter { $0.contains("bundle cache") })")
        try restarted.stop(timeoutSeconds: 25)
    }

    /// After compaction leaves only an older signed message (republished by anyone who can write
    /// the topic), a restarted worker still serves what the newer one said: the checkpoint on the
    /// status topic carries it, signed. The same replay while running is a stale sequence.
    @Test func aReplayedOldMessageCannotRewindARestartedWorker() throws {
        defer { bundles.remove() }
        let v2 = try bundles.make("1.1.0")
        let v2Files = try BundleFiles(directory: v2)
        let cluster = try cluster()
        defer { cluster.stopCheckingClients() }
        let base = try ModelBundle(directory: demoBundleURL)
        let client = client(cluster)
        // The old message, kept by an attacker: a deploy of 1.1.0 (sequence 1).
        let old = try client.prepare(deploy(v2Files, at: v2.path))
        try client.send(old)
        let first = try RunningWorker(settings: settings(cluster, worker: "worker-a", group: "replay-\(UUID().uuidString)"), bundle: base)
        try first.waitUntilReady()
        #expect(first.worker.servingVersions.primary == "1.1.0")
        // The newer word: roll back (sequence 2). Replayed while running, the old one is stale.
        try client.send(try client.prepare(ControlMessage(action: .rollback, model: "fraud", sequence: 0)))
        try waitFor("the rollback applied") { first.worker.servingVersions.primary == "1.0.0" }
        let signature = ControlSigner.ed25519(operatorKey).header(for: old.encoded())
        try client.sendRaw(key: Array("fraud".utf8), value: old.encoded(), headers: [(ControlSignature.headerName, signature)])
        let status = try TopicFollower(cluster, "status", partitions: 1)
        defer { status.stop() }
        try status.wait(for: "the replay refused as stale") { records in
            plainStatuses(records).contains { $0.state == "rejected" && $0.reason.hasPrefix("stale-sequence") }
        }
        #expect(first.worker.servingVersions.primary == "1.0.0")
        try first.stop(timeoutSeconds: 25)

        // Compaction: the topic now holds only the old message (here: a topic with only it).
        let attacker = self.client(cluster, topic: "control-compacted")
        try attacker.sendRaw(key: Array("fraud".utf8), value: old.encoded(), headers: [(ControlSignature.headerName, signature)])
        var restarted = settings(cluster, worker: "worker-b", group: "replay-\(UUID().uuidString)")
        restarted.controlTopic = "control-compacted"
        let second = try RunningWorker(settings: restarted, bundle: base)
        try second.waitUntilReady()
        #expect(second.worker.servingVersions.primary == "1.0.0", "the checkpoint of sequence 2 outranks the replayed sequence 1")
        #expect(second.log.lines.withLock { $0 }.contains { $0.contains("checkpoint at sequence 2") })
        try second.stop(timeoutSeconds: 25)

        // Without the checkpoint (another status topic), the same start would have served 1.1.0:
        // the check above is the checkpoint's doing.
        var blind = restarted
        blind.workerID = "worker-c"
        blind.statusTopic = nil
        let third = try RunningWorker(settings: blind, bundle: base)
        try third.waitUntilReady()
        #expect(third.worker.servingVersions.primary == "1.1.0")
        try third.stop(timeoutSeconds: 25)
        print("figure: replayed-after-compaction message rejected 1 of 1 (stale while running; outranked by the checkpoint on restart)")
    }

    /// 100,000 junk records on the control topic (unsigned, forged, oversized) do not fail a start
    /// and add little to it.
    @Test func junkOnTheControlTopicDoesNotStallAStart() throws {
        defer { bundles.remove() }
        let cluster = try cluster(controlPartitions: 8)
        defer { cluster.stopCheckingClients() }
        let base = try ModelBundle(directory: demoBundleURL)
        func startTime(_ worker: String) throws -> Double {
            let start = Date()
            let running = try RunningWorker(settings: settings(cluster, worker: worker, group: "junk-\(UUID().uuidString)"), bundle: base)
            try running.waitUntilReady(timeoutSeconds: 60)
            let seconds = Date().timeIntervalSince(start)
            try running.stop(timeoutSeconds: 25)
            return seconds
        }
        let clean = try startTime("worker-clean")
        let stranger = ControlSigner.ed25519(strangerKey)
        for chunk in 0..<10 {
            let records = (0..<10_000).map { index -> (key: [UInt8]?, value: [UInt8]?, headers: [(String, String)]) in
                let number = chunk * 10_000 + index
                let value = Array("{\"action\":\"pause\",\"model\":\"fraud\",\"sequence\":\(number + 1)}".utf8)
                switch number % 4 {
                case 0: return (Array("junk-\(number)".utf8), value, [])
                case 1: return (Array("junk-\(number)".utf8), value, [(ControlSignature.headerName, stranger.header(for: value))])
                case 2: return (Array("junk-\(number)".utf8), Array("not json at all \(number)".utf8), [(ControlSignature.headerName, "ed25519=zz")])
                default:
                    // Every 4,000th an oversized value (refused unread); the rest short garbage.
                    let size = number % 4_000 == 3 ? 70_000 : 24
                    return (Array("junk-\(number)".utf8), Array(repeating: UInt8(truncatingIfNeeded: number), count: size), [])
                }
            }
            try produce(cluster, topic: "control", records)
        }
        let flooded = try startTime("worker-flooded")
        print("figure: start with 100,000 junk control records \(String(format: "%.2f", flooded)) s vs \(String(format: "%.2f", clean)) s with none (+\(String(format: "%.2f", flooded - clean)) s)")
        #expect(flooded - clean < 5, "junk added \(flooded - clean) s to a start")
        let records = try readTopic(cluster, "status", partitions: 1)
        let summary = plainStatuses(records).filter { $0.worker == "worker-flooded" && $0.state == "rejected" }
        #expect(summary.count == 1 && summary[0].reason.hasPrefix("replay rejected 100000 of 100000 control records"), "\(summary.map(\.reason))")
    }

    /// One worker's failed trial rolls the whole group back (the others have bounds it never
    /// reaches), with the evidence on the status topic; a worker started afterwards does not try
    /// the candidate again. A public key added to the file is taken without a restart.
    @Test func aRollbackDecidedByOneWorkerMovesTheGroupAndSurvivesARestart() throws {
        defer { bundles.remove() }
        let failing = try bundles.make("1.2.0", onnx: repositoryRoot.appendingPathComponent("Tests/WeirWorkerTests/Fixtures/failing-candidate.onnx"))
        let cluster = try cluster()
        defer { cluster.stopCheckingClients() }
        let base = try ModelBundle(directory: demoBundleURL)
        let group = "fleet-\(UUID().uuidString)"
        // A public keys file of its own, to rotate.
        let publicKeys = bundles.root.appendingPathComponent("rotating.pub")
        try FileManager.default.copyItem(at: keys.appendingPathComponent("operator.pub"), to: publicKeys)
        var strict = settings(cluster, worker: "worker-strict", group: group)
        strict.controlPublicKeys = publicKeys.path
        strict.rollbackMinEvents = 50
        var lax = settings(cluster, worker: "worker-lax", group: group)
        lax.controlPublicKeys = publicKeys.path
        lax.rollbackMinEvents = 100_000_000
        lax.rollbackMaxErrorRate = 1
        let one = try RunningWorker(settings: strict, bundle: base)
        let two = try RunningWorker(settings: lax, bundle: base)
        try waitFor("both workers own partitions", timeoutSeconds: 60) { one.worker.isReady && two.worker.isReady }
        let status = try TopicFollower(cluster, "status", partitions: 1)
        defer { status.stop() }
        let client = client(cluster)
        try client.send(try client.prepare(ControlMessage(action: .deploy, model: "fraud", version: "1.2.0", bundle: failing.path,
                                                          sha256: ModelBundle.identity(of: failing),
                                                          strategy: RolloutStrategy(kind: .canary, percent: 50), sequence: 0)))
        try waitFor("the canary on both") { one.worker.servingVersions.candidate == "1.2.0" && two.worker.servingVersions.candidate == "1.2.0" }
        try produce(cluster, (0..<3_000).map { (SyntheticEvents.key($0), SyntheticEvents.event($0), []) })
        try waitFor("both rolled back", timeoutSeconds: 60) {
            one.worker.servingVersions.candidate == nil && two.worker.servingVersions.candidate == nil
        }
        let records = try status.wait(for: "the decision and the follower's status") { records in
            plainStatuses(records).contains { $0.worker == "worker-lax" && $0.reason.hasPrefix("automatic rollback of 1.2.0 (decided by worker-strict)") }
        }
        let decision = try #require(records.compactMap { try? jsonObject($0) }.first { $0["type"] as? String == "decision" })
        #expect(decision["worker"] as? String == "worker-strict" && decision["action"] as? String == "rollback")
        let evidence = try #require(decision["evidence"] as? [String: Any])
        #expect((evidence["events"] as? Double ?? 0) >= 50 && (evidence["error_share"] as? Double ?? 0) > 0.05, "\(evidence)")
        #expect(two.worker.metrics.automaticRollbackTotal.load(ordering: .relaxed) == 1)

        // Rotation: a message signed by a new key is refused, then taken once the key is in the file.
        let newKey = try ControlPrivateKey(path: keys.appendingPathComponent("stranger.key").path)
        let rotated = ControlClient(brokers: cluster.bootstrapServers, topic: "control", signer: .ed25519(newKey),
                                    verifier: ControlVerifier(publicKeys: try ControlPublicKeys(pem: Array((try String(contentsOf: keys.appendingPathComponent("operator.pub"), encoding: .utf8) + String(contentsOf: keys.appendingPathComponent("stranger.pub"), encoding: .utf8)).utf8), source: "both")))
        try rotated.send(try rotated.prepare(ControlMessage(action: .pause, model: "fraud", sequence: 0)))
        try status.wait(for: "unknown-key") { plainStatuses($0).contains { $0.reason.hasPrefix("unknown-key") } }
        try (String(contentsOf: publicKeys, encoding: .utf8) + String(contentsOf: keys.appendingPathComponent("stranger.pub"), encoding: .utf8))
            .write(to: publicKeys, atomically: true, encoding: .utf8)
        // Both workers must hold the new key before the message is sent: one that reads it earlier
        // refuses it for good (unknown-key), as an operator re-sends after a rotation.
        try waitFor("the new key taken by both workers", timeoutSeconds: 10) {
            [one, two].allSatisfy { worker in worker.log.lines.withLock { $0 }.contains { $0.contains("control.public-keys changed") } }
        }
        try rotated.send(try rotated.prepare(ControlMessage(action: .pause, model: "fraud", sequence: 0)))
        try status.wait(for: "the pause by the new key on both") { records in
            Set(plainStatuses(records).filter { $0.state == "paused" }.map(\.worker)) == ["worker-strict", "worker-lax"]
        }
        try rotated.send(try rotated.prepare(ControlMessage(action: .resume, model: "fraud", sequence: 0)))
        try status.wait(for: "the resume on both") { records in
            Set(plainStatuses(records).filter { $0.reason.hasPrefix("applied resume") }.map(\.worker)) == ["worker-strict", "worker-lax"]
        }
        try one.stop(timeoutSeconds: 25)
        try two.stop(timeoutSeconds: 25)

        // A worker started now replays the canary deploy but finds the group's decision: no re-trial.
        var later = settings(cluster, worker: "worker-later", group: "fleet-later-\(UUID().uuidString)")
        later.controlPublicKeys = publicKeys.path
        let three = try RunningWorker(settings: later, bundle: base)
        try three.waitUntilReady()
        #expect(three.worker.servingVersions.candidate == nil && three.worker.servingVersions.primary == "1.0.0")
        #expect(three.log.lines.withLock { $0 }.contains { $0.contains("rollback of 1.2.0 decided by worker-strict") })
        try three.stop(timeoutSeconds: 25)
    }

    /// The operator's path on the command line: make a key pair, push a bundle to S3, start
    /// `weir serve` on an `s3://` model with only the public key, deploy by `--location` alone
    /// (the manifest read and verified from the store), and the worker serves it.
    @Test func theCommandLineMakesKeysPushesAndDeploysFromS3() throws {
        defer { bundles.remove() }
        let moto = try MotoServer()
        defer { moto.stop() }
        useStore(moto)
        defer { forgetStore() }
        try S3Client(configuration: S3Configuration(environment: moto.environment)).createBucket("models").get()
        let weir = builtProduct("weir").path
        let privateKey = bundles.root.appendingPathComponent("cli.key").path
        let publicKey = bundles.root.appendingPathComponent("cli.pub").path
        let made = try run([weir, "control", "keygen", "--private-key-file", privateKey, "--public-key-file", publicKey])
        #expect(made.status == 0 && made.output.hasPrefix("wrote Ed25519 key "), "\(made.errors)")
        let again = try run([weir, "control", "keygen", "--private-key-file", privateKey, "--public-key-file", publicKey])
        #expect(again.status != 0 && again.errors.contains("must not exist yet"))
        for (bundle, location) in [(demoBundleURL.path, "s3://models/fraud/1.0.0"), (try bundles.make("1.1.0").path, "s3://models/fraud/1.1.0")] {
            let pushed = try run([weir, "model", "push", bundle, location])
            #expect(pushed.status == 0 && pushed.output.hasPrefix("pushed fraud "), "\(pushed.errors)")
        }
        let refused = try run([weir, "model", "push", demoBundleURL.path, "gs://models/x"])
        #expect(refused.status != 0 && refused.errors.contains("'gs://' locations are not supported"), "\(refused.errors)")

        let cluster = try cluster()
        defer { cluster.stopCheckingClients() }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: weir)
        process.arguments = ["serve", "--brokers", cluster.bootstrapServers, "--group", "cli-\(UUID().uuidString)",
                             "--model", "s3://models/fraud/1.0.0", "--metrics-port", "0", "--worker-id", "cli-worker",
                             "--control-topic", "control", "--control-public-keys", publicKey, "--status-topic", "status",
                             "--bundle-cache-dir", bundles.root.appendingPathComponent("cli-cache").path,
                             "--kafka-consumer-session-timeout-ms", "6000", "--kafka-consumer-fetch-wait-max-ms", "5"]
        process.standardError = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        defer { stop(process, signal: SIGKILL) }
        let status = try TopicFollower(cluster, "status", partitions: 1)
        defer { status.stop() }
        try status.wait(for: "the worker started on the s3:// model") { records in
            plainStatuses(records).contains { $0.reason == "started" && $0.active == "1.0.0" }
        }
        let deployed = try run([weir, "control", "deploy", "--location", "s3://models/fraud/1.1.0", "--brokers", cluster.bootstrapServers,
                                "--topic", "control", "--private-key-file", privateKey])
        #expect(deployed.status == 0 && deployed.output == "sent deploy fraud 1.1.0 (replace) to control with sequence 1\n", "\(deployed.errors)")
        try status.wait(for: "1.1.0 applied") { records in
            plainStatuses(records).contains { $0.reason.hasPrefix("applied deploy") && $0.active == "1.1.0" }
        }
        // Neither key is accepted by a worker set for the other kind.
        let unsigned = try run([weir, "control", "pause", "--model", "fraud", "--brokers", cluster.bootstrapServers, "--topic", "control"])
        #expect(unsigned.status != 0 && unsigned.errors.contains("--private-key-file: give the Ed25519 private key"), "\(unsigned.errors)")
        #expect(stop(process), "the worker ends within 30 s of SIGTERM")
        #expect(process.terminationStatus == 0)
    }

    func plainStatuses(_ records: [ConsumedRecord]) -> [Status] {
        records.compactMap { record in
            guard let object = try? jsonObject(record), object["type"] == nil else { return nil }
            return try? Status(record)
        }
    }
}
