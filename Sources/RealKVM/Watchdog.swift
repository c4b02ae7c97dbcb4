#if canImport(Glibc)
import Glibc
#endif

/// A POSIX timer that, when it expires, sends a signal to one thread, so
/// that a KVM_RUN which does not return on its own (a guest spinning without
/// exits) returns EINTR. One per machine; it is re-created when the machine
/// is driven from another thread, and armed and disarmed around each
/// operation (two `timer_settime` calls).
///
/// The signal is the real-time signal `SIGRTMIN + 3`; this module installs a
/// handler that does nothing for it (without SA_RESTART), once per process,
/// and unblocks it in each thread that drives a machine.
final class Watchdog {
    private var timer: timer_t?
    private var owner: pthread_t?
    private var armed = false

    static let signal: Int32 = {
        let sig = __libc_current_sigrtmin() + 3
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in }
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0
        sigaction(sig, &action, nil)
        return sig
    }()

    deinit { if let timer { timer_delete(timer) } }

    /// The kernel's id of the calling thread, from the `/proc/thread-self` link
    /// ("PID/task/TID"); Glibc's gettid is not visible to Swift.
    static func currentThreadID() -> pid_t? {
        var buffer = [CChar](repeating: 0, count: 64)
        let n = readlink("/proc/thread-self", &buffer, 63)
        guard n > 0 else { return nil }
        let text = String(decoding: buffer.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard let last = text.split(separator: "/").last, let tid = Int32(last) else { return nil }
        return tid
    }

    /// Arms the timer to signal the calling thread after `seconds`. If no
    /// timer can be made, operations simply run without a time bound.
    func arm(seconds: Double) {
        let me = pthread_self()
        if timer == nil || owner.map({ pthread_equal($0, me) == 0 }) ?? true {
            if let timer { timer_delete(timer) }
            timer = nil
            owner = me
            var event = sigevent()
            event.sigev_notify = 4  // SIGEV_THREAD_ID
            event.sigev_signo = Self.signal
            guard let tid = Self.currentThreadID() else { return }
            event._sigev_un._tid = tid
            // Worker threads (libdispatch, Swift concurrency) block most
            // signals; this thread must take ours.
            var set = sigset_t()
            sigemptyset(&set)
            sigaddset(&set, Self.signal)
            pthread_sigmask(SIG_UNBLOCK, &set, nil)
            var t: timer_t? = nil
            guard timer_create(CLOCK_MONOTONIC, &event, &t) == 0 else { return }
            timer = t
        }
        let whole = max(0, seconds.rounded(.down))
        var spec = itimerspec()
        spec.it_value.tv_sec = Int(whole)
        spec.it_value.tv_nsec = Int((seconds - whole) * 1e9)
        if spec.it_value.tv_sec == 0 && spec.it_value.tv_nsec == 0 { spec.it_value.tv_nsec = 1 }
        armed = timer_settime(timer, 0, &spec, nil) == 0
    }

    /// Whether the armed timer has fired.
    var expired: Bool {
        guard armed, let timer else { return false }
        var spec = itimerspec()
        guard timer_gettime(timer, &spec) == 0 else { return false }
        return spec.it_value.tv_sec == 0 && spec.it_value.tv_nsec == 0
    }

    var isArmed: Bool { armed }

    func disarm() {
        guard armed, let timer else { return }
        var spec = itimerspec()
        timer_settime(timer, 0, &spec, nil)
        armed = false
    }
}
