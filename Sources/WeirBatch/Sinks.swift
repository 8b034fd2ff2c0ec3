import Foundation
import WeirCodec
import WeirKafka
import WeirWorker
#if canImport(Glibc)
import Glibc
#endif

/// Where records go: a file, standard output, or a topic.
public enum RecordDestination: Sendable, Equatable {
    case file(String)
    case standardOutput
    case topic(brokers: String, topic: String, properties: [String: String])

    /// A path, or `-` for standard output.
    public static func path(_ text: String) -> RecordDestination { text == "-" ? .standardOutput : .file(text) }

    var label: String {
        switch self {
        case .file(let path): return path
        case .standardOutput: return "-"
        case .topic(_, let topic, _): return "topic " + topic
        }
    }
}

/// Buffered writing to a file or standard output (a short write is an error naming the option).
final class FileWriter {
    private let file: UnsafeMutablePointer<FILE>
    private let option: String
    private let path: String

    init(_ destination: RecordDestination, option: String) throws(BatchError) {
        self.option = option
        switch destination {
        case .standardOutput:
            guard let opened = fdopen(dup(1), "w") else { throw BatchError("\(option) -: cannot write to standard output") }
            setvbuf(opened, nil, _IOFBF, 1 << 20)
            file = opened
            path = "-"
        case .file(let path):
            guard let opened = fopen(path, "w") else {
                throw BatchError("\(option) \(path): cannot create it (\(String(cString: strerror(errno))))")
            }
            setvbuf(opened, nil, _IOFBF, 1 << 20)
            file = opened
            self.path = path
        case .topic:
            preconditionFailure("a topic is not a file")
        }
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws(BatchError) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        if fwrite(base, 1, bytes.count, file) != bytes.count {
            throw BatchError("\(option) \(path): write failed (\(String(cString: strerror(errno))))")
        }
    }

    func write(_ bytes: [UInt8]) throws(BatchError) {
        let written = bytes.withUnsafeBytes { raw in raw.isEmpty ? 0 : fwrite(raw.baseAddress!, 1, raw.count, file) }
        if written != bytes.count { throw BatchError("\(option) \(path): write failed (\(String(cString: strerror(errno))))") }
    }

    func close() throws(BatchError) {
        if fclose(file) != 0 { throw BatchError("\(option) \(path): cannot finish writing (\(String(cString: strerror(errno))))") }
    }
}

/// A producer for a run's output topics: every record is delivered before the run reports success.
final class TopicWriter {
    private let producer: KafkaProducer
    private let topic: ProducerTopic
    private let failures = Failures()
    private let option: String

    /// Delivery failures, counted from librdkafka's delivery thread.
    final class Failures: @unchecked Sendable {
        private let lock = NSLock()
        private var count = 0
        private var first: String?
        func note(_ what: String) { lock.withLock { count += 1; if first == nil { first = what } } }
        var summary: (Int, String?) { lock.withLock { (count, first) } }
    }

    init(brokers: String, topic name: String, properties: [String: String], option: String) throws(BatchError) {
        self.option = option
        var configuration = ProducerConfiguration(bootstrapServers: brokers)
        configuration.clientID = "weir-score"
        configuration.lingerMs = 20
        configuration.properties = properties
        let failures = self.failures
        do {
            producer = try KafkaProducer(configuration: configuration, onDelivery: { reports in
                for report in reports where report.error != nil { failures.note("\(report.error!)") }
            })
            topic = try producer.topic(name)
        } catch {
            throw BatchError("\(option) \(name): cannot create a producer for \(brokers): \(error)")
        }
    }

    func send(key: UnsafeRawBufferPointer?, value: UnsafeRawBufferPointer, headers: consuming OutgoingHeaders) throws(BatchError) {
        do { try producer.send(to: topic, key: key, value: value, headers: headers) } catch {
            throw BatchError("\(option) \(topic.name): \(error)")
        }
    }

    /// Sends `value[range]` with the input record's headers, then `list`.
    func send(key: UnsafeRawBufferPointer?, value: [UInt8], range: Range<Int>, copying record: RecordSpan, of chunk: InputChunk,
              headers list: [(String, String)]) throws(BatchError) {
        var failure: KafkaError?
        value.withUnsafeBytes { bytes in
            var headers = OutgoingHeaders()
            chunk.appendHeaders(of: record, to: &headers)
            for (name, text) in list { headers.append(name: name, value: text) }
            do throws(KafkaError) {
                try producer.send(to: topic, key: key, value: UnsafeRawBufferPointer(rebasing: bytes[range]), headers: headers)
            } catch { failure = error }
        }
        if let failure { throw BatchError("\(option) \(topic.name): \(failure)") }
    }

    func close() throws(BatchError) {
        do { try producer.flush(timeoutMs: 60_000) } catch {
            throw BatchError("\(option) \(topic.name): not every record was delivered within 60 s: \(error)")
        }
        try? producer.close()
        let (count, first) = failures.summary
        if count > 0 { throw BatchError("\(option) \(topic.name): \(count) records were not delivered (\(first ?? ""))") }
    }
}

/// Writes dead letters: JSON lines (`{"error":..,"message":..,"source":..,"key":..,"value":..}`)
/// to a file, or records like `serve`'s (the value byte for byte, `weir-*` headers) to a topic.
final class DeadLetterWriter {
    private let file: FileWriter?
    private let topic: TopicWriter?
    private let model: [UInt8]
    private let version: [UInt8]
    private let json = JSONWriter()

    init(_ destination: RecordDestination, model: String, version: String) throws(BatchError) {
        self.model = Array(model.utf8)
        self.version = Array(version.utf8)
        switch destination {
        case .topic(let brokers, let name, let properties):
            topic = try TopicWriter(brokers: brokers, topic: name, properties: properties, option: "--dead-letter-topic")
            file = nil
        default:
            file = try FileWriter(destination, option: "--dead-letters")
            topic = nil
        }
    }

    func write(_ note: DeadLetterNote, chunk: InputChunk, input: InputDescription) throws(BatchError) {
        let record = chunk.records[Int(note.record)]
        let value = chunk.value(record)
        if let topic {
            // As serve's dead letters: the input's headers, then Weir's.
            var headers = OutgoingHeaders()
            chunk.appendHeaders(of: record, to: &headers)
            let source: [(name: String, value: String)] = record.partition >= 0
                ? [("weir-source-topic", input.name), ("weir-source-partition", String(record.partition)),
                   ("weir-source-offset", String(record.position))]
                : [("weir-source-file", input.name), ("weir-source-line", String(record.position))]
            let kafka = record.partition >= 0 ? (input.name, record.partition, record.position) : nil
            for header in deadLetterHeaders(code: note.code, reason: note.message, source: source, model: model, version: version, kafka: kafka) {
                if let value = header.value {
                    value.withUnsafeBytes { headers.append(name: header.name, value: $0) }
                } else {
                    headers.append(name: header.name, value: nil)
                }
            }
            try topic.send(key: chunk.key(record), value: value, headers: headers)
            return
        }
        json.reset()
        json.raw("{\"error\":")
        json.string(note.code.rawValue)
        json.raw(",\"message\":")
        json.string(note.message)
        input.writeSource(of: record, into: json)
        json.raw("}")
        if let key = chunk.key(record) { bytesField("key", key) }
        bytesField("value", value)
        json.raw("}\n")
        try file?.write(json.bytes)
    }

    /// A field holding bytes: as a string when they are UTF-8, else base64 under `<name>_base64`.
    private func bytesField(_ name: String, _ bytes: UnsafeRawBufferPointer) {
        if let text = String(validating: bytes, as: UTF8.self) {
            json.raw(Array(",\"\(name)\":".utf8))
            json.string(text)
        } else {
            json.raw(Array(",\"\(name)_base64\":".utf8))
            json.string(Data(bytes).base64EncodedString())
        }
    }

    func close() throws(BatchError) {
        try file?.close()
        try topic?.close()
    }
}
