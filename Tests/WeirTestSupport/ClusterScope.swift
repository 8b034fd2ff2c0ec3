import Testing
import WeirKafka

extension EmbeddedCluster {
    /// Stops the cluster, recording a test issue that names every client still open against it:
    /// each test closes what it opens (a leaked client reconnects to the stopped broker for the
    /// rest of the run, and its log lines bury the test output).
    public func stopCheckingClients(sourceLocation: SourceLocation = #_sourceLocation) {
        let left = KafkaClients.waitUntilClosed(connectingTo: bootstrapServers, timeoutMs: 2_000)
        stop()
        if !left.isEmpty {
            Issue.record("clients left open against the test's cluster: \(left.joined(separator: ", "))", sourceLocation: sourceLocation)
        }
    }
}
