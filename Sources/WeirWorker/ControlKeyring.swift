import Foundation
import WeirCodec
import WeirControl
import WeirKafka

/// The keys this worker checks control messages with: the Ed25519 public keys of
/// `control.public-keys` and/or the HMAC key of `control.key-file`. The public keys file is
/// looked at again at most once a second (at the control plane's turn of the poll loop) and
/// re-read when it changed, so operators add a new key, move to it, then retire the old one
/// without restarting a worker. Poll thread only.
struct ControlKeyring {
    private(set) var intake: ControlIntake
    private let publicKeysPath: String?
    private var stamp: FileStamp?
    private var checkedAt: UInt64 = 0

    /// Reads the keys the settings name; refuses to start without one, or with a short HMAC key.
    init(settings: WorkerSettings) throws {
        var verifier = ControlVerifier()
        if let path = settings.controlKeyFile {
            do { verifier.hmacKey = try readControlKey(path: path) } catch { throw WorkerError("\(error)", kind: .configuration) }
        }
        publicKeysPath = settings.controlPublicKeys
        if let path = settings.controlPublicKeys {
            do { verifier.publicKeys = try ControlPublicKeys(path: path) } catch { throw WorkerError("\(error)", kind: .configuration) }
            stamp = FileStamp(path)
        }
        if verifier.hmacKey == nil && verifier.publicKeys == nil {
            throw WorkerError("control.public-keys: required with control-topic; give the PEM file of the operators' Ed25519 public keys (or control.key-file, a shared HMAC key)", kind: .configuration)
        }
        intake = ControlIntake(verifier: verifier, maxBytes: settings.controlMaxMessageBytes)
    }

    /// Re-reads the public keys file when it changed; returns a line to log when it did (or when
    /// the new file could not be used: the keys held so far stay).
    mutating func refresh(now: UInt64) -> (line: String, isProblem: Bool)? {
        guard let path = publicKeysPath, now &- checkedAt >= 1_000_000_000 else { return nil }
        checkedAt = now
        let current = FileStamp(path)
        guard current != stamp else { return nil }
        stamp = current
        do {
            let keys = try ControlPublicKeys(path: path)
            intake.verifier.publicKeys = keys
            return ("control: control.public-keys changed; now accepting keys \(keys.ids.joined(separator: ", "))", false)
        } catch {
            return ("control: control.public-keys changed but cannot be used (\(error)); keeping the keys held before", true)
        }
    }

    /// The ids of the public keys held (for the start-up line).
    var publicKeyIDs: [String] { intake.verifier.publicKeys?.ids ?? [] }
}

/// A file's modification time and size: enough to notice a mounted Secret or ConfigMap change.
struct FileStamp: Equatable {
    let seconds: Int
    let nanoseconds: Int
    let size: Int
    let inode: UInt64

    init?(_ path: String) {
        var status = stat()
        guard stat(path, &status) == 0 else { return nil }
        seconds = Int(status.st_mtim.tv_sec)
        nanoseconds = Int(status.st_mtim.tv_nsec)
        size = Int(status.st_size)
        inode = UInt64(status.st_ino)
    }
}

/// The durable half of replay protection (docs/control.md): after applying a control message a
/// worker publishes it, with the operator's signature, as a checkpoint record (key
/// `weir-checkpoint/<model>`) on the status topic. A restarting worker verifies the checkpoint
/// like any control message and counts it in its replay, so once compaction has removed newer
/// records from the control topic, an older signed message republished there is still stale.
enum ControlCheckpoint {
    static func key(model: String) -> [UInt8] { Array("weir-checkpoint/\(model)".utf8) }

    /// The checkpoint record of an applied message.
    static func record(_ applied: VerifiedControl, worker: String) -> [UInt8] {
        let writer = JSONWriter(capacity: 512)
        writer.raw("{\"type\":\"checkpoint\",\"worker\":")
        writer.string(worker)
        writer.raw(",\"model\":")
        writer.string(applied.message.model)
        writer.raw(",\"sequence\":")
        writer.integer(applied.message.sequence)
        writer.raw(",\"value\":")
        writer.string(Data(applied.value).base64EncodedString())
        writer.raw(",\"signature\":")
        writer.string(String(decoding: applied.signature, as: UTF8.self))
        writer.raw(UInt8(ascii: "}"))
        return writer.array
    }

    /// The verified message a checkpoint record carries, or nil (anything unverifiable is ignored:
    /// a forged checkpoint cannot move the floor).
    static func message(in record: KafkaMessage, model: String, intake: ControlIntake) -> VerifiedControl? {
        guard let key = record.key, key.elementsEqual(Self.key(model: model)), let value = record.value,
              value.count <= 4 * intake.maxBytes + 1024,
              let object = (try? JSONSerialization.jsonObject(with: Data(value))) as? [String: Any],
              object["type"] as? String == "checkpoint",
              let encoded = object["value"] as? String, let bytes = Data(base64Encoded: encoded),
              let signature = object["signature"] as? String else { return nil }
        let header = Array(signature.utf8)
        let checked = bytes.withUnsafeBytes { valueBytes in
            header.withUnsafeBytes { intake.check(value: valueBytes, header: $0) }
        }
        guard case .success(let verified) = checked, verified.message.model == model else { return nil }
        return verified
    }
}
