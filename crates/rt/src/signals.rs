//! Stop signals, received synchronously by the main thread.

/// The set of signals the main thread waits for: SIGTERM and SIGINT ask the process to stop;
/// SIGUSR1 is how a worker that ended on its own wakes the main thread.
pub struct SignalSet(libc::sigset_t);

/// Blocks SIGTERM, SIGINT and SIGUSR1 in the calling thread (and so in every thread it starts
/// afterwards) and returns the set for [`wait`].
pub fn block_stop_signals() -> SignalSet {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before any other use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, exclusively borrowed sigset_t and the signal numbers are valid.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGUSR1);
    }
    // SAFETY: `set` is initialised; a null old-set pointer is allowed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "pthread_sigmask with a valid set cannot fail");
    SignalSet(set)
}

/// Waits for one signal of the set and returns its number.
pub fn wait(set: &SignalSet) -> i32 {
    loop {
        let mut signal: libc::c_int = 0;
        // SAFETY: the set is initialised and blocked in this thread; `signal` is a valid out
        // pointer.
        let rc = unsafe { libc::sigwait(&set.0, &mut signal) };
        if rc == 0 {
            return signal;
        }
        // sigwait only fails with EINVAL for a bad set, which ours is not; retry anyway.
    }
}

/// Wakes the main thread's [`wait`] by sending SIGUSR1 to the whole process; every thread
/// blocks it, so the main thread's sigwait takes it.
pub fn wake_main() {
    // SAFETY: kill with our own pid and a valid signal number has no memory-safety concerns.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGUSR1);
    }
}
