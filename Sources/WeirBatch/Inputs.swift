import Foundation
import WeirCodec
import WeirKafka
#if canImport(Glibc)
import Glibc
#endif

/// How an offline input's records are written.
public enum RecordFormat: String, Sendable {
    /// One JSON event per line, as `serve` reads them from Kafka (`input.format json`).
    case jsonl
    /// A header of column names, then one row per line (the training CSV's shape).
    case csv
    /// Kafka record values in `input.format` (JSON, or a Schema Registry format).
    case kafka
}

/// One input of a run, as the lanes and the writer see it.
public struct InputDescription: Sendable {
    /// The file's path, `-` for standard input, or the topic.
    public let name: String
    public let format: RecordFormat
    /// CSV: the header's names.
    public let header: [String]
    /// The record's `"source"` in output: `{"file":..,"line":` or `{"topic":..,"partition":`.
    let sourcePrefix: [UInt8]

    init(name: String, format: RecordFormat, header: [String] = []) {
        self.name = name
        self.format = format
        self.header = header
        let writer = JSONWriter()
        if format == .kafka {
            writer.raw(",\"source\":{\"topic\":")
            writer.string(name)
            writer.raw(",\"partition\":")
        } else {
            writer.raw(",\"source\":{\"file\":")
            writer.string(name)
            writer.raw(",\"line\":")
        }
        sourcePrefix = writer.array
    }
}

extension InputDescription {
    /// Writes `,"source":{...}` for `record` without its closing brace: the file and line, or the
    /// topic, partition and offset (prediction records and dead-letter lines share it).
    func writeSource(of record: RecordSpan, into writer: JSONWriter) {
        writer.raw(sourcePrefix)
        if record.partition >= 0 {
            writer.integer(Int64(record.partition))
            writer.raw(",\"offset\":")
        }
        writer.integer(record.position)
    }
}

/// Where a run reads records from, a chunk at a time, on the writer's thread.
protocol ChunkSource: AnyObject {
    var inputs: [InputDescription] { get }
    /// The next chunk, or nil at the end.
    func next(sequence: Int) throws(BatchError) -> InputChunk?
    /// How much of the input has been read, 0...1, when known (the progress bar's ETA).
    var fractionRead: Double? { get }
    /// Records read but not scored because they lie outside the asked range (Kafka times).
    var skipped: Int { get }
    func close()
}

/// JSONL and CSV files, and standard input: lines in order, `recordsPerChunk` to a chunk.
final class FileSource: ChunkSource {
    private(set) var inputs: [InputDescription] = []
    private let paths: [String]
    private let forcedFormat: RecordFormat?
    private let recordsPerChunk: Int
    private var current = -1
    private var mapped: MappedFile?
    private var cursor = 0
    private var line: Int64 = 0
    private var totalBytes = 0
    private var bytesBefore = 0
    private let standardInput = StandardInputReader()
    let skipped = 0

    init(paths: [String], format: RecordFormat?, recordsPerChunk: Int) throws(BatchError) {
        self.paths = paths
        forcedFormat = format
        self.recordsPerChunk = recordsPerChunk
        for path in paths where path != "-" {
            var status = stat()
            guard stat(path, &status) == 0 else { throw BatchError("--input \(path): no such file") }
            totalBytes += Int(status.st_size)
        }
        // Headers are read up front: the lanes build their CSV decoders from them.
        for path in paths {
            let format = forcedFormat ?? (path.lowercased().hasSuffix(".csv") ? .csv : .jsonl)
            guard format == .csv else {
                inputs.append(InputDescription(name: path, format: format))
                continue
            }
            let header: [String]
            if path == "-" {
                guard let first = standardInput.readLine() else { throw BatchError("--input -: standard input is empty; a CSV needs its header line") }
                header = first.withUnsafeBytes { CSVDecoder.headerNames($0) }
            } else {
                let file = try MappedFile(path: path)
                let bytes = UnsafeRawBufferPointer(start: file.base, count: file.count)
                let end = bytes.firstIndex(of: UInt8(ascii: "\n")) ?? bytes.count
                header = CSVDecoder.headerNames(UnsafeRawBufferPointer(rebasing: bytes[0..<end]))
            }
            guard !header.isEmpty, header != [""] else { throw BatchError("--input \(path): the CSV has no header line") }
            inputs.append(InputDescription(name: path, format: .csv, header: header))
        }
    }

    var fractionRead: Double? {
        guard totalBytes > 0, !paths.contains("-") else { return nil }
        return Double(bytesBefore + cursor) / Double(totalBytes)
    }

    func next(sequence: Int) throws(BatchError) -> InputChunk? {
        while true {
            if current >= 0, current < paths.count {
                if paths[current] == "-" {
                    if let chunk = standardInputChunk(sequence: sequence) { return chunk }
                } else if let chunk = fileChunk(sequence: sequence) {
                    return chunk
                }
                bytesBefore += mapped?.count ?? 0
            }
            current += 1
            guard current < paths.count else { return nil }
            mapped = nil
            cursor = 0
            line = 0
            if paths[current] != "-" {
                mapped = try MappedFile(path: paths[current])
                if inputs[current].format == .csv { skipHeader() }
            }
        }
    }

    private func skipHeader() {
        guard let mapped else { return }
        let bytes = UnsafeRawBufferPointer(start: mapped.base, count: mapped.count)
        cursor = (bytes.firstIndex(of: UInt8(ascii: "\n")).map { $0 + 1 }) ?? bytes.count
        line = 1
    }

    private func fileChunk(sequence: Int) -> InputChunk? {
        guard let mapped, cursor < mapped.count else { return nil }
        var records = [RecordSpan]()
        records.reserveCapacity(recordsPerChunk)
        cursor = splitLines(UnsafeRawBufferPointer(start: mapped.base, count: mapped.count), from: cursor, into: &records)
        guard !records.isEmpty else { return cursor < mapped.count ? fileChunk(sequence: sequence) : nil }
        return InputChunk(sequence: sequence, input: current, base: mapped.base, records: records, owner: mapped)
    }

    private func standardInputChunk(sequence: Int) -> InputChunk? {
        while true {
            guard let block = standardInput.readBlock(minimumBytes: 1 << 20) else { return nil }
            var records = [RecordSpan]()
            let owned = OwnedBytes(block)
            let bytes = UnsafeRawBufferPointer(start: owned.pointer, count: owned.count)
            var position = 0
            while position < bytes.count {
                position = splitLines(bytes, from: position, into: &records)
            }
            if !records.isEmpty {
                return InputChunk(sequence: sequence, input: current, base: UnsafeRawPointer(owned.pointer), records: records, owner: owned)
            }
        }
    }

    /// Adds the lines from `start` (up to `recordsPerChunk`) to `records`, skipping blank ones;
    /// returns where the next line starts.
    private func splitLines(_ bytes: UnsafeRawBufferPointer, from start: Int, into records: inout [RecordSpan]) -> Int {
        var position = start
        let base = bytes.baseAddress!
        while position < bytes.count, records.count < recordsPerChunk {
            let remaining = bytes.count - position
            let newline = memchr(base + position, 0x0A, remaining)
            let end = newline.map { UnsafeRawPointer($0) - base } ?? bytes.count
            line += 1
            var contentEnd = end
            if contentEnd > position, bytes[contentEnd - 1] == 0x0D { contentEnd -= 1 }
            var blank = true
            for index in position..<contentEnd where bytes[index] != 0x20 && bytes[index] != 0x09 {
                blank = false
                break
            }
            if !blank { records.append(RecordSpan(start: position, count: contentEnd - position, position: line, partition: -1)) }
            position = end + 1
        }
        return min(position, bytes.count)
    }

    func close() { mapped = nil }
}

/// Standard input in whole lines: blocks of at least a size, cut after a newline.
final class StandardInputReader {
    private var carry: [UInt8] = []
    private var ended = false

    func readLine() -> [UInt8]? {
        while true {
            if let newline = carry.firstIndex(of: 0x0A) {
                var line = Array(carry[..<newline])
                carry.removeFirst(newline + 1)
                if line.last == 0x0D { line.removeLast() }
                return line
            }
            if ended {
                guard !carry.isEmpty else { return nil }
                defer { carry = [] }
                return carry
            }
            fill(65_536)
        }
    }

    /// At least `minimumBytes` (or the rest), ending after a newline (or at the end of input).
    func readBlock(minimumBytes: Int) -> [UInt8]? {
        while !ended && carry.count < minimumBytes { fill(minimumBytes) }
        guard !carry.isEmpty else { return nil }
        if ended {
            defer { carry = [] }
            return carry
        }
        guard let newline = carry.lastIndex(of: 0x0A) else {
            while !ended && !carry.contains(0x0A) { fill(minimumBytes) }
            return readBlock(minimumBytes: 0)
        }
        let block = Array(carry[...newline])
        carry.removeFirst(newline + 1)
        return block
    }

    private func fill(_ size: Int) {
        var buffer = [UInt8](repeating: 0, count: max(size, 4096))
        let count = buffer.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
        if count <= 0 { ended = true; return }
        carry.append(contentsOf: buffer[0..<count])
    }
}

/// A retained range of a topic: from an offset or time to an offset or time, per partition.
public struct KafkaRange: Sendable {
    public var brokers: String
    public var topic: String
    /// Partitions to read; nil: all of them.
    public var partitions: [Int32]?
    /// Records whose timestamp is at or after this (RFC 3339 on the command line).
    public var fromTimeMs: Int64?
    /// Records whose timestamp is before this.
    public var toTimeMs: Int64?
    /// The first offset read in every partition (default: the earliest retained).
    public var fromOffset: Int64?
    /// The offset where reading stops (excluded; default: the end when the run starts).
    public var toOffset: Int64?
    /// librdkafka properties (security settings and the like).
    public var properties: [String: String] = [:]
    /// How long no record may arrive while the range is unfinished before the run fails.
    public var idleTimeoutMs = 30_000

    public init(brokers: String, topic: String) {
        self.brokers = brokers
        self.topic = topic
    }
}

/// A retained Kafka range, read by an assigned consumer (no group, nothing committed). The end of
/// every partition is fixed when the run starts, so records produced meanwhile are not read.
final class KafkaRangeSource: ChunkSource {
    let inputs: [InputDescription]
    private let range: KafkaRange
    private let consumer: KafkaConsumer
    private let recordsPerChunk: Int
    /// Per partition: the next offset expected, and the end (excluded).
    private var next: [Int32: Int64] = [:]
    private var end: [Int32: Int64] = [:]
    private var first: [Int32: Int64] = [:]
    private var buffered: [RetainedMessage] = []
    /// Partitions the last poll found at their end (applied once its records are taken).
    private var reachedEnds: [TopicPartitionOffset] = []
    private(set) var skipped = 0
    private var lastProgressMs = monotonicMilliseconds()

    init(range: KafkaRange, recordsPerChunk: Int) throws(BatchError) {
        self.range = range
        self.recordsPerChunk = recordsPerChunk
        inputs = [InputDescription(name: range.topic, format: .kafka)]
        var configuration = ConsumerConfiguration(bootstrapServers: range.brokers, groupID: "weir-score-\(getpid())")
        configuration.clientID = "weir-score"
        configuration.properties = range.properties
        configuration.autoOffsetReset = .earliest
        // A range may end in offsets that hold no record (transaction markers, compacted records):
        // the end-of-partition event says the partition has no more to give.
        configuration.partitionEOF = true
        do { consumer = try KafkaConsumer(configuration: configuration) } catch {
            throw BatchError("--brokers: cannot create a consumer: \(error)")
        }
        let partitions: [Int32]
        do {
            let count = try consumer.partitionCount(range.topic)
            partitions = range.partitions ?? (0..<Int32(count)).map { $0 }
            if let bad = partitions.first(where: { $0 < 0 || $0 >= Int32(count) }) {
                throw BatchError("--partitions: \(range.topic) has \(count) partitions; there is no partition \(bad)")
            }
        } catch let error as BatchError {
            throw error
        } catch {
            throw BatchError("--topic \(range.topic): cannot read its metadata from \(range.brokers): \(error)")
        }
        var byTime: [Int32: Int64] = [:]
        if let fromTimeMs = range.fromTimeMs {
            let found = try? consumer.offsets(forTimestampMs: fromTimeMs, of: partitions.map { TopicPartition(range.topic, $0) })
            for entry in found ?? [] where entry.offset >= 0 { byTime[entry.partition] = entry.offset }
        }
        var assignment: [TopicPartitionOffset] = []
        for partition in partitions {
            let marks: (low: Int64, high: Int64)
            do { marks = try consumer.watermarks(range.topic, partition) } catch {
                throw BatchError("--topic \(range.topic): cannot read partition \(partition)'s offsets: \(error)")
            }
            // A broker that cannot look offsets up by time gives none: read from the start and
            // leave out the earlier records by their timestamps.
            let start = max(range.fromOffset ?? byTime[partition] ?? marks.low, marks.low)
            let stop = min(range.toOffset ?? marks.high, marks.high)
            guard start < stop else { continue }
            next[partition] = start
            first[partition] = start
            end[partition] = stop
            assignment.append(TopicPartitionOffset(range.topic, partition, start))
        }
        if !assignment.isEmpty {
            do { try consumer.assign(assignment) } catch { throw BatchError("--topic \(range.topic): cannot assign its partitions: \(error)") }
        }
    }

    var fractionRead: Double? {
        let total = end.reduce(0) { $0 + Double($1.value - first[$1.key]!) }
        guard total > 0 else { return 1 }
        let read = next.reduce(0) { $0 + Double($1.value - first[$1.key]!) }
        return read / total
    }

    private var unfinished: Bool { next.contains { $0.value < end[$0.key]! } }

    func next(sequence: Int) throws(BatchError) -> InputChunk? {
        var bytes = [UInt8]()
        var records = [RecordSpan]()
        var headers = [HeaderSpan]()
        records.reserveCapacity(recordsPerChunk)
        while records.count < recordsPerChunk, unfinished {
            if buffered.isEmpty {
                // Ends seen by the last poll, now that every record it handed over is taken.
                for atEnd in reachedEnds where atEnd.topic == range.topic {
                    if let stop = end[atEnd.partition], let at = next[atEnd.partition], atEnd.offset >= at {
                        next[atEnd.partition] = max(at, stop)
                        lastProgressMs = monotonicMilliseconds()
                    }
                }
                reachedEnds.removeAll()
                guard unfinished else { break }
                consumer.poll(maxMessages: recordsPerChunk, timeoutMs: 200, retainingInto: &buffered)
                reachedEnds = consumer.takeReachedEnd()
                if buffered.isEmpty {
                    if monotonicMilliseconds() - lastProgressMs > Int64(range.idleTimeoutMs) {
                        let stuck = next.filter { $0.value < end[$0.key]! }.sorted { $0.key < $1.key }.first!
                        throw BatchError("\(range.topic) partition \(stuck.key) offset \(stuck.value): no record arrived for \(range.idleTimeoutMs / 1000) s; the range ends at offset \(end[stuck.key]!)")
                    }
                    if !records.isEmpty { break }
                    continue
                }
                lastProgressMs = monotonicMilliseconds()
            }
            var taken = 0
            for retained in buffered {
                taken += 1
                defer { retained.release() }
                let message = retained.message
                let partition = message.partition
                guard let stop = end[partition], message.offset >= next[partition] ?? .max else { continue }
                guard message.offset < stop else {
                    next[partition] = stop  // past the range (it ended in offsets with no record)
                    continue
                }
                next[partition] = message.offset + 1
                let timestamp = message.timestamp?.milliseconds ?? 0
                if let from = range.fromTimeMs, timestamp < from { skipped += 1; continue }
                if let to = range.toTimeMs, timestamp >= to { skipped += 1; continue }
                var span = RecordSpan(start: bytes.count, count: 0, position: message.offset, partition: partition)
                if let value = message.value {
                    bytes.append(contentsOf: value)
                    span.count = value.count
                } else {
                    span.count = -1  // a tombstone: skipped and counted, as serve does
                }
                if let key = message.key {
                    span.keyStart = bytes.count
                    span.keyCount = key.count
                    bytes.append(contentsOf: key)
                }
                let inputHeaders = message.headers
                if !inputHeaders.isEmpty {
                    span.firstHeader = Int32(headers.count)
                    span.headerCount = Int32(inputHeaders.count)
                    for header in inputHeaders {
                        let nameCount = strlen(header.namePointer)
                        var entry = HeaderSpan(nameStart: bytes.count, nameCount: nameCount, valueStart: 0, valueCount: -1)
                        header.namePointer.withMemoryRebound(to: UInt8.self, capacity: nameCount) {
                            bytes.append(contentsOf: UnsafeBufferPointer(start: $0, count: nameCount))
                        }
                        if let value = header.value {
                            entry.valueStart = bytes.count
                            entry.valueCount = value.count
                            bytes.append(contentsOf: value)
                        }
                        headers.append(entry)
                    }
                }
                records.append(span)
                if records.count >= recordsPerChunk { break }
            }
            buffered.removeFirst(taken)
        }
        guard !records.isEmpty else { return nil }
        let owned = OwnedBytes(bytes)
        let chunk = InputChunk(sequence: sequence, input: 0, base: UnsafeRawPointer(owned.pointer), records: records, owner: owned)
        chunk.headers = headers
        return chunk
    }

    func close() {
        for retained in buffered { retained.release() }
        buffered.removeAll()
        try? consumer.close()
    }
}
