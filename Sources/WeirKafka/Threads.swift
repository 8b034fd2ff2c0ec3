#if canImport(Glibc)
import Glibc
#endif

/// A plain OS thread for loops that must never be a Swift `Task` (poll loops, delivery serving).
/// Unchecked: `thread` is written once by `init`; `join` is called by the thread's one owner.
final class OSThread: @unchecked Sendable {
    private var thread = pthread_t()
    private let body: @Sendable () -> Void
    private var joined = false
    /// Raised when `body` returns, so a join can be bounded.
    private let finished = EventSignal()

    init(body: @escaping @Sendable () -> Void) {
        self.body = body
        let box = Unmanaged.passRetained(self).toOpaque()
        let result = pthread_create(&thread, nil, { raw in
            let me = Unmanaged<OSThread>.fromOpaque(raw!).takeRetainedValue()
            me.body()
            me.finished.raise()
            return nil
        }, box)
        precondition(result == 0, "pthread_create failed: \(result)")
    }

    /// Whether the calling thread is this one.
    var isCurrent: Bool { pthread_equal(pthread_self(), thread) != 0 }

    func join() {
        guard !joined, !isCurrent else { return }
        joined = true
        pthread_join(thread, nil)
    }

    /// Joins if the body ends within `timeoutMs`; otherwise returns `false` and leaves the thread
    /// running (detached), so a caller that must not hang can report it instead.
    func join(timeoutMs: Int) -> Bool {
        guard !joined, !isCurrent else { return true }
        let deadline = monotonicMilliseconds() + Int64(timeoutMs)
        while !finished.wait(timeoutMs: Int(max(deadline - monotonicMilliseconds(), 0))) {
            if monotonicMilliseconds() >= deadline {
                joined = true
                pthread_detach(thread)
                return false
            }
        }
        join()
        return true
    }
}

/// A small mutex-protected value. Unchecked: `value` is touched only while `mutex` is held. The
/// mutex lives on the heap: pthreads needs a stable address, which a stored property is not promised.
final class Locked<Value>: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private var value: Value

    init(_ value: Value) {
        self.value = value
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
