import COpenSSL
import Foundation

/// What a control message asks of the workers serving its model (docs/control.md).
public enum ControlAction: String, Sendable, CaseIterable, Codable {
    case deploy, promote, rollback, pause, resume
}

/// How a deployed bundle takes traffic.
public enum RolloutMode: String, Sendable, CaseIterable, Codable {
    /// The new bundle serves every event at once; the old one stays loaded for `rollback`.
    case replace
    /// The new bundle serves the keys whose stable hash falls under `percent`.
    case canary
    /// The new bundle scores every event too, to the shadow topic; primary outputs are unchanged.
    case shadow
}

/// A deploy's strategy: `{"kind":"replace"}`, `{"kind":"canary","percent":5}` or `{"kind":"shadow"}`.
public struct RolloutStrategy: Sendable, Equatable, Codable {
    public var kind: RolloutMode
    /// Share of keys (0 < percent <= 100) a canary serves.
    public var percent: Double?
    public init(kind: RolloutMode, percent: Double? = nil) {
        self.kind = kind
        self.percent = percent
    }
}

/// One message of the control topic (docs/contracts.md): the envelope every action shares.
/// `promote` and `rollback` may carry `version`/`bundle`/`sha256` naming the bundle they end on,
/// so a compacted topic (only the last message per model) still says what to serve.
public struct ControlMessage: Sendable, Equatable, Codable {
    public var action: ControlAction
    public var model: String
    public var version: String?
    /// `file:///path/to/bundle` (or a plain absolute path).
    public var bundle: String?
    /// SHA-256 of the bundle's `manifest.json`.
    public var sha256: String?
    public var strategy: RolloutStrategy?
    /// Must exceed the last sequence applied for `model`.
    public var sequence: Int64
    /// RFC 3339 time the operator issued it (informational).
    public var issuedAt: String?
    /// Why it was sent (informational; a worker's automatic promotion or rollback says why).
    public var reason: String?

    enum CodingKeys: String, CodingKey {
        case action, model, version, bundle, sha256, strategy, sequence, reason
        case issuedAt = "issued_at"
    }

    public init(action: ControlAction, model: String, version: String? = nil, bundle: String? = nil, sha256: String? = nil,
                strategy: RolloutStrategy? = nil, sequence: Int64, issuedAt: String? = nil, reason: String? = nil) {
        self.action = action
        self.model = model
        self.version = version
        self.bundle = bundle
        self.sha256 = sha256
        self.strategy = strategy
        self.sequence = sequence
        self.issuedAt = issuedAt
        self.reason = reason
    }

    /// The bundle this message names, when it names one completely.
    public var bundleRef: BundleRef? {
        guard let version, let bundle, let sha256 else { return nil }
        return BundleRef(version: version, location: bundle, sha256: sha256)
    }

    /// Parses and checks a control message value. Errors name the field.
    public static func parse(_ bytes: some ContiguousBytes) throws(ControlMessageError) -> ControlMessage {
        let data = bytes.withUnsafeBytes { Data($0) }
        let object: Any
        do { object = try JSONSerialization.jsonObject(with: data, options: []) } catch {
            throw ControlMessageError("the value is not valid JSON")
        }
        guard let fields = object as? [String: Any] else { throw ControlMessageError("the value is not a JSON object") }
        func text(_ name: String, required: Bool) throws(ControlMessageError) -> String? {
            guard let raw = fields[name], !(raw is NSNull) else {
                if required { throw ControlMessageError("\(name): missing") }
                return nil
            }
            guard let value = raw as? String else { throw ControlMessageError("\(name): must be a string") }
            if value.isEmpty { throw ControlMessageError("\(name): is empty") }
            return value
        }
        guard let actionName = try text("action", required: true) else { throw ControlMessageError("action: missing") }
        guard let action = ControlAction(rawValue: actionName) else {
            throw ControlMessageError("action: '\(actionName)' is not one of \(ControlAction.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let model = try text("model", required: true)!
        guard let rawSequence = fields["sequence"], !isBoolean(rawSequence), let sequenceValue = rawSequence as? NSNumber else {
            throw ControlMessageError(fields["sequence"] == nil ? "sequence: missing" : "sequence: must be a whole number")
        }
        let sequenceDouble = sequenceValue.doubleValue
        guard sequenceDouble == sequenceDouble.rounded(), sequenceDouble >= 1, sequenceDouble < 9e15 else {
            throw ControlMessageError("sequence: \(sequenceValue) must be a whole number of at least 1")
        }
        let isDeploy = action == .deploy
        let version = try text("version", required: isDeploy)
        if let version, !isSemanticVersion(version) {
            throw ControlMessageError("version: '\(version)' is not a semantic version (like 1.3.0)")
        }
        let bundle = try text("bundle", required: isDeploy)
        let sha = try text("sha256", required: isDeploy)?.lowercased()
        if let sha, sha.count != 64 || !sha.allSatisfy(\.isHexDigit) {
            throw ControlMessageError("sha256: '\(sha)' is not 64 hex digits")
        }
        if !isDeploy && [version, bundle, sha].contains(where: { $0 != nil }) && [version, bundle, sha].contains(where: { $0 == nil }) {
            throw ControlMessageError("version, bundle, sha256: give all three or none on \(action.rawValue)")
        }
        var strategy: RolloutStrategy?
        if let raw = fields["strategy"], !(raw is NSNull) {
            guard let object = raw as? [String: Any] else { throw ControlMessageError("strategy: must be an object") }
            guard let kindName = object["kind"] as? String else { throw ControlMessageError("strategy.kind: missing") }
            guard let kind = RolloutMode(rawValue: kindName) else {
                throw ControlMessageError("strategy.kind: '\(kindName)' is not one of replace, canary, shadow")
            }
            var percent: Double?
            if kind == .canary {
                guard let rawPercent = object["percent"], !isBoolean(rawPercent), let number = rawPercent as? NSNumber else {
                    throw ControlMessageError("strategy.percent: a canary needs a percent (0 < percent <= 100)")
                }
                percent = number.doubleValue
                guard percent! > 0 && percent! <= 100 else {
                    throw ControlMessageError("strategy.percent: \(number) is out of range; use more than 0 and at most 100")
                }
            }
            strategy = RolloutStrategy(kind: kind, percent: percent)
        }
        if isDeploy && strategy == nil { strategy = RolloutStrategy(kind: .replace) }
        if !isDeploy && strategy != nil { throw ControlMessageError("strategy: only a deploy has a strategy") }
        return ControlMessage(action: action, model: model, version: version, bundle: bundle, sha256: sha, strategy: strategy,
                              sequence: Int64(sequenceDouble), issuedAt: try text("issued_at", required: false),
                              reason: try text("reason", required: false))
    }

    /// The message as compact JSON with sorted keys: the bytes `weir control` signs and sends.
    public func encoded() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array((try? encoder.encode(self)) ?? Data())
    }
}

/// Whether a JSONSerialization value came from `true`/`false` (which also bridge to NSNumber).
private func isBoolean(_ value: Any) -> Bool {
    if type(of: value) == Bool.self { return true }
    if let number = value as? NSNumber, String(cString: number.objCType) == "c" { return true }
    return false
}

/// Why a control message value cannot be used, naming the field.
public struct ControlMessageError: Error, CustomStringConvertible, Sendable, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The `weir-signature` header: `ed25519=<key id>:<128 hex digits>` (an operator's private key;
/// workers hold only public keys) or `hmac-sha256=<64 hex digits>` over the value bytes under a
/// shared key (small setups).
public enum ControlSignature {
    public static let headerName = "weir-signature"
    static let prefix = "hmac-sha256="
    static let ed25519Prefix = "ed25519="

    /// The HMAC header value for `value` under `key`.
    public static func sign(value: some ContiguousBytes, key: some ContiguousBytes) -> String {
        prefix + hmacSHA256Hex(key: key, message: value)
    }

    /// What checking a message's signature found.
    public enum Check: Equatable, Sendable {
        case valid
        case missing
        /// Not `hmac-sha256=<64 hex>` nor `ed25519=<16 hex>:<128 hex>`.
        case malformed
        case wrong
        /// An Ed25519 signature by a key the worker does not hold (`control.public-keys`).
        case unknownKey(String)
        /// A kind of signature this worker is not set up to accept (no HMAC key, or no public keys).
        case notAccepted(String)
    }

    /// Checks `header` (the raw header value, nil when absent) against `value`, comparing the
    /// digests in constant time so a forger learns nothing from timing.
    public static func verify(value: some ContiguousBytes, header: [UInt8]?, key: some ContiguousBytes) -> Check {
        guard let header else { return .missing }
        let prefixBytes = Array(prefix.utf8)
        guard header.count == prefixBytes.count + 64, Array(header.prefix(prefixBytes.count)) == prefixBytes,
              let given = hexBytes(header[prefixBytes.count...]) else { return .malformed }
        let expected = hmacSHA256(key: key, message: value)
        let same = given.withUnsafeBytes { a in expected.withUnsafeBytes { b in CRYPTO_memcmp(a.baseAddress, b.baseAddress, 32) } }
        return same == 0 ? .valid : .wrong
    }

    /// `ed25519=<id>:<hex>` split, or nil when the header is not of that form.
    static func ed25519Parts(_ header: [UInt8]) -> (id: String, signature: [UInt8])? {
        let prefixBytes = Array(ed25519Prefix.utf8)
        guard header.count == prefixBytes.count + 16 + 1 + 128, Array(header.prefix(prefixBytes.count)) == prefixBytes,
              header[prefixBytes.count + 16] == UInt8(ascii: ":") else { return nil }
        let idBytes = header[prefixBytes.count..<(prefixBytes.count + 16)]
        guard hexBytes(idBytes) != nil, let signature = hexBytes(header[(prefixBytes.count + 17)...]) else { return nil }
        return (String(decoding: idBytes, as: UTF8.self).lowercased(), signature)
    }

    static func hexBytes(_ digits: ArraySlice<UInt8>) -> [UInt8]? {
        guard digits.count % 2 == 0 else { return nil }
        var bytes = [UInt8]()
        bytes.reserveCapacity(digits.count / 2)
        var index = digits.startIndex
        while index < digits.endIndex {
            guard let high = hexValue(digits[index]), let low = hexValue(digits[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
            index += 2
        }
        return bytes
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

/// How `weir control` (or a worker writing a decision under HMAC) signs a control message.
public enum ControlSigner: Sendable {
    /// The shared HMAC key.
    case hmac([UInt8])
    /// An operator's Ed25519 private key.
    case ed25519(ControlPrivateKey)

    /// The `weir-signature` header value for `value`.
    public func header(for value: some ContiguousBytes) -> String {
        switch self {
        case .hmac(let key): ControlSignature.sign(value: value, key: key)
        case .ed25519(let key): ControlSignature.ed25519Prefix + key.id + ":" + hex(key.sign(value))
        }
    }

    /// What checks this signer's messages: the HMAC key itself, or the private key's public half.
    public var verifier: ControlVerifier {
        switch self {
        case .hmac(let key): ControlVerifier(hmacKey: key)
        case .ed25519(let key): ControlVerifier(publicKeys: key.publicKeys)
        }
    }
}

/// What a worker accepts control messages signed with: Ed25519 public keys (`control.public-keys`),
/// a shared HMAC key (`control.key-file`), or both while moving from one to the other.
public struct ControlVerifier: Sendable {
    public var hmacKey: [UInt8]?
    public var publicKeys: ControlPublicKeys?

    public init(hmacKey: [UInt8]? = nil, publicKeys: ControlPublicKeys? = nil) {
        self.hmacKey = hmacKey
        self.publicKeys = publicKeys
    }

    /// Checks the `weir-signature` header (nil when absent) against `value`.
    public func check(value: some ContiguousBytes, header: [UInt8]?) -> ControlSignature.Check {
        guard let header else { return .missing }
        if header.starts(with: ControlSignature.ed25519Prefix.utf8) {
            guard let (id, signature) = ControlSignature.ed25519Parts(header) else { return .malformed }
            guard let publicKeys else { return .notAccepted("an Ed25519 signature, but control.public-keys is not set") }
            guard let key = publicKeys.keys[id] else { return .unknownKey(id) }
            return key.verify(signature, value) ? .valid : .wrong
        }
        if header.starts(with: ControlSignature.prefix.utf8) {
            guard let hmacKey else {
                // Still malformed first: a broken header says so whatever is set up.
                if case .malformed = ControlSignature.verify(value: value, header: header, key: [UInt8]()) { return .malformed }
                return .notAccepted("an HMAC signature, but control.key-file is not set (this worker takes Ed25519 signatures only)")
            }
            return ControlSignature.verify(value: value, header: header, key: hmacKey)
        }
        return .malformed
    }
}

/// The shortest HMAC key accepted: 32 bytes, the hash's own size.
public let minimumControlKeyBytes = 32

/// Reads the control key: the file's bytes with one trailing newline removed (docs/contracts.md);
/// refuses a key under 32 bytes.
public func readControlKey(path: String) throws -> [UInt8] {
    guard let data = FileManager.default.contents(atPath: path) else {
        throw ControlMessageError("control.key-file: cannot read \(path)")
    }
    var key = Array(data)
    if key.last == UInt8(ascii: "\n") { key.removeLast() }
    if key.isEmpty { throw ControlMessageError("control.key-file: \(path) is empty; put the shared HMAC key in it") }
    if key.count < minimumControlKeyBytes {
        throw ControlMessageError("control.key-file: the key in \(path) is \(key.count) bytes; use at least \(minimumControlKeyBytes) random bytes (head -c 32 /dev/urandom | base64 > \(path))")
    }
    return key
}
