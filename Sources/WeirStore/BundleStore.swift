import Foundation
import WeirControl

/// Where bundles come from and where downloads are kept (settings `bundle-cache.*`,
/// `bundle-store.*`).
public struct BundleStoreSettings: Sendable {
    /// The local content-addressed cache of downloaded bundles.
    public var cacheDirectory: String
    /// The cache's size bound; the least recently used bundles not in use leave first.
    public var cacheMaxBytes: Int
    /// A bearer token for `https://` locations, read at each download (so it can rotate).
    public var httpsTokenFile: String?
    /// Overrides of the AWS environment's region and addressing style.
    public var s3Region: String?
    public var s3PathStyle: Bool?
    public var environment: [String: String]

    public init(cacheDirectory: String = BundleStoreSettings.defaultCacheDirectory, cacheMaxBytes: Int = 2 << 30,
                httpsTokenFile: String? = nil, s3Region: String? = nil, s3PathStyle: Bool? = nil,
                environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.cacheDirectory = cacheDirectory
        self.cacheMaxBytes = cacheMaxBytes
        self.httpsTokenFile = httpsTokenFile
        self.s3Region = s3Region
        self.s3PathStyle = s3PathStyle
        self.environment = environment
    }

    /// `$TMPDIR/weir-bundle-cache` (`/tmp` without TMPDIR).
    public static var defaultCacheDirectory: String {
        (ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp") + "/weir-bundle-cache"
    }
}

/// A bundle fetched and verified, and where its bytes are kept.
public struct FetchedBundle: Sendable {
    public let files: BundleFiles
    /// The bundle's directory: its own for `file://`, the cache entry for a download.
    public let directory: URL
    /// `downloaded`, `cached` (a verified cache entry) or `local`.
    public let origin: String
}

/// Fetches the bundles control messages name, from `file://` paths, `s3://bucket/prefix` or
/// `https://` prefixes. Remote bytes are verified against the signed sha256 before anything is
/// parsed (the manifest's hash first, then every file's hash from the manifest), kept in a
/// content-addressed cache, and reused across restarts.
public final class BundleStore: Sendable {
    public let settings: BundleStoreSettings
    private let s3: S3Client
    public let cache: BundleCache

    public init(settings: BundleStoreSettings) {
        self.settings = settings
        s3 = S3Client(configuration: S3Configuration(environment: settings.environment, region: settings.s3Region,
                                                     pathStyle: settings.s3PathStyle))
        cache = BundleCache(directory: URL(fileURLWithPath: settings.cacheDirectory), maxBytes: settings.cacheMaxBytes)
    }

    /// Where S3 credentials come from (for a start-up log line).
    public var s3CredentialSource: String { s3.configuration.credentials.source }

    /// The bundle at `location` whose manifest has sha256 `identity` (nil: whatever manifest is
    /// there, for a worker's starting `model`), verified; `keeping` are the identities in use,
    /// which the cache does not evict.
    public func fetch(location: String, identity: String?, keeping: Set<String> = []) throws -> FetchedBundle {
        let source = try BundleSource(location)
        switch source {
        case .directory(let url):
            return FetchedBundle(files: try BundleFiles(directory: url, expectedIdentity: identity), directory: url, origin: "local")
        case .s3, .http:
            if let identity, let files = cache.lookup(identity) {
                return FetchedBundle(files: files, directory: cache.entry(identity), origin: "cached")
            }
            let manifestData = try download(source, "manifest.json", limit: BundleFiles.maximumManifestBytes)
            if identity == nil, let files = cache.lookup(sha256Hex(manifestData)) {
                return FetchedBundle(files: files, directory: cache.entry(files.identity), origin: "cached")
            }
            let files = try BundleFiles(manifestData: manifestData, expectedIdentity: identity, source: location) { name in
                try download(source, name, limit: BundleFiles.maximumFileBytes)
            }
            let directory = try cache.store(files, keeping: keeping)
            return FetchedBundle(files: files, directory: directory, origin: "downloaded")
        }
    }

    /// Reads and verifies a bundle where it is kept (`weir control deploy --location` without a local copy).
    public func files(at location: String) throws -> BundleFiles {
        let source = try BundleSource(location)
        if case .directory(let url) = source { return try BundleFiles(directory: url) }
        return try BundleFiles(manifestData: try download(source, "manifest.json", limit: BundleFiles.maximumManifestBytes),
                               expectedIdentity: nil, source: location) { name in
            try download(source, name, limit: BundleFiles.maximumFileBytes)
        }
    }

    /// Uploads a verified bundle to `location` (`weir model push`): its files first, the
    /// manifest last, so a reader that finds the manifest finds every file it names.
    public func push(_ files: BundleFiles, to location: String) throws {
        let source = try BundleSource(location)
        guard case .s3(let target) = source else {
            throw StoreError(.invalidLocation, "\(location): weir model push writes to s3:// locations; copy files to a file:// path yourself")
        }
        for (name, bytes) in files.files.sorted(by: { $0.key < $1.key }) + [("manifest.json", files.manifestData)] {
            try s3.put(bucket: target.bucket, key: target.key(name), body: bytes).get()
        }
    }

    private func download(_ source: BundleSource, _ name: String, limit: Int) throws -> Data {
        let result: Result<Data, StoreError>
        switch source {
        case .directory: fatalError("local bundles are read, not downloaded")
        case .s3(let location):
            result = s3.get(bucket: location.bucket, key: location.key(name), maxBytes: limit)
        case .http(let prefix):
            var headers = [String]()
            if let tokenFile = settings.httpsTokenFile {
                guard let token = try? String(contentsOfFile: tokenFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines),
                      !token.isEmpty else {
                    throw BundleError("bundle-store.https-token-file: cannot read a token from \(tokenFile)", kind: .unavailable)
                }
                headers.append("Authorization: Bearer \(token)")
            }
            let url = "\(prefix)/\(name)"
            result = HTTPTransport.perform("GET", url, headers: headers, maxBodyBytes: limit, timeoutMs: 60_000,
                                           caFile: settings.environment["SSL_CERT_FILE"]).flatMap { answer in
                (200..<300).contains(answer.status) ? .success(answer.body) : .failure(HTTPTransport.statusError(answer, "GET \(url)"))
            }
        }
        switch result {
        case .success(let data): return data
        case .failure(let error):
            // Only what waiting may fix is retried; refused credentials or a bad location are not.
            throw BundleError(error.description, kind: error.kind == .unavailable ? .unavailable : .unreadable)
        }
    }
}

/// A bundle location, parsed.
enum BundleSource {
    case directory(URL)
    case s3(S3Location)
    /// `https://host/prefix` (or `http://` for an in-cluster store without TLS), without the trailing `/`.
    case http(String)

    init(_ location: String) throws {
        if location.hasPrefix("s3://") {
            do { self = .s3(try S3Location(location)) } catch { throw BundleError("bundle: \(error.description)", kind: .unreadable) }
        } else if location.hasPrefix("https://") || location.hasPrefix("http://") {
            var prefix = location
            while prefix.hasSuffix("/") { prefix.removeLast() }
            guard URL(string: prefix)?.host != nil else { throw BundleError("bundle: '\(location)' is not a valid URL", kind: .unreadable) }
            self = .http(prefix)
        } else {
            switch BundleRef(version: "", location: location, sha256: "").directory() {
            case .success(let url): self = .directory(url)
            case .failure(let error): throw BundleError(error.description, kind: .unreadable)
            }
        }
    }
}

/// Downloaded bundles by identity (`DIR/<sha256 of manifest.json>/`), each entry written whole
/// under a temporary name and renamed into place, so a crash never leaves half a bundle that
/// looks complete; an entry is verified again when used (and dropped when it no longer matches).
/// Least recently used entries leave once the cache is over its size bound.
public final class BundleCache: Sendable {
    public let directory: URL
    public let maxBytes: Int

    public init(directory: URL, maxBytes: Int) {
        self.directory = directory
        self.maxBytes = maxBytes
    }

    func entry(_ identity: String) -> URL { directory.appendingPathComponent(identity) }

    /// A verified cached bundle, marked as just used; nil when absent or no longer matching.
    public func lookup(_ identity: String) -> BundleFiles? {
        let url = entry(identity)
        guard FileManager.default.fileExists(atPath: url.appendingPathComponent("manifest.json").path) else { return nil }
        guard let files = try? BundleFiles(directory: url, expectedIdentity: identity) else {
            try? FileManager.default.removeItem(at: url)
            return nil
        }
        touch(url)
        return files
    }

    /// Writes `files` as an entry and evicts past the bound (never `keeping` nor this one).
    @discardableResult
    public func store(_ files: BundleFiles, keeping: Set<String> = []) throws -> URL {
        let target = entry(files.identity)
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let partial = directory.appendingPathComponent(".partial-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: partial, withIntermediateDirectories: false)
            for (name, bytes) in files.files { try bytes.write(to: partial.appendingPathComponent(name)) }
            try files.manifestData.write(to: partial.appendingPathComponent("manifest.json"))
            if rename(partial.path, target.path) != 0 {
                // Another process stored the same bundle first: same bytes, keep theirs.
                try? FileManager.default.removeItem(at: partial)
            }
        } catch {
            throw BundleError("bundle-cache.dir \(directory.path): cannot store a downloaded bundle (\(error.localizedDescription))", kind: .unreadable)
        }
        touch(target)
        evict(keeping: keeping.union([files.identity]))
        return target
    }

    /// The entries, oldest use first, with their sizes.
    public func entries() -> [(identity: String, bytes: Int, used: Date)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.filter { $0.count == 64 && $0.allSatisfy(\.isHexDigit) }.compactMap { name in
            let url = entry(name)
            guard let used = (try? FileManager.default.attributesOfItem(atPath: url.path))?[.modificationDate] as? Date else { return nil }
            let files = (try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []
            let bytes = files.reduce(0) { total, file in
                total + (((try? FileManager.default.attributesOfItem(atPath: url.appendingPathComponent(file).path))?[.size] as? Int) ?? 0)
            }
            return (name, bytes, used)
        }.sorted { $0.used < $1.used }
    }

    /// Removes least recently used entries until the cache fits its bound, sparing `keeping`.
    public func evict(keeping: Set<String>) {
        let all = entries()
        var total = all.reduce(0) { $0 + $1.bytes }
        for entry in all where total > maxBytes && !keeping.contains(entry.identity) {
            try? FileManager.default.removeItem(at: self.entry(entry.identity))
            total -= entry.bytes
        }
    }

    private func touch(_ url: URL) {
        try? FileManager.default.setAttributes([.modificationDate: Date()], ofItemAtPath: url.path)
    }
}
