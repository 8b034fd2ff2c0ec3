import Testing
@testable import WeirKafka

@Suite("Configuration errors name the property", .timeLimit(.minutes(1)))
struct ConfigurationTests {
    @Test("An unknown property name is refused with librdkafka's reason")
    func unknownProperty() {
        var configuration = ConsumerConfiguration(bootstrapServers: "127.0.0.1:1", groupID: "g")
        configuration.properties["fetch.wait.max.milliseconds"] = "10"
        #expect {
            _ = try KafkaConsumer(configuration: configuration)
        } throws: { error in
            guard let error = error as? KafkaConfigurationError else { return false }
            return error.property == "fetch.wait.max.milliseconds"
                && error.reason.contains("No such configuration property")
                && error.description.hasPrefix("kafka property 'fetch.wait.max.milliseconds' = '10': ")
        }
    }

    @Test("A bad value is refused naming the property and the value")
    func badValue() {
        var configuration = ProducerConfiguration(bootstrapServers: "127.0.0.1:1")
        configuration.properties["linger.ms"] = "soon"
        #expect {
            _ = try KafkaProducer(configuration: configuration, onDelivery: { _ in })
        } throws: { error in
            guard let error = error as? KafkaConfigurationError else { return false }
            return error.property == "linger.ms" && error.value == "soon" && error.reason.contains("Invalid value")
                && error.description.hasPrefix("kafka property 'linger.ms' = 'soon': ")
        }
    }

    @Test("A value out of range is refused")
    func outOfRange() {
        var configuration = ConsumerConfiguration(bootstrapServers: "127.0.0.1:1", groupID: "g")
        configuration.sessionTimeoutMs = 0
        #expect(throws: KafkaConfigurationError.self) { _ = try KafkaConsumer(configuration: configuration) }
    }

    @Test("Conflicting properties are refused when the client is created")
    func conflicting() {
        var configuration = ProducerConfiguration(bootstrapServers: "127.0.0.1:1")
        configuration.properties["acks"] = "0"  // idempotence requires acks=all
        #expect {
            _ = try KafkaProducer(configuration: configuration, onDelivery: { _ in })
        } throws: { error in
            guard let error = error as? KafkaConfigurationError else { return false }
            return error.reason.contains("acks")
        }
    }

    @Test("Secret-bearing property names are recognised for redaction")
    func secretNames() {
        #expect(isSecretProperty("sasl.password"))
        #expect(isSecretProperty("ssl.key.password"))
        #expect(isSecretProperty("sasl.oauthbearer.client.secret"))
        #expect(!isSecretProperty("ssl.key.location"))
        #expect(!isSecretProperty("bootstrap.servers"))
    }
}
