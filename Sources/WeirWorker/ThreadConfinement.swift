#if canImport(Glibc)
import Glibc
#endif

/// The poll thread, for debug-build checks that the parts confined to it (the ledger, the batch,
/// the delivery inbox, the committer) are only used there: a callback moved to another thread
/// (say, delivery reports served on a producer thread) fails at once instead of racing. The
/// types themselves are not `Sendable`, so the compiler stops them crossing threads in Swift code;
/// this catches what comes back through C callbacks. Release builds check nothing.
final class PollThread {
    #if DEBUG
    private let owner = pthread_self()
    #endif

    /// Claims the calling thread as the poll thread.
    init() {}

    /// Traps in debug builds when called off the poll thread.
    @inline(__always)
    func check(_ what: StaticString) {
        #if DEBUG
        precondition(pthread_equal(pthread_self(), owner) != 0, "\(what) runs off the poll thread")
        #endif
    }
}
