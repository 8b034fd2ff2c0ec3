import CRdKafka
#if canImport(Glibc)
import Glibc
#endif

/// A level-triggered wake-up: librdkafka's queue callbacks (or any thread) raise it, one thread waits on it.
/// It lets a poll thread sleep until there is work, instead of sleeping for a guessed interval.
/// Unchecked: `pending` and `waiting` are touched only while `mutex` is held. The mutex and the
/// condition live on the heap: pthreads needs stable addresses, which stored properties are not promised.
public final class EventSignal: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var pending = false
    private var waiting = false

    public init() {
        mutex.initialize(to: pthread_mutex_t())
        condition.initialize(to: pthread_cond_t())
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    /// Marks work pending and wakes the waiter. Safe from any thread, including librdkafka's.
    public func raise() {
        pthread_mutex_lock(mutex)
        pending = true
        // Only a sleeping waiter needs the (syscall-costly) wake; a busy one sees `pending`.
        if waiting { pthread_cond_signal(condition) }
        pthread_mutex_unlock(mutex)
    }

    /// Waits until raised or `timeoutMs` passes; returns whether it was raised. Clears the flag.
    @discardableResult
    public func wait(timeoutMs: Int) -> Bool {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        if !pending && timeoutMs > 0 {
            var deadline = timespec()
            clock_gettime(CLOCK_MONOTONIC, &deadline)
            let nanos = Int(deadline.tv_nsec) + (timeoutMs % 1000) * 1_000_000
            deadline.tv_sec += timeoutMs / 1000 + nanos / 1_000_000_000
            deadline.tv_nsec = nanos % 1_000_000_000
            waiting = true
            while !pending {
                if pthread_cond_timedwait(condition, mutex, &deadline) == ETIMEDOUT { break }
            }
            waiting = false
        }
        let wasRaised = pending
        pending = false
        return wasRaised
    }

    /// The C callback librdkafka calls when a queue goes from empty to non-empty.
    static let queueCallback: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?) -> Void = { _, opaque in
        guard let opaque else { return }
        Unmanaged<EventSignal>.fromOpaque(opaque).takeUnretainedValue().raise()
    }

    /// Makes `queue` raise this signal whenever it gains an event. The caller keeps `self` alive
    /// until `detach(from:)`.
    func attach(to queue: OpaquePointer) {
        rd_kafka_queue_cb_event_enable(queue, EventSignal.queueCallback, Unmanaged.passUnretained(self).toOpaque())
    }

    func detach(from queue: OpaquePointer) {
        rd_kafka_queue_cb_event_enable(queue, nil, nil)
    }
}

/// Monotonic milliseconds, for bounding waits (also the offline range reader's idle bound).
@inline(__always)
public func monotonicMilliseconds() -> Int64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
}
