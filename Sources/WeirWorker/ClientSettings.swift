import WeirKafka

/// The worker's consumer and producer configurations, from its settings.
struct ClientSettings {
    var consumer: ConsumerConfiguration
    var producer: ProducerConfiguration

    init(_ settings: WorkerSettings) {
        var consumer = ConsumerConfiguration(bootstrapServers: settings.brokers!, groupID: settings.group)
        consumer.clientID = settings.workerID
        consumer.properties = settings.kafkaProperties(for: "consumer")
        // Unreadable records come to the worker, which answers and seeks past them (Batcher.take).
        consumer.deliversRecordErrors = true
        if consumer.properties["session.timeout.ms"] == nil { consumer.sessionTimeoutMs = 10_000 }
        // librdkafka backs off reconnects up to 10 s: after a broker restart the worker would idle
        // that long. A worker has two connections per broker; retrying each second costs nothing.
        if consumer.properties["reconnect.backoff.max.ms"] == nil { consumer.properties["reconnect.backoff.max.ms"] = "1000" }
        var producer = ProducerConfiguration(bootstrapServers: settings.brokers!)
        producer.clientID = settings.workerID
        // The worker hands the producer a whole batch at once (it already waited up to
        // batch.max-delay-ms), so a long linger would only add its own wait to every answer:
        // 1 ms instead of librdkafka's 5 cut the p50 event-to-delivery latency from 19.5 to 16 ms
        // at 10,000 events/s (`weir-bench latency`). `kafka.producer.linger.ms` overrides it.
        producer.lingerMs = 1
        producer.properties = settings.kafkaProperties(for: "producer")
        if producer.properties["reconnect.backoff.max.ms"] == nil { producer.properties["reconnect.backoff.max.ms"] = "1000" }
        if settings.guarantee == .exactlyOnce {
            producer.transactionalID = settings.transactionalID
            if consumer.properties["isolation.level"] == nil { consumer.properties["isolation.level"] = "read_committed" }
        }
        self.consumer = consumer
        self.producer = producer
    }
}

extension WorkerSettings {
    /// `kafka.<property>` applies to both clients; `kafka.consumer.<property>` and
    /// `kafka.producer.<property>` to one (so consumer-only settings do not warn on the producer).
    func kafkaProperties(for client: String) -> [String: String] {
        var properties = [String: String]()
        for (key, value) in kafka where !key.hasPrefix("consumer.") && !key.hasPrefix("producer.") {
            properties[key] = value
        }
        for (key, value) in kafka where key.hasPrefix(client + ".") {
            properties[String(key.dropFirst(client.count + 1))] = value
        }
        return properties
    }
}
