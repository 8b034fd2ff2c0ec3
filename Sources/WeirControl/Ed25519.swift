import COpenSSL
import Foundation

/// Why a key could not be made, read or used, naming the file.
public struct KeyError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// An Ed25519 key held by OpenSSL. Unchecked `Sendable`: the key never changes after it is
/// made or read, and OpenSSL allows concurrent signing and verifying with one key when each
/// operation has its own context (as here).
final class Ed25519Key: @unchecked Sendable {
    let pointer: OpaquePointer

    init(_ pointer: OpaquePointer) { self.pointer = pointer }
    deinit { EVP_PKEY_free(pointer) }

    /// The 32-byte public key.
    var rawPublicKey: [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 32)
        var length = 32
        EVP_PKEY_get_raw_public_key(pointer, &bytes, &length)
        return Array(bytes.prefix(length))
    }

    /// The key's id: the first 16 hex digits of the sha256 of its public key (what a signature
    /// header names, so a worker holding several keys knows which one to check).
    var id: String { String(sha256Hex(rawPublicKey).prefix(16)) }

    /// Every key in PEM text (`BEGIN PUBLIC KEY` blocks, or one `BEGIN PRIVATE KEY`).
    static func read(pem: [UInt8], privateKey: Bool) -> [Ed25519Key] {
        var keys = [Ed25519Key]()
        pem.withUnsafeBytes { raw in
            guard let bio = BIO_new_mem_buf(raw.baseAddress, Int32(raw.count)) else { return }
            defer { BIO_free(bio) }
            while true {
                let key = privateKey ? PEM_read_bio_PrivateKey(bio, nil, nil, nil) : PEM_read_bio_PUBKEY(bio, nil, nil, nil)
                guard let key else { break }
                guard EVP_PKEY_get_base_id(key) == EVP_PKEY_ED25519 else {
                    EVP_PKEY_free(key)
                    keys.removeAll()
                    break
                }
                keys.append(Ed25519Key(key))
                if privateKey { break }
            }
            // The loop ends on "no more PEM blocks", which OpenSSL queues as an error.
            ERR_clear_error()
        }
        return keys
    }

    /// The PEM text of the private (or public) key.
    func pem(privateKey: Bool) -> String {
        guard let bio = BIO_new(BIO_s_mem()) else { return "" }
        defer { BIO_free(bio) }
        let written = privateKey ? PEM_write_bio_PrivateKey(bio, pointer, nil, nil, 0, nil, nil) : PEM_write_bio_PUBKEY(bio, pointer)
        guard written == 1 else { return "" }
        var data: UnsafeMutableRawPointer?
        let length = BIO_ctrl(bio, BIO_CTRL_INFO, 0, &data)
        guard let data, length > 0 else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: data, count: Int(length)), as: UTF8.self)
    }

    func sign(_ message: some ContiguousBytes) -> [UInt8] {
        guard let context = EVP_MD_CTX_new() else { return [] }
        defer { EVP_MD_CTX_free(context) }
        guard EVP_DigestSignInit(context, nil, nil, nil, pointer) == 1 else { return [] }
        var signature = [UInt8](repeating: 0, count: 64)
        var length = 64
        let signed = message.withUnsafeBytes { bytes in
            EVP_DigestSign(context, &signature, &length, bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count)
        }
        return signed == 1 ? Array(signature.prefix(length)) : []
    }

    func verify(_ signature: [UInt8], _ message: some ContiguousBytes) -> Bool {
        guard signature.count == 64, let context = EVP_MD_CTX_new() else { return false }
        defer { EVP_MD_CTX_free(context) }
        guard EVP_DigestVerifyInit(context, nil, nil, nil, pointer) == 1 else { return false }
        let verified = message.withUnsafeBytes { bytes in
            EVP_DigestVerify(context, signature, 64, bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count)
        }
        ERR_clear_error()
        return verified == 1
    }

    /// A new random key pair.
    static func generate() throws -> Ed25519Key {
        guard let context = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nil) else { throw KeyError("OpenSSL cannot make Ed25519 keys") }
        defer { EVP_PKEY_CTX_free(context) }
        var key: OpaquePointer?
        guard EVP_PKEY_keygen_init(context) == 1, EVP_PKEY_keygen(context, &key) == 1, let key else {
            throw KeyError("OpenSSL failed to generate an Ed25519 key")
        }
        return Ed25519Key(key)
    }
}

/// The operator's signing key (`weir control --private-key-file`): PEM, PKCS#8, Ed25519.
public struct ControlPrivateKey: Sendable {
    let key: Ed25519Key

    /// The key's id, as signatures name it.
    public var id: String { key.id }

    /// Reads the private key in `path`.
    public init(path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else { throw KeyError("cannot read \(path)") }
        guard let key = Ed25519Key.read(pem: Array(data), privateKey: true).first else {
            throw KeyError("\(path) holds no Ed25519 private key (PEM 'BEGIN PRIVATE KEY'); make one with weir control keygen")
        }
        self.key = key
    }

    private init(key: Ed25519Key) { self.key = key }

    /// A new key held only in memory (tests and fuzzing; operators use `generate`, which writes files).
    public static func inMemory() throws -> ControlPrivateKey { ControlPrivateKey(key: try Ed25519Key.generate()) }

    /// The matching public key set (one key): what `weir control` checks the topic's history with
    /// when no public keys file is given.
    public var publicKeys: ControlPublicKeys { ControlPublicKeys(keys: [key.id: key]) }

    /// Makes a new key pair and writes the private key (mode 0600, refusing to overwrite) and the
    /// public key (PEM). Returns the key id.
    public static func generate(privateKeyFile: String, publicKeyFile: String) throws -> String {
        let key = try Ed25519Key.generate()
        let descriptor = open(privateKeyFile, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw KeyError("--private-key-file \(privateKeyFile): cannot create it (\(String(cString: strerror(errno)))); it must not exist yet")
        }
        let pem = Array(key.pem(privateKey: true).utf8)
        let written = pem.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        close(descriptor)
        guard written == pem.count else { throw KeyError("--private-key-file \(privateKeyFile): write failed") }
        do { try key.pem(privateKey: false).write(toFile: publicKeyFile, atomically: true, encoding: .utf8) } catch {
            throw KeyError("--public-key-file \(publicKeyFile): \(error.localizedDescription)")
        }
        return key.id
    }

    func sign(_ value: some ContiguousBytes) -> [UInt8] { key.sign(value) }
}

/// The public keys a worker accepts control messages from, by id (`control.public-keys`: one or
/// more PEM `BEGIN PUBLIC KEY` blocks, so a new key can be added before the old one is removed).
public struct ControlPublicKeys: Sendable {
    let keys: [String: Ed25519Key]

    init(keys: [String: Ed25519Key]) { self.keys = keys }

    /// Reads every public key in `path`; refuses a file without one, or with a key that is not Ed25519.
    public init(path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else { throw KeyError("control.public-keys: cannot read \(path)") }
        try self.init(pem: Array(data), source: path)
    }

    public init(pem: [UInt8], source: String) throws {
        let keys = Ed25519Key.read(pem: pem, privateKey: false)
        guard !keys.isEmpty else {
            throw KeyError("control.public-keys: \(source) holds no Ed25519 public key (PEM 'BEGIN PUBLIC KEY' blocks); make a pair with weir control keygen")
        }
        self.keys = Dictionary(keys.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
    }

    /// The ids, sorted (for a log line).
    public var ids: [String] { keys.keys.sorted() }
}
