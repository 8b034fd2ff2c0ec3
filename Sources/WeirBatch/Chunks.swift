import WeirKafka
#if canImport(Glibc)
import Glibc
#endif

/// One record of an offline input: where its bytes lie in its chunk, and where it came from.
struct RecordSpan {
    /// The value's bytes, `start..<start + count` of the chunk.
    var start: Int
    var count: Int
    /// A line number (files, from 1) or an offset (Kafka).
    var position: Int64
    /// The Kafka partition, or -1 for a file.
    var partition: Int32
    /// The key's bytes in the chunk (Kafka), `keyCount` -1 when there is none.
    var keyStart: Int = 0
    var keyCount: Int = -1
    /// Its headers (Kafka): `headerCount` entries of the chunk's `headers` from `firstHeader`.
    var firstHeader: Int32 = 0
    var headerCount: Int32 = 0
}

/// One header of a Kafka record, its name and value in the chunk's bytes (`valueCount` -1: null).
struct HeaderSpan {
    var nameStart: Int
    var nameCount: Int
    var valueStart: Int
    var valueCount: Int
}

/// Consecutive records of one input (a file, stdin, or one topic), scored as a unit by one lane.
/// Its bytes are a window of a mapped file or storage it owns; both stay valid while it lives.
/// Unchecked: built by the reading thread, then only read, by one lane and then the writer.
final class InputChunk: @unchecked Sendable {
    let sequence: Int
    /// Index of its input in the run's list (a file, stdin, or a topic).
    let input: Int
    let base: UnsafeRawPointer
    var records: [RecordSpan]
    /// The records' headers (Kafka inputs), which predictions and dead letters on topics carry on.
    var headers: [HeaderSpan] = []
    /// Keeps `base` valid: a mapped file, or owned storage.
    private let owner: AnyObject?

    init(sequence: Int, input: Int, base: UnsafeRawPointer, records: [RecordSpan], owner: AnyObject?) {
        self.sequence = sequence
        self.input = input
        self.base = base
        self.records = records
        self.owner = owner
    }

    func value(_ record: RecordSpan) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base + record.start, count: record.count)
    }

    func key(_ record: RecordSpan) -> UnsafeRawBufferPointer? {
        record.keyCount < 0 ? nil : UnsafeRawBufferPointer(start: base + record.keyStart, count: record.keyCount)
    }

    /// Adds `record`'s input headers to `headers`, in their order.
    func appendHeaders(of record: RecordSpan, to headers: inout OutgoingHeaders) {
        guard record.headerCount > 0 else { return }
        for index in Int(record.firstHeader)..<Int(record.firstHeader + record.headerCount) {
            let span = self.headers[index]
            let name = String(decoding: UnsafeRawBufferPointer(start: base + span.nameStart, count: span.nameCount), as: UTF8.self)
            headers.append(name: name, value: span.valueCount < 0 ? nil : UnsafeRawBufferPointer(start: base + span.valueStart, count: span.valueCount))
        }
    }
}

/// Bytes a chunk owns (standard input, copied Kafka values).
final class OwnedBytes {
    let pointer: UnsafeMutableRawPointer
    let count: Int
    init(_ bytes: [UInt8]) {
        count = bytes.count
        pointer = .allocate(byteCount: max(bytes.count, 1), alignment: 16)
        bytes.withUnsafeBytes { if let source = $0.baseAddress { pointer.copyMemory(from: source, byteCount: bytes.count) } }
    }
    deinit { pointer.deallocate() }
}

/// A read-only mapping of a whole file: lines are scored where they lie, without a copy.
final class MappedFile {
    let base: UnsafeRawPointer
    let count: Int
    private let mapping: UnsafeMutableRawPointer?

    init(path: String) throws(BatchError) {
        let descriptor = open(path, O_RDONLY)
        guard descriptor >= 0 else { throw BatchError("--input \(path): cannot open it (\(String(cString: strerror(errno))))") }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else { throw BatchError("--input \(path): cannot read its size") }
        guard (status.st_mode & S_IFMT) == S_IFREG else { throw BatchError("--input \(path): not a regular file (use - for standard input)") }
        count = Int(status.st_size)
        if count == 0 {
            mapping = nil
            base = UnsafeRawPointer(bitPattern: 1)!
            return
        }
        let mapped = mmap(nil, count, PROT_READ, MAP_PRIVATE, descriptor, 0)
        guard let mapped, mapped != MAP_FAILED else { throw BatchError("--input \(path): cannot map it (\(String(cString: strerror(errno))))") }
        madvise(mapped, count, MADV_SEQUENTIAL)
        mapping = mapped
        base = UnsafeRawPointer(mapped)
    }

    deinit { if let mapping { munmap(mapping, count) } }
}

/// A problem with the command's inputs, options or outputs: one line naming the option.
public struct BatchError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The queue between the reading thread, the lanes that score chunks, and the writer that takes
/// results in input order. At most `limit` chunks are read ahead of the writer, so memory stays
/// bounded whatever the input's size. Unchecked: every field is touched with `mutex` held.
final class ChunkQueue<Result>: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    private var changed = pthread_cond_t()
    private var waiting: [InputChunk] = []
    private var waitingNext = 0
    private var results: [Int: Result] = [:]
    private var inputEnded = false
    private let limit: Int

    init(limit: Int) {
        self.limit = limit
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&changed, nil)
    }

    deinit {
        pthread_cond_destroy(&changed)
        pthread_mutex_destroy(&mutex)
    }

    private func locked<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return body()
    }

    /// Chunks read and not yet taken by the writer.
    private var inFlight: Int { waiting.count - waitingNext + results.count + busy }
    private var busy = 0

    /// Whether another chunk may be read now.
    var hasRoom: Bool { locked { inFlight < limit } }

    func submit(_ chunk: InputChunk) {
        locked {
            waiting.append(chunk)
            pthread_cond_broadcast(&changed)
        }
    }

    /// No more chunks will be submitted: lanes return nil once the queue is empty.
    func endInput() {
        locked {
            inputEnded = true
            pthread_cond_broadcast(&changed)
        }
    }

    /// A lane's next chunk, waiting for one; nil when the input has ended and all are taken.
    func take() -> InputChunk? {
        locked {
            while waitingNext == waiting.count && !inputEnded { pthread_cond_wait(&changed, &mutex) }
            guard waitingNext < waiting.count else { return nil }
            let chunk = waiting[waitingNext]
            waitingNext += 1
            busy += 1
            if waitingNext > 256 {
                waiting.removeFirst(waitingNext)
                waitingNext = 0
            }
            return chunk
        }
    }

    func complete(_ sequence: Int, _ result: Result) {
        locked {
            results[sequence] = result
            busy -= 1
            pthread_cond_broadcast(&changed)
        }
    }

    /// The result of chunk `sequence`, waiting up to `timeoutMs` for it (nil if not ready by then:
    /// the writer then reads more input or redraws its progress).
    func result(_ sequence: Int, timeoutMs: Int) -> Result? {
        locked {
            if let ready = results.removeValue(forKey: sequence) {
                pthread_cond_broadcast(&changed)
                return ready
            }
            var deadline = timespec()
            clock_gettime(CLOCK_REALTIME, &deadline)
            let nanoseconds = Int(deadline.tv_nsec) + (timeoutMs % 1000) * 1_000_000
            deadline.tv_sec += timeoutMs / 1000 + nanoseconds / 1_000_000_000
            deadline.tv_nsec = nanoseconds % 1_000_000_000
            while results[sequence] == nil {
                if pthread_cond_timedwait(&changed, &mutex, &deadline) != 0 { break }
            }
            return results.removeValue(forKey: sequence)
        }
    }
}
