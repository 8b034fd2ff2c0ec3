import Foundation

/// The bytes of one bundle, each file read once: a loader hashes, checks and parses exactly these
/// bytes, so a bundle rewritten in place while it loads cannot serve files other than the ones
/// whose hashes were checked. Wherever the bundle came from (a directory, the download cache, an
/// object store), it is verified here, the same way.
public struct BundleFiles: Sendable {
    /// The file names a bundle may hold besides `manifest.json`: a manifest naming any other file
    /// (`../../etc/passwd`, a path, a typo) is refused before anything is read.
    public static let allowedNames: Set<String> = ["model.onnx", "reference.json"]
    /// Upper bound of `manifest.json`: a manifest is a few kilobytes.
    public static let maximumManifestBytes = 1 << 20
    /// Upper bound of any other file (a model of 2 GiB is far past what one worker serves).
    public static let maximumFileBytes = 2 << 30

    /// `manifest.json` as read.
    public let manifestData: Data
    /// The manifest, decoded from `manifestData` and validated.
    public let manifest: BundleManifest
    /// Every file the manifest hashes, by name, each matching its sha256.
    public let files: [String: Data]
    /// SHA-256 of `manifestData`: the bundle's identity.
    public let identity: String

    /// Verifies a bundle from its parts: the manifest's identity is `expectedIdentity` (when
    /// given: the signed sha256), it is valid and names only allowed files, and `read(name)` gives
    /// each file it hashes with that hash. `source` names where the bytes came from in errors.
    public init(manifestData: Data, expectedIdentity: String?, source: String,
                read: (String) throws -> Data) throws {
        let identity = sha256Hex(manifestData)
        if let expectedIdentity, identity != expectedIdentity.lowercased() {
            throw BundleError("\(source)/manifest.json: sha256 is \(identity), the message says \(expectedIdentity)", kind: .hashMismatch)
        }
        let manifest: BundleManifest
        do { manifest = try JSONDecoder().decode(BundleManifest.self, from: manifestData) } catch {
            throw BundleError("\(source)/manifest.json: \(describe(error))")
        }
        try ModelBundle.validate(manifest, at: "\(source)/manifest.json")
        if let stranger = manifest.sha256.keys.sorted().first(where: { !Self.allowedNames.contains($0) }) {
            throw BundleError("\(source)/manifest.json: sha256 names '\(stranger)'; a bundle holds only \(Self.allowedNames.sorted().joined(separator: " and "))")
        }
        var files = [String: Data]()
        for (name, expected) in manifest.sha256.sorted(by: { $0.key < $1.key }) {
            let bytes = try read(name)
            let actual = sha256Hex(bytes)
            guard actual == expected.lowercased() else {
                throw BundleError("\(source)/\(name): sha256 is \(actual) but manifest.json says \(expected)", kind: .hashMismatch)
            }
            files[name] = bytes
        }
        self.manifestData = manifestData
        self.manifest = manifest
        self.files = files
        self.identity = identity
    }

    /// Reads and verifies the bundle in `directory`, each file once and within its size bound.
    public init(directory: URL, expectedIdentity: String? = nil) throws {
        let manifestURL = directory.appendingPathComponent("manifest.json")
        let manifestData: Data
        do { manifestData = try Self.readBounded(manifestURL, limit: Self.maximumManifestBytes) } catch {
            throw BundleError("\(manifestURL.path): cannot read the bundle manifest (\(error))", kind: .unreadable)
        }
        try self.init(manifestData: manifestData, expectedIdentity: expectedIdentity, source: directory.path) { name in
            let url = directory.appendingPathComponent(name)
            do { return try Self.readBounded(url, limit: Self.maximumFileBytes) } catch {
                throw BundleError("\(url.path): listed in manifest.json sha256 but cannot be read (\(error))", kind: .unreadable)
            }
        }
        let referenceURL = directory.appendingPathComponent("reference.json")
        if manifest.sha256["reference.json"] == nil && FileManager.default.fileExists(atPath: referenceURL.path) {
            throw BundleError("\(referenceURL.path): present but manifest.json has no sha256 for it")
        }
    }

    /// A regular file's bytes through one descriptor, refusing more than `limit` bytes (a file
    /// that grows while it is read is cut at the limit and refused, not read without end).
    public static func readBounded(_ url: URL, limit: Int) throws -> Data {
        let descriptor = open(url.path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw FileReadError(reason: String(cString: strerror(errno))) }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else { throw FileReadError(reason: String(cString: strerror(errno))) }
        guard status.st_mode & S_IFMT == S_IFREG else { throw FileReadError(reason: "not a regular file") }
        let size = Int(status.st_size)
        guard size <= limit else { throw FileReadError(reason: "\(size) bytes is over the bound of \(limit)") }
        var bytes = Data(count: size + 1)
        var filled = 0
        let complete = bytes.withUnsafeMutableBytes { buffer -> Bool in
            while filled < buffer.count {
                let count = read(descriptor, buffer.baseAddress! + filled, buffer.count - filled)
                if count < 0 { if errno == EINTR { continue } else { return false } }
                if count == 0 { break }
                filled += count
            }
            return true
        }
        guard complete else { throw FileReadError(reason: String(cString: strerror(errno))) }
        guard filled <= size else { throw FileReadError(reason: "grew while being read") }
        bytes.count = filled
        return bytes
    }
}

/// Why a file could not be read.
public struct FileReadError: Error, CustomStringConvertible, Sendable {
    public let reason: String
    public var description: String { reason }
}
