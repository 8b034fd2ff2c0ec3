import Foundation
import Testing
import WeirControl
import WeirStore
import WeirTestSupport

/// Bundle locations: the SigV4 signer against botocore's, and a real S3 API server (moto) for
/// push, download, verification, the cache and the AWS credential chain.
@Suite(.serialized, .timeLimit(.minutes(3))) struct BundleStoreTests {
    /// The headers botocore computed for fixed requests (scripts/make-sigv4-goldens.py).
    @Test func signaturesEqualBotocores() throws {
        let url = repositoryRoot.appendingPathComponent("Tests/WeirWorkerTests/Fixtures/sigv4-goldens.json")
        let cases = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [[String: Any]])
        #expect(cases.count == 4)
        for golden in cases {
            let address = try #require(URL(string: golden["url"] as! String))
            let host = address.port.map { "\(address.host!):\($0)" } ?? address.host!
            let body = Data((golden["body"] as! String).utf8)
            let request = SigV4Request(method: golden["method"] as! String, host: host, path: address.path(percentEncoded: true),
                                       payloadSHA256: sha256Hex(body))
            let credentials = AWSCredentials(accessKeyID: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                                             sessionToken: golden["session_token"] as? String)
            let date = try #require(ISO8601DateFormatter().date(from: golden["date"] as! String))
            let headers = request.signedHeaders(credentials: credentials, region: golden["region"] as! String, service: "s3", date: date)
            #expect(headers.last == "Authorization: \(golden["authorization"] as! String)", "\(golden["name"]!)")
        }
    }

    /// A bundle pushed with `BundleStore.push` comes back verified, from the store the first time
    /// and from the cache after; a changed object or a manifest naming other files is refused.
    @Test func pushFetchCacheAndRefusals() throws {
        let moto = try MotoServer()
        defer { moto.stop() }
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("weir-store-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let store = BundleStore(settings: BundleStoreSettings(cacheDirectory: scratch.appendingPathComponent("cache").path,
                                                              environment: moto.environment))
        let s3 = S3Client(configuration: S3Configuration(environment: moto.environment))
        try s3.createBucket("models").get()
        let local = try BundleFiles(directory: demoBundleURL)
        try store.push(local, to: "s3://models/fraud/1.0.0")

        let first = try store.fetch(location: "s3://models/fraud/1.0.0", identity: local.identity)
        #expect(first.origin == "downloaded")
        #expect(first.files.files == local.files && first.files.manifestData == local.manifestData)
        let again = try store.fetch(location: "s3://models/fraud/1.0.0/", identity: local.identity)
        #expect(again.origin == "cached")
        #expect(try ModelBundle(files: again.files, directory: again.directory).id == local.identity)

        // The signed sha256 decides: a message naming another identity gets nothing parsed.
        let other = String(repeating: "ab", count: 32)
        #expect { _ = try store.fetch(location: "s3://models/fraud/1.0.0", identity: other) } throws: {
            ($0 as? BundleError)?.kind == .hashMismatch
        }
        // A model object changed in the store after the manifest was signed.
        try s3.put(bucket: "models", key: "tampered/manifest.json", body: local.manifestData).get()
        try s3.put(bucket: "models", key: "tampered/model.onnx", body: Data("not the model".utf8)).get()
        try s3.put(bucket: "models", key: "tampered/reference.json", body: local.files["reference.json"]!).get()
        try FileManager.default.removeItem(at: scratch.appendingPathComponent("cache/\(local.identity)"))
        #expect { _ = try store.fetch(location: "s3://models/tampered", identity: local.identity) } throws: {
            ($0 as? BundleError)?.kind == .hashMismatch && "\($0)".contains("model.onnx: sha256 is")
        }
        // A manifest naming a file outside the bundle is refused before anything else is fetched.
        var manifest = local.manifest
        manifest.sha256["../secrets"] = String(repeating: "0", count: 64)
        let stranger = try JSONEncoder().encode(manifest)
        try s3.put(bucket: "models", key: "stranger/manifest.json", body: stranger).get()
        #expect { _ = try store.fetch(location: "s3://models/stranger", identity: sha256Hex(stranger)) } throws: {
            "\($0)".contains("sha256 names '../secrets'; a bundle holds only model.onnx and reference.json")
        }
        // Not uploaded (yet): worth retrying, not a refusal.
        #expect { _ = try store.fetch(location: "s3://models/missing", identity: local.identity) } throws: {
            ($0 as? BundleError)?.kind == .unavailable && "\($0)".contains("answered 404")
        }
    }

    /// The cache keeps what is in use and drops the least recently used past its bound.
    @Test func cacheEvictsLeastRecentlyUsed() throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("weir-cache-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let local = try BundleFiles(directory: demoBundleURL)
        let size = local.files.values.reduce(local.manifestData.count) { $0 + $1.count }
        let cache = BundleCache(directory: scratch, maxBytes: size * 2 + size / 2)
        func variant(_ version: String) throws -> BundleFiles {
            var manifest = local.manifest
            manifest.version = version
            let data = try JSONEncoder().encode(manifest)
            return try BundleFiles(manifestData: data, expectedIdentity: nil, source: version) { local.files[$0]! }
        }
        let (a, b, c) = (try variant("1.0.1"), try variant("1.0.2"), try variant("1.0.3"))
        try cache.store(a)
        try cache.store(b)
        // a used after b: b is now the least recently used.
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -60)],
                                              ofItemAtPath: scratch.appendingPathComponent(b.identity).path)
        #expect(cache.lookup(a.identity) != nil)
        try cache.store(c)
        #expect(Set(cache.entries().map(\.identity)) == [a.identity, c.identity])
        // In use: kept even past the bound.
        try cache.store(b, keeping: [a.identity, c.identity])
        #expect(Set(cache.entries().map(\.identity)) == [a.identity, b.identity, c.identity])
        // A damaged entry is dropped on lookup, not served.
        try Data("x".utf8).write(to: scratch.appendingPathComponent("\(a.identity)/model.onnx"))
        #expect(cache.lookup(a.identity) == nil)
        #expect(!FileManager.default.fileExists(atPath: scratch.appendingPathComponent(a.identity).path))
    }

    /// Credentials from a web-identity token (STS, as on EKS) and from a profile, and an
    /// `https://`-style location read with a bearer token.
    @Test func credentialChainAndBearerLocations() throws {
        let moto = try MotoServer()
        defer { moto.stop() }
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("weir-chain-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        let local = try BundleFiles(directory: demoBundleURL)
        let setup = S3Client(configuration: S3Configuration(environment: moto.environment))
        try setup.createBucket("team").get()

        // Web identity: no static keys; the token file and role go to STS.
        let tokenFile = scratch.appendingPathComponent("token")
        try "eyJhbGciOiJSUzI1NiJ9.test.token".write(to: tokenFile, atomically: true, encoding: .utf8)
        let webIdentity = ["AWS_ENDPOINT_URL": moto.endpoint, "AWS_REGION": "us-east-1",
                           "AWS_WEB_IDENTITY_TOKEN_FILE": tokenFile.path, "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/weir",
                           "HOME": scratch.path]
        let viaSTS = BundleStore(settings: BundleStoreSettings(cacheDirectory: scratch.appendingPathComponent("c1").path, environment: webIdentity))
        #expect(viaSTS.s3CredentialSource == "web identity")
        try viaSTS.push(local, to: "s3://team/fraud")
        #expect(try viaSTS.fetch(location: "s3://team/fraud", identity: local.identity).origin == "downloaded")

        // A profile in the shared credentials file.
        let credentials = scratch.appendingPathComponent("credentials")
        try "[default]\naws_access_key_id = other\n\n[ml]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = profile-secret\n"
            .write(to: credentials, atomically: true, encoding: .utf8)
        let profile = ["AWS_ENDPOINT_URL": moto.endpoint, "AWS_REGION": "us-east-1", "AWS_PROFILE": "ml",
                       "AWS_SHARED_CREDENTIALS_FILE": credentials.path, "HOME": scratch.path]
        let viaProfile = BundleStore(settings: BundleStoreSettings(cacheDirectory: scratch.appendingPathComponent("c2").path, environment: profile))
        #expect(viaProfile.s3CredentialSource == "profile ml")
        #expect(try viaProfile.fetch(location: "s3://team/fraud", identity: local.identity).origin == "downloaded")

        // No credentials at all: one line saying where they come from.
        let none = BundleStore(settings: BundleStoreSettings(cacheDirectory: scratch.appendingPathComponent("c3").path,
                                                             environment: ["AWS_ENDPOINT_URL": moto.endpoint, "HOME": scratch.path]))
        #expect { _ = try none.fetch(location: "s3://team/fraud", identity: local.identity) } throws: {
            "\($0)".contains("no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        }

        // An HTTP(S) prefix with a bearer token file (the store refuses a request without one).
        let bearer = scratch.appendingPathComponent("bearer")
        try "a-token\n".write(to: bearer, atomically: true, encoding: .utf8)
        let http = BundleStore(settings: BundleStoreSettings(cacheDirectory: scratch.appendingPathComponent("c4").path,
                                                             httpsTokenFile: bearer.path, environment: [:]))
        #expect(try http.fetch(location: "\(moto.endpoint)/team/fraud/", identity: local.identity).origin == "downloaded")
        let anonymous = BundleStore(settings: BundleStoreSettings(cacheDirectory: scratch.appendingPathComponent("c5").path, environment: [:]))
        #expect { _ = try anonymous.fetch(location: "\(moto.endpoint)/team/fraud", identity: local.identity) } throws: {
            "\($0)".contains("answered 403")
        }
    }

    /// An `https://` location over real TLS (`openssl s_server -WWW` serving the bundle's files),
    /// trusted through `SSL_CERT_FILE`; without the CA the server is refused, not retried.
    @Test func httpsLocationsAreReadOverTLS() throws {
        let certificates = try RegistryTLSTests.Certificates()
        defer { try? FileManager.default.removeItem(at: certificates.directory) }
        let root = certificates.directory.appendingPathComponent("www")
        let bundle = root.appendingPathComponent("fraud/1.0.0")
        try FileManager.default.createDirectory(at: bundle, withIntermediateDirectories: true)
        for name in ["manifest.json", "model.onnx", "reference.json"] {
            try FileManager.default.copyItem(at: demoBundleURL.appendingPathComponent(name), to: bundle.appendingPathComponent(name))
        }
        let (server, port) = try RegistryTLSTests.serveFiles(root, certificates, requiringClientCertificate: false)
        // SIGKILL: a child inherits an ignored SIGTERM from the test runner, and s_server keeps no state.
        defer { stop(server, signal: SIGKILL, seconds: 5) }
        let local = try BundleFiles(directory: demoBundleURL)
        let cache = certificates.directory.appendingPathComponent("cache").path
        let trusted = BundleStore(settings: BundleStoreSettings(cacheDirectory: cache, environment: ["SSL_CERT_FILE": certificates.ca]))
        let fetched = try trusted.fetch(location: "https://127.0.0.1:\(port)/fraud/1.0.0", identity: local.identity)
        #expect(fetched.origin == "downloaded" && fetched.files.files == local.files)
        let untrusted = BundleStore(settings: BundleStoreSettings(cacheDirectory: cache + "-2", environment: [:]))
        #expect { _ = try untrusted.fetch(location: "https://127.0.0.1:\(port)/fraud/1.0.0", identity: local.identity) } throws: {
            ($0 as? BundleError)?.kind == .unreadable
        }
    }
}
