import WeirKafka

/// What the producer reported, recorded inside librdkafka's delivery callback and applied by the
/// poll loop at its fixed point (`PollLoop.applyDeliveries`). The callback runs inside
/// `serveDeliveryReports`, and also inside `send` and `flush` when the local queue is full: it
/// must not touch the ledger or the batch, which may be half way through a change then.
final class DeliveryInbox {
    /// Contexts of answers delivered, in report order.
    @exclusivity(unchecked) private(set) var delivered: [UInt] = []
    /// The wall clock (microseconds) at which each run of `delivered` was reported: run `i` ends
    /// before index `runEnds[i]`.
    @exclusivity(unchecked) private(set) var runEnds: [Int] = []
    @exclusivity(unchecked) private(set) var runTimes: [Int64] = []
    /// Answers whose delivery failed, copied (the report's message is freed after the callback).
    private(set) var failed: [FailedDelivery] = []
    /// Best-effort records (shadow, drift, status: context 0) that were not delivered.
    private(set) var bestEffortFailures: [(topic: String, error: KafkaErrorCode)] = []

    private let pollThread: PollThread

    init(pollThread: PollThread) {
        self.pollThread = pollThread
        delivered.reserveCapacity(4096)
    }

    /// Whether anything waits to be applied.
    var isEmpty: Bool { delivered.isEmpty && failed.isEmpty && bestEffortFailures.isEmpty }

    /// Records one batch of reports (the producer's `onDelivery`).
    func record(_ reports: DeliveryReportBatch) {
        pollThread.check("a delivery report")
        let before = delivered.count
        for report in reports {
            if let error = report.error {
                if report.context == 0 {
                    bestEffortFailures.append((report.topic, error))
                } else {
                    failed.append(FailedDelivery(report, error: error))
                }
            } else if report.context != 0 {
                delivered.append(report.context)
            }
        }
        if delivered.count > before {
            runEnds.append(delivered.count)
            runTimes.append(wallClockMicroseconds())
        }
    }

    /// Hands the recorded reports to `body` and forgets them.
    func drain(_ body: (_ delivered: UnsafeBufferPointer<UInt>, _ runEnds: [Int], _ runTimes: [Int64],
                        _ failed: [FailedDelivery], _ bestEffort: [(topic: String, error: KafkaErrorCode)]) -> Void) {
        delivered.withUnsafeBufferPointer { body($0, runEnds, runTimes, failed, bestEffortFailures) }
        delivered.removeAll(keepingCapacity: true)
        runEnds.removeAll(keepingCapacity: true)
        runTimes.removeAll(keepingCapacity: true)
        if !failed.isEmpty { failed.removeAll() }
        if !bestEffortFailures.isEmpty { bestEffortFailures.removeAll() }
    }
}

/// An answer (prediction or dead letter) whose delivery failed, copied so it can be sent again
/// (or made smaller, or turned into a dead letter: `Outputs`).
struct FailedDelivery {
    let topic: String
    let partition: Int32
    var error: KafkaErrorCode
    let context: UInt
    var key: [UInt8]?
    var value: [UInt8]?
    var headers: [(name: String, value: [UInt8]?)]
}

extension FailedDelivery {
    init(_ report: DeliveryReport, error: KafkaErrorCode) {
        let message = report.message
        self.init(topic: report.topic, partition: report.partition, error: error, context: report.context,
                  key: message.key.map { Array($0) }, value: message.value.map { Array($0) },
                  headers: message.headers.map { ($0.name, $0.value.map { Array($0) }) })
    }
}
