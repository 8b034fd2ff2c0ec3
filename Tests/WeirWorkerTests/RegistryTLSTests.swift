import Foundation
import Testing
import WeirRegistry
import WeirTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The registry client over TLS against a real TLS server (`openssl s_server -WWW`, which serves
/// files as HTTP/1.0 answers): the CA file, a client certificate the server requires, basic auth
/// never on the wire in clear, and a bare 404 (no registry error code) that is not an unknown schema.
@Suite(.serialized, .timeLimit(.minutes(2))) struct RegistryTLSTests {
    /// A CA, a server certificate for 127.0.0.1 and a client certificate, all made by the test.
    struct Certificates {
        let directory: URL
        var ca: String { directory.appendingPathComponent("ca.pem").path }
        var serverCert: String { directory.appendingPathComponent("server.pem").path }
        var serverKey: String { directory.appendingPathComponent("server.key").path }
        var clientCert: String { directory.appendingPathComponent("client.pem").path }
        var clientKey: String { directory.appendingPathComponent("client.key").path }

        init() throws {
            directory = FileManager.default.temporaryDirectory.appendingPathComponent("weir-tls-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let d = directory.path
            let steps: [[String]] = [
                ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=weir-test-ca",
                 "-keyout", "\(d)/ca.key", "-out", "\(d)/ca.pem"],
                ["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "\(d)/server.key", "-out", "\(d)/server.csr"],
                ["openssl", "x509", "-req", "-in", "\(d)/server.csr", "-CA", "\(d)/ca.pem", "-CAkey", "\(d)/ca.key", "-CAcreateserial",
                 "-days", "2", "-extfile", "\(d)/san.cnf", "-out", "\(d)/server.pem"],
                ["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/CN=weir-worker", "-keyout", "\(d)/client.key", "-out", "\(d)/client.csr"],
                ["openssl", "x509", "-req", "-in", "\(d)/client.csr", "-CA", "\(d)/ca.pem", "-CAkey", "\(d)/ca.key", "-CAcreateserial",
                 "-days", "2", "-out", "\(d)/client.pem"],
            ]
            try "subjectAltName=IP:127.0.0.1\n".write(toFile: "\(d)/san.cnf", atomically: true, encoding: .utf8)
            for step in steps {
                let result = try run(step)
                guard result.status == 0 else { throw TestFailure("\(step.prefix(3).joined(separator: " ")) failed: \(result.errors)") }
            }
        }
    }

    /// `openssl s_server -WWW` serving the files under `root` over TLS with the test's server
    /// certificate (and requiring a client certificate the CA signed, when asked); listening when it returns.
    static func serveFiles(_ root: URL, _ certificates: Certificates, requiringClientCertificate: Bool) throws -> (Process, Int) {
        let port = try freePort()
        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        server.arguments = ["openssl", "s_server", "-accept", "127.0.0.1:\(port)", "-cert", certificates.serverCert, "-key", certificates.serverKey]
            + (requiringClientCertificate ? ["-CAfile", certificates.ca, "-Verify", "1"] : []) + ["-WWW", "-quiet"]
        server.currentDirectoryURL = root
        server.standardOutput = FileHandle.nullDevice
        server.standardError = FileHandle.nullDevice
        try server.run()
        do { try waitListening(port) } catch {
            stop(server, signal: SIGKILL, seconds: 5)
            throw error
        }
        return (server, port)
    }

    /// Waits (bounded) until something accepts connections on `port`.
    static func waitListening(_ port: Int) throws {
        try waitFor("s_server to listen on \(port)", timeoutSeconds: 10) { acceptsConnections(port) }
    }

    @Test func theClientFetchesOverMutualTLSAndRefusesWhatItCannotTrust() throws {
        let certificates = try Certificates()
        defer { try? FileManager.default.removeItem(at: certificates.directory) }
        // The files s_server -WWW serves: GET /schemas/ids/1 reads schemas/ids/1 under its directory.
        let root = certificates.directory.appendingPathComponent("www")
        try FileManager.default.createDirectory(at: root.appendingPathComponent("schemas/ids"), withIntermediateDirectories: true)
        try #"{"schema":"{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"x\",\"type\":\"double\"}]}"}"#
            .write(to: root.appendingPathComponent("schemas/ids/1"), atomically: true, encoding: .utf8)
        let (server, port) = try Self.serveFiles(root, certificates, requiringClientCertificate: true)
        // SIGKILL: a child inherits an ignored SIGTERM from the test runner, and s_server keeps no state.
        defer { stop(server, signal: SIGKILL, seconds: 5) }
        let url = "https://127.0.0.1:\(port)"

        let trusted = SchemaRegistryClient(RegistryConfiguration(url: url, basicAuth: "weir:tls-secret", caFile: certificates.ca,
                                                                 certFile: certificates.clientCert, keyFile: certificates.clientKey))
        let schema = try trusted.schema(id: 1)
        #expect(schema.schemaType == "AVRO" && schema.text.contains("\"name\":\"x\""))
        // s_server's 404 has no registry error code: a wrong URL, never "this id does not exist".
        #expect(throws: RegistryError.self) { try trusted.schema(id: 2) }
        do { _ = try trusted.schema(id: 2) } catch {
            if case .notFound = error { Issue.record("a bare 404 was taken for an unknown schema") }
        }
        // No client certificate: the server refuses the handshake. No CA: the server is not trusted.
        for (name, configuration) in [("no client certificate", RegistryConfiguration(url: url, caFile: certificates.ca)),
                                      ("no CA file", RegistryConfiguration(url: url, certFile: certificates.clientCert, keyFile: certificates.clientKey))] {
            do {
                _ = try SchemaRegistryClient(configuration).schema(id: 1)
                Issue.record("\(name): fetched anyway")
            } catch {
                guard case .unavailable(let why) = error else { Issue.record("\(name): \(error)"); continue }
                #expect(!why.contains("tls-secret"))
            }
        }
    }
}
