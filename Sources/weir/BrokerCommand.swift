import ArgumentParser
import WeirKafka
#if canImport(Glibc)
import Glibc
#endif

/// `weir broker`: a standalone embedded broker for demos, tests and local tools like kcat.
struct BrokerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "broker",
        abstract: "Run an embedded Kafka broker (librdkafka's mock cluster) until SIGINT/SIGTERM.",
        discussion: "Prints its bootstrap address as the first line of stdout.")

    @Option(help: "Partitions for each --topic.")
    var partitions: Int = 8

    @Option(name: .customLong("topic"), help: "A topic to create (repeatable).")
    var topics: [String] = []

    @Option(help: "Number of brokers in the cluster.")
    var brokers: Int = 1

    func validate() throws {
        guard partitions >= 1 else { throw ValidationError("--partitions must be at least 1, got \(partitions)") }
        guard (1...16).contains(brokers) else { throw ValidationError("--brokers must be 1...16, got \(brokers)") }
        if let bad = topics.first(where: { !isValidTopicName($0) }) {
            throw ValidationError("--topic '\(bad)' is not a valid Kafka topic name (1-249 of [a-zA-Z0-9._-])")
        }
    }

    func run() throws {
        // Block the stop signals before any thread starts, so only sigwait below receives them.
        var stopSignals = sigset_t()
        sigemptyset(&stopSignals)
        sigaddset(&stopSignals, SIGINT)
        sigaddset(&stopSignals, SIGTERM)
        pthread_sigmask(SIG_BLOCK, &stopSignals, nil)

        let cluster = try EmbeddedCluster(brokers: brokers, topics: topics.map { ($0, partitions) })
        writeLine(cluster.bootstrapServers, to: STDOUT_FILENO)
        printError("weir broker: \(brokers) broker(s) on \(cluster.bootstrapServers); topics: "
                   + (topics.isEmpty ? "(none)" : topics.joined(separator: ", ")) + "; Ctrl-C stops")
        var received: Int32 = 0
        sigwait(&stopSignals, &received)
        cluster.stop()
        printError("weir broker: stopped")
    }
}

func isValidTopicName(_ name: String) -> Bool {
    !name.isEmpty && name.utf8.count <= 249 && name != "." && name != ".."
        && name.utf8.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 65 && $0 <= 90) || ($0 >= 97 && $0 <= 122) || $0 == 46 || $0 == 95 || $0 == 45 }
}

/// Writes one line straight to a file descriptor (unbuffered, so a reader sees it at once).
func writeLine(_ line: String, to descriptor: Int32) {
    var bytes = Array((line + "\n").utf8)
    var written = 0
    while written < bytes.count {
        let result = bytes.withUnsafeMutableBytes { write(descriptor, $0.baseAddress! + written, $0.count - written) }
        if result <= 0 { return }
        written += result
    }
}

func printError(_ line: String) {
    writeLine(line, to: STDERR_FILENO)
}
