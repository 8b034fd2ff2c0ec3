import Foundation
import WeirKafka
#if canImport(Glibc)
import Glibc
#endif

/// The Swift twin of bench/c-passthrough/main.c, over WeirKafka: one thread, woken by librdkafka's
/// queue events for both consumed messages and delivery reports; offsets committed only after
/// delivery (async every 100 ms, sync at the end). Prints the same JSON line as the C floor.
func runSwiftPassthrough(bootstrap: String, input: String, output: String, group: String, events: Int) throws -> Int32 {
    var consumerConfiguration = ConsumerConfiguration(bootstrapServers: bootstrap, groupID: group)
    consumerConfiguration.clientID = "swift-passthrough"
    let consumer = try KafkaConsumer(configuration: consumerConfiguration)

    var nextOffset = [Int64](repeating: -1, count: 1024)
    var dirty = [Bool](repeating: false, count: 1024)
    var delivered = 0
    var failed = 0
    var producerConfiguration = ProducerConfiguration(bootstrapServers: bootstrap)
    producerConfiguration.lingerMs = 5
    let producer = try KafkaProducer(
        configuration: producerConfiguration, serving: .callerThread(wake: consumer.signal),
        onDelivery: { reports in
            for report in reports {
                if report.error != nil { failed += 1; continue }
                // The output partition equals the input partition; the context is the input offset.
                nextOffset[Int(report.partition)] = Int64(report.context) + 1
                dirty[Int(report.partition)] = true
                delivered += 1
            }
        })
    let out = try producer.topic(output)
    try consumer.subscribe([input])

    func commitDelivered(async: Bool) throws {
        var offsets = [TopicPartitionOffset]()
        for partition in dirty.indices where dirty[partition] {
            offsets.append(TopicPartitionOffset(input, Int32(partition), nextOffset[partition]))
            dirty[partition] = false
        }
        try consumer.commit(offsets, async: async)
    }

    var consumed = 0
    var startWall = 0.0, startCPU = 0.0, lastCommit = 0.0, startSwitches = 0
    var produceError: KafkaError?
    while delivered + failed < events {
        consumer.poll(maxMessages: 1000, timeoutMs: 100) { messages in
            for message in messages {
                if consumed == 0 {
                    startWall = wallSeconds(); startCPU = cpuSeconds(); startSwitches = contextSwitches(); lastCommit = startWall
                }
                consumed += 1
                do throws(KafkaError) {
                    try producer.send(to: out, partition: message.partition, key: message.key, value: message.value,
                                      headers: OutgoingHeaders(copying: message), context: UInt(message.offset))
                } catch { produceError = error }
            }
        }
        if let produceError { throw produceError }
        producer.serveDeliveryReports()
        let now = wallSeconds()
        if consumed > 0 && now - lastCommit >= 0.1 {
            try commitDelivered(async: true)
            lastCommit = now
        }
    }
    try producer.flush(timeoutMs: 10_000)
    try commitDelivered(async: false)
    let wall = wallSeconds() - startWall, cpu = cpuSeconds() - startCPU
    print("{\"contender\":\"swift\",\"events\":\(delivered),\"failed\":\(failed),\"wall_s\":\(wall),\"cpu_s\":\(cpu),\"context_switches\":\(contextSwitches() - startSwitches)}")
    try consumer.close()
    return failed == 0 ? 0 : 1
}

func wallSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}

func contextSwitches() -> Int {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return usage.ru_nvcsw + usage.ru_nivcsw
}

func cpuSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
        + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
}

/// CPU seconds so far of this process's librdkafka threads (named `rdk:*`), from each thread's
/// schedstat (nanoseconds on a CPU): a contender's split between its own threads and librdkafka's.
func kafkaThreadCPUSeconds() -> Double {
    guard let tasks = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task") else { return 0 }
    var total = 0.0
    for task in tasks {
        guard let name = try? String(contentsOfFile: "/proc/self/task/\(task)/comm", encoding: .utf8), name.hasPrefix("rdk:"),
              let stat = try? String(contentsOfFile: "/proc/self/task/\(task)/schedstat", encoding: .utf8),
              let nanoseconds = stat.split(separator: " ").first.flatMap({ Double($0) }) else { continue }
        total += nanoseconds / 1e9
    }
    return total
}
