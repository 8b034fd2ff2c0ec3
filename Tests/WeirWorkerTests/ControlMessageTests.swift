import Foundation
import Testing
import WeirControl

@Suite(.timeLimit(.minutes(2))) struct ControlMessageTests {
    let key = Array("shared-secret".utf8)
    let v1 = BundleRef(version: "1.0.0", location: "file:///b/1", sha256: String(repeating: "a", count: 64))
    let v2 = BundleRef(version: "1.1.0", location: "file:///b/2", sha256: String(repeating: "b", count: 64))
    let v3 = BundleRef(version: "1.2.0", location: "file:///b/3", sha256: String(repeating: "c", count: 64))

    func deploy(_ ref: BundleRef, _ kind: RolloutMode = .replace, percent: Double? = nil, sequence: Int64) -> ControlMessage {
        ControlMessage(action: .deploy, model: "fraud", version: ref.version, bundle: ref.location, sha256: ref.sha256,
                       strategy: RolloutStrategy(kind: kind, percent: percent), sequence: sequence)
    }

    func apply(_ state: RolloutState, _ message: ControlMessage) throws -> RolloutState {
        try state.applying(message).get()
    }

    @Test func theContractExampleParsesAndEncodesBackToTheSameMessage() throws {
        let text = """
        {"action":"deploy","model":"fraud","version":"1.3.0","bundle":"file:///models/fraud-1.3.0",
         "sha256":"\(String(repeating: "A", count: 64))","strategy":{"kind":"canary","percent":5},
         "sequence":42,"issued_at":"2026-11-22T10:00:00Z"}
        """
        let message = try ControlMessage.parse(Array(text.utf8))
        #expect(message.action == .deploy && message.model == "fraud" && message.version == "1.3.0")
        #expect(message.sha256 == String(repeating: "a", count: 64), "hex is normalised to lower case")
        #expect(message.strategy == RolloutStrategy(kind: .canary, percent: 5))
        #expect(message.sequence == 42 && message.issuedAt == "2026-11-22T10:00:00Z")
        #expect(try ControlMessage.parse(message.encoded()) == message)
        let pause = try ControlMessage.parse(Array(#"{"action":"pause","model":"fraud","sequence":7}"#.utf8))
        #expect(pause.action == .pause && pause.bundleRef == nil && pause.strategy == nil)
        let replace = try ControlMessage.parse(Array(#"{"action":"deploy","model":"m","version":"2.0.0","bundle":"/b","sha256":"\#(String(repeating: "0", count: 64))","sequence":1}"#.utf8))
        #expect(replace.strategy == RolloutStrategy(kind: .replace), "a deploy without a strategy replaces")
    }

    @Test(arguments: [
        ("[1,2]", "not a JSON object"),
        ("{\"action\":", "not valid JSON"),
        (#"{"model":"m","sequence":1}"#, "action: missing"),
        (#"{"action":"explode","model":"m","sequence":1}"#, "action: 'explode' is not one of"),
        (#"{"action":"pause","sequence":1}"#, "model: missing"),
        (#"{"action":"pause","model":"m"}"#, "sequence: missing"),
        (#"{"action":"pause","model":"m","sequence":"3"}"#, "sequence: must be a whole number"),
        (#"{"action":"pause","model":"m","sequence":true}"#, "sequence: must be a whole number"),
        (#"{"action":"pause","model":"m","sequence":1.5}"#, "sequence: 1.5 must be a whole number"),
        (#"{"action":"pause","model":"m","sequence":0}"#, "at least 1"),
        (#"{"action":"deploy","model":"m","sequence":1}"#, "version: missing"),
        (#"{"action":"deploy","model":"m","version":"1.0","bundle":"/b","sha256":"x","sequence":1}"#, "version: '1.0' is not a semantic version"),
        (#"{"action":"deploy","model":"m","version":"1.0.0","bundle":"/b","sha256":"xyz","sequence":1}"#, "sha256: 'xyz' is not 64 hex digits"),
        (#"{"action":"deploy","model":"m","version":"1.0.0","bundle":"/b","sha256":"\#(String(repeating: "0", count: 64))","strategy":{"kind":"canary"},"sequence":1}"#, "strategy.percent: a canary needs a percent"),
        (#"{"action":"deploy","model":"m","version":"1.0.0","bundle":"/b","sha256":"\#(String(repeating: "0", count: 64))","strategy":{"kind":"canary","percent":150},"sequence":1}"#, "strategy.percent: 150 is out of range"),
        (#"{"action":"deploy","model":"m","version":"1.0.0","bundle":"/b","sha256":"\#(String(repeating: "0", count: 64))","strategy":{"kind":"blue-green"},"sequence":1}"#, "strategy.kind: 'blue-green'"),
        (#"{"action":"promote","model":"m","version":"1.0.0","sequence":2}"#, "give all three or none"),
        (#"{"action":"pause","model":"m","strategy":{"kind":"replace"},"sequence":2}"#, "strategy: only a deploy has a strategy"),
    ])
    func badMessagesAreRefusedNamingTheField(text: String, expected: String) {
        #expect { _ = try ControlMessage.parse(Array(text.utf8)) } throws: { "\($0)".contains(expected) }
    }

    @Test func signaturesVerifyOnlyUnderTheRightKeyAndShape() {
        let value = ControlMessage(action: .pause, model: "fraud", sequence: 3).encoded()
        let header = ControlSignature.sign(value: value, key: key)
        #expect(header.hasPrefix("hmac-sha256=") && header.count == 12 + 64)
        // An independent HMAC-SHA256 (RFC 4231 test case 2) pins the primitive itself.
        #expect(hmacSHA256Hex(key: Array("Jefe".utf8), message: Array("what do ya want for nothing?".utf8))
            == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        #expect(ControlSignature.verify(value: value, header: Array(header.utf8), key: key) == .valid)
        #expect(ControlSignature.verify(value: value, header: Array(header.uppercased().replacingOccurrences(of: "HMAC-SHA256=", with: "hmac-sha256=").utf8), key: key) == .valid)
        #expect(ControlSignature.verify(value: value, header: nil, key: key) == .missing)
        #expect(ControlSignature.verify(value: value, header: Array(header.utf8), key: Array("other".utf8)) == .wrong)
        #expect(ControlSignature.verify(value: value + [0x20], header: Array(header.utf8), key: key) == .wrong)
        #expect(ControlSignature.verify(value: value, header: Array("sha1=abc".utf8), key: key) == .malformed)
        #expect(ControlSignature.verify(value: value, header: Array((String(header.dropLast()) + "g").utf8), key: key) == .malformed)
    }

    @Test func theKeyFileLosesOneTrailingNewlineAndMustBe32BytesOrMore() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("weir-key-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let secret = "0123456789abcdef0123456789abcdef"
        try Data((secret + "\n\n").utf8).write(to: URL(fileURLWithPath: path))
        #expect(try readControlKey(path: path) == Array((secret + "\n").utf8))
        try Data("\n".utf8).write(to: URL(fileURLWithPath: path))
        #expect { _ = try readControlKey(path: path) } throws: { "\($0)".contains("is empty") }
        // A 1-byte (or any under 32-byte) key is refused at start.
        try Data("k\n".utf8).write(to: URL(fileURLWithPath: path))
        #expect { _ = try readControlKey(path: path) } throws: { "\($0)".contains("is 1 bytes; use at least 32 random bytes") }
        try Data(secret.dropLast().utf8).write(to: URL(fileURLWithPath: path))
        #expect { _ = try readControlKey(path: path) } throws: { "\($0)".contains("is 31 bytes") }
        #expect { _ = try readControlKey(path: path + ".missing") } throws: { "\($0)".contains("control.key-file: cannot read") }
    }

    /// Ed25519: operators sign with a private key, workers check with public keys only, by the id
    /// the header names; several public keys in one file for rotation.
    @Test func ed25519SignaturesCheckAgainstThePublicKeysByID() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("weir-ed25519-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let (private1, public1) = (directory.appendingPathComponent("one.key").path, directory.appendingPathComponent("one.pub").path)
        let (private2, public2) = (directory.appendingPathComponent("two.key").path, directory.appendingPathComponent("two.pub").path)
        let id1 = try ControlPrivateKey.generate(privateKeyFile: private1, publicKeyFile: public1)
        let id2 = try ControlPrivateKey.generate(privateKeyFile: private2, publicKeyFile: public2)
        #expect(id1.count == 16 && id1 != id2)
        // The private key is the operator's alone: mode 0600, never overwritten.
        let mode = try #require(FileManager.default.attributesOfItem(atPath: private1)[.posixPermissions] as? Int)
        #expect(mode == 0o600)
        #expect { _ = try ControlPrivateKey.generate(privateKeyFile: private1, publicKeyFile: public1) } throws: {
            "\($0)".contains("must not exist yet")
        }
        let signer1 = ControlSigner.ed25519(try ControlPrivateKey(path: private1))
        let signer2 = ControlSigner.ed25519(try ControlPrivateKey(path: private2))
        let value = ControlMessage(action: .pause, model: "fraud", sequence: 3).encoded()
        let header1 = Array(signer1.header(for: value).utf8)
        #expect(String(decoding: header1, as: UTF8.self).hasPrefix("ed25519=\(id1):"))

        let onlyFirst = ControlVerifier(publicKeys: try ControlPublicKeys(path: public1))
        #expect(onlyFirst.check(value: value, header: header1) == .valid)
        #expect(onlyFirst.check(value: value + [0x20], header: header1) == .wrong)
        #expect(onlyFirst.check(value: value, header: Array(signer2.header(for: value).utf8)) == .unknownKey(id2))
        // A signature by key two that claims to be key one's does not verify.
        let claimed = Array(signer2.header(for: value).replacingOccurrences(of: id2, with: id1).utf8)
        #expect(onlyFirst.check(value: value, header: claimed) == .wrong)
        #expect(onlyFirst.check(value: value, header: Array("ed25519=\(id1):abc".utf8)) == .malformed)
        #expect(onlyFirst.check(value: value, header: nil) == .missing)
        // An HMAC header to a worker holding public keys only: not accepted, however it is signed.
        let hmac = Array(ControlSignature.sign(value: value, key: Array(repeating: 7, count: 32)).utf8)
        if case .notAccepted = onlyFirst.check(value: value, header: hmac) {} else { Issue.record("an HMAC signature was accepted without a key") }

        // Both keys in one file (rotation): each verifies under its own id.
        let both = directory.appendingPathComponent("both.pub").path
        try (String(contentsOfFile: public1, encoding: .utf8) + String(contentsOfFile: public2, encoding: .utf8))
            .write(toFile: both, atomically: true, encoding: .utf8)
        let rotation = ControlVerifier(publicKeys: try ControlPublicKeys(path: both))
        #expect(try ControlPublicKeys(path: both).ids == [id1, id2].sorted())
        #expect(rotation.check(value: value, header: header1) == .valid)
        #expect(rotation.check(value: value, header: Array(signer2.header(for: value).utf8)) == .valid)
        // A file without a public key is refused, naming the setting.
        try "not a key".write(toFile: both, atomically: true, encoding: .utf8)
        #expect { _ = try ControlPublicKeys(path: both) } throws: { "\($0)".contains("control.public-keys: \(both) holds no Ed25519 public key") }
        #expect { _ = try ControlPrivateKey(path: public1) } throws: { "\($0)".contains("holds no Ed25519 private key") }
    }

    @Test func rolloutTransitions() throws {
        let start = RolloutState(active: v1)
        // replace keeps the old version for rollback until promote ends the rollout
        var state = try apply(start, deploy(v2, sequence: 1))
        #expect(state.active == v2 && state.previous == v1 && state.trial == v2)
        let rolledBack = try apply(state, ControlMessage(action: .rollback, model: "fraud", sequence: 2))
        #expect(rolledBack.active == v1 && rolledBack.previous == nil && rolledBack.trial == nil)
        state = try apply(state, ControlMessage(action: .promote, model: "fraud", sequence: 2))
        #expect(state.active == v2 && state.previous == nil && state.trial == nil)
        // canary, then promote; shadow, then rollback
        state = try apply(state, deploy(v3, .canary, percent: 10, sequence: 3))
        #expect(state.active == v2 && state.candidate == RolloutCandidate(bundle: v3, mode: .canary, percent: 10) && state.trial == v3)
        #expect(state.bundles == [v2, v3])
        let promoted = try apply(state, ControlMessage(action: .promote, model: "fraud", sequence: 4))
        #expect(promoted.active == v3 && promoted.candidate == nil && promoted.previous == nil)
        state = try apply(state, deploy(v3, .shadow, sequence: 4))
        #expect(state.candidate?.mode == .shadow && state.candidate?.percent == nil)
        state = try apply(state, ControlMessage(action: .rollback, model: "fraud", sequence: 5))
        #expect(state.active == v2 && state.candidate == nil)
        // pause and resume; sequences must rise
        state = try apply(state, ControlMessage(action: .pause, model: "fraud", sequence: 6))
        #expect(state.paused && state.lastSequence == 6)
        #expect(throws: ControlRejection.self) { try apply(state, ControlMessage(action: .resume, model: "fraud", sequence: 6)) }
        if case .failure(let rejection) = state.applying(ControlMessage(action: .resume, model: "fraud", sequence: 2)) {
            #expect(rejection.code == .staleSequence && rejection.reason.contains("not above the last applied 6"))
        } else {
            Issue.record("a replayed sequence applied")
        }
        state = try apply(state, ControlMessage(action: .resume, model: "fraud", sequence: 7))
        #expect(!state.paused)
        // nothing to roll back or promote; a canary of the active bundle; promote naming another bundle
        for action in [ControlAction.rollback, .promote] {
            if case .failure(let rejection) = state.applying(ControlMessage(action: action, model: "fraud", sequence: 8)) {
                #expect(rejection.code == .invalidTransition)
            } else {
                Issue.record("\(action) with nothing in progress applied")
            }
        }
        #expect(throws: ControlRejection.self) { try apply(state, deploy(v2, .canary, percent: 5, sequence: 8)) }
        let canary = try apply(state, deploy(v3, .canary, percent: 5, sequence: 8))
        #expect(throws: ControlRejection.self) {
            try apply(canary, ControlMessage(action: .promote, model: "fraud", version: v1.version, bundle: v1.location, sha256: v1.sha256, sequence: 9))
        }
        // a compacted topic: a promote alone names what to serve
        let compacted = try apply(start, ControlMessage(action: .promote, model: "fraud", version: v3.version, bundle: v3.location,
                                                        sha256: v3.sha256, sequence: 20))
        #expect(compacted.active == v3)
        // automatic rollback: candidate first, then an unpromoted replace
        #expect(canary.rolledBackAutomatically()?.candidate == nil)
        #expect(try apply(start, deploy(v2, sequence: 1)).rolledBackAutomatically()?.active == v1)
        #expect(start.rolledBackAutomatically() == nil)
    }

    @Test func canaryRoutingIsStableAndNearItsShare() {
        var canary = 0
        let keys = 20_000
        for index in 0..<keys {
            let key = Array("user-\(index)".utf8)
            let first = key.withUnsafeBytes { CanaryRouting.isCanary($0, percent: 10) }
            let again = key.withUnsafeBytes { CanaryRouting.isCanary($0, percent: 10) }
            #expect(first == again)
            if first { canary += 1 }
        }
        let share = Double(canary) / Double(keys)
        #expect(abs(share - 0.10) < 0.01, "canary share \(share)")
        // Pinned buckets: every worker, build and platform must route the same way.
        // (FNV-1a 64 then a murmur3 finaliser, mod 10000: the values a Python one-liner gives.)
        #expect(Array("u42".utf8).withUnsafeBytes { CanaryRouting.bucket($0) } == 8_873)
        #expect([UInt8]().withUnsafeBytes { CanaryRouting.bucket($0) } == 7_458)
    }
}
