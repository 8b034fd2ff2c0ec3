import ArgumentParser
import Foundation
import WeirBatch
import WeirControl
import WeirStore
import WeirWorker

/// `weir control ACTION`: signs one control message and writes it to the control topic.
struct ControlCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "control",
        abstract: "Write one signed control message: deploy, promote, rollback, pause or resume a model on every worker; or make a signing key pair (keygen).",
        discussion: """
        Sign with an Ed25519 private key (--private-key-file; workers hold only the public key, \
        control.public-keys) or a shared HMAC key (--key-file, 32 bytes or more). The sequence is the \
        topic's last for the model plus one unless --sequence is given. promote and rollback name the \
        bundle the rollout ends on (read from the topic), so a compacted topic still says what to serve. \
        Prints what it sent, with the sequence used. keygen writes a new pair: --private-key-file \
        (mode 0600, never overwritten) and --public-key-file (PEM, for control.public-keys).
        """)

    @Argument(help: "deploy, promote, rollback, pause, resume, or keygen.")
    var action: String

    @Option(help: "Kafka bootstrap servers (host:port,...).")
    var brokers: String?

    @Option(help: "The control topic.")
    var topic: String?

    @Option(name: .customLong("key-file"), help: "File holding the shared HMAC key (one trailing newline is ignored).")
    var keyFile: String?

    @Option(name: .customLong("private-key-file"), help: "The operator's Ed25519 private key (PEM), to sign with; keygen: where to write it.")
    var privateKeyFile: String?

    @Option(name: .customLong("public-key-file"), help: "keygen: where to write the public key (PEM) workers list in control.public-keys.")
    var publicKeyFile: String?

    @Option(name: .customLong("public-keys"), help: "The workers' control.public-keys file, to check the topic's history with (after a key rotation); default: the private key's own.")
    var publicKeys: String?

    @Option(help: "Model name (deploy: read from the bundle's manifest when omitted).")
    var model: String?

    @Option(help: "deploy: the bundle directory (its manifest gives the version and sha256).")
    var bundle: String?

    @Option(help: "deploy: where workers find the bundle (s3://bucket/prefix, https://..., file:///...); without --bundle its manifest is read from there.")
    var location: String?

    @Option(help: "deploy: replace, canary or shadow.")
    var strategy: String = "replace"

    @Option(help: "deploy --strategy canary: the share of keys (0 < percent <= 100).")
    var percent: Double?

    @Option(name: .customLong("require-backtest"),
            help: "deploy: a report from weir backtest that must name this bundle as its candidate and have passed gates.")
    var requireBacktest: String?

    @Option(help: "Why it is sent (informational; the status record applying it repeats it).")
    var reason: String?

    @Option(help: "Use this sequence instead of the topic's last plus one.")
    var sequence: Int64?

    @Option(name: .customLong("kafka"), parsing: .upToNextOption,
            help: "librdkafka properties for the clients, as name=value (security settings and the like).")
    var kafka: [String] = []

    func run() throws {
        if action == "keygen" { return try keygen() }
        guard let action = ControlAction(rawValue: action) else {
            throw CommandFailure("'\(self.action)' is not an action; use deploy, promote, rollback, pause, resume or keygen")
        }
        guard let brokers else { throw CommandFailure("--brokers: give the Kafka bootstrap servers") }
        guard let topic else { throw CommandFailure("--topic: give the control topic") }
        let signer = try makeSigner()
        var verifier = signer.verifier
        if let publicKeys {
            do { verifier.publicKeys = try ControlPublicKeys(path: publicKeys) } catch { throw CommandFailure("--public-keys: \(error)") }
        }
        let properties = try parseKafkaProperties(kafka)
        var message = ControlMessage(action: action, model: model ?? "", sequence: sequence ?? 0,
                                     issuedAt: rfc3339(Date()), reason: reason)
        if action == .deploy {
            let files: BundleFiles
            var url: String
            if let bundle {
                let directory = URL(fileURLWithPath: bundle).standardizedFileURL
                do { files = try BundleFiles(directory: directory) } catch { throw CommandFailure("--bundle: \(error)") }
                url = directory.absoluteString
                if url.hasSuffix("/") { url.removeLast() }
            } else if let location {
                // The bundle as workers will fetch it: verified (every hash) from the store itself.
                do { files = try BundleStore(settings: BundleStoreSettings()).files(at: location) } catch {
                    throw CommandFailure("--location \(location): \(error)")
                }
                url = location
            } else {
                throw CommandFailure("--bundle: a deploy needs the bundle directory, or --location where workers fetch it")
            }
            let manifest = files.manifest
            if let model, model != manifest.name {
                throw CommandFailure("--model: '\(model)' but the bundle is for '\(manifest.name)'")
            }
            guard let kind = RolloutMode(rawValue: strategy) else {
                throw CommandFailure("--strategy: '\(strategy)' is not replace, canary or shadow")
            }
            if kind == .canary {
                guard let percent, percent > 0, percent <= 100 else {
                    throw CommandFailure("--percent: a canary needs a share of keys above 0 and at most 100")
                }
            }
            let identity = files.identity
            if let requireBacktest { try checkBacktest(requireBacktest, candidate: identity) }
            message.model = manifest.name
            message.version = manifest.version
            message.bundle = location ?? url
            message.sha256 = identity
            message.strategy = RolloutStrategy(kind: kind, percent: kind == .canary ? percent : nil)
        } else {
            if requireBacktest != nil { throw CommandFailure("--require-backtest: only a deploy is checked against a backtest") }
            guard let model, !model.isEmpty else { throw CommandFailure("--model: name the model to \(action.rawValue)") }
            if bundle != nil { throw CommandFailure("--bundle: only a deploy takes a bundle") }
        }
        let client = ControlClient(brokers: brokers, topic: topic, signer: signer, verifier: verifier, properties: properties)
        do {
            let prepared = try client.prepare(message)
            try client.send(prepared)
            var line = "sent \(action.rawValue) \(prepared.model)"
            if let version = prepared.version { line += " \(version)" }
            if let strategy = prepared.strategy {
                line += " (\(strategy.kind.rawValue)\(strategy.percent.map { " \($0)%" } ?? ""))"
            }
            print(line + " to \(topic) with sequence \(prepared.sequence)")
        } catch {
            throw CommandFailure("\(error)")
        }
    }

    /// The key messages are signed with: exactly one of --private-key-file and --key-file.
    private func makeSigner() throws -> ControlSigner {
        switch (privateKeyFile, keyFile) {
        case (let path?, nil):
            do { return .ed25519(try ControlPrivateKey(path: path)) } catch { throw CommandFailure("--private-key-file: \(error)") }
        case (nil, let path?):
            do { return .hmac(try readControlKey(path: path)) } catch { throw CommandFailure("--key-file: \(error)") }
        case (nil, nil):
            throw CommandFailure("--private-key-file: give the Ed25519 private key to sign with (or --key-file, the shared HMAC key)")
        case (_?, _?):
            throw CommandFailure("--key-file: give --private-key-file or --key-file, not both")
        }
    }

    /// `weir control keygen`: a new Ed25519 pair.
    private func keygen() throws {
        guard let privateKeyFile else { throw CommandFailure("--private-key-file: keygen needs where to write the private key") }
        guard let publicKeyFile else { throw CommandFailure("--public-key-file: keygen needs where to write the public key") }
        let id: String
        do { id = try ControlPrivateKey.generate(privateKeyFile: privateKeyFile, publicKeyFile: publicKeyFile) } catch {
            throw CommandFailure("\(error)")
        }
        print("wrote Ed25519 key \(id): private \(privateKeyFile) (keep it off the workers), public \(publicKeyFile) (add it to control.public-keys)")
    }

    /// Refuses a deploy unless the report's candidate is this bundle and its gates were set and held.
    private func checkBacktest(_ path: String, candidate sha256: String) throws {
        let report: BacktestReport
        do { report = try BacktestReport.read(Data(contentsOf: URL(fileURLWithPath: path))) } catch {
            throw CommandFailure("--require-backtest \(path): not a report written by weir backtest --report (\(error))")
        }
        guard report.candidate.sha256 == sha256 else {
            throw CommandFailure("--require-backtest \(path): the report's candidate is \(report.candidate.version) (sha256 \(report.candidate.sha256)), not this bundle (sha256 \(sha256)); run weir backtest with --candidate on it")
        }
        guard !report.gates.isEmpty else {
            throw CommandFailure("--require-backtest \(path): the report has no gates; run weir backtest with --gate")
        }
        if let failed = report.gates.first(where: { $0.passed != true }) {
            throw CommandFailure("--require-backtest \(path): gate \(failed.expression) failed (\(failed.value.map { String($0) } ?? "not measured")); the candidate may not be deployed")
        }
    }

    private func rfc3339(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.string(from: date)
    }
}

/// `--kafka name=value` options as librdkafka properties; a value without a name is refused.
func parseKafkaProperties(_ entries: [String]) throws -> [String: String] {
    var properties = [String: String]()
    for entry in entries {
        guard let equals = entry.firstIndex(of: "="), equals != entry.startIndex else {
            throw CommandFailure("--kafka '\(entry)': give name=value")
        }
        properties[String(entry[..<equals])] = String(entry[entry.index(after: equals)...])
    }
    return properties
}
