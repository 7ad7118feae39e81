//! Run inside a container under docker/seccomp.json by docker/seccomp-check.sh: makes a few
//! system calls the profile decides on and exits 0 only if each got the profile's answer. Built
//! by `rustc` alone (no crates), statically, so that it runs in the image's empty root.
//!
//! The refused calls are ones the kernel itself allows an unprivileged process (a personality
//! query, ptrace of oneself, a user namespace), so a refusal can only come from the filter.

use std::ffi::c_long;
use std::process::ExitCode;

extern "C" {
    fn syscall(number: c_long, ...) -> c_long;
}

#[cfg(target_arch = "x86_64")]
mod nr {
    pub const IO_URING_SETUP: i64 = 425;
    pub const CLONE3: i64 = 435;
    pub const UNSHARE: i64 = 272;
    pub const PTRACE: i64 = 101;
    pub const PERSONALITY: i64 = 135;
}

#[cfg(target_arch = "aarch64")]
mod nr {
    pub const IO_URING_SETUP: i64 = 425;
    pub const CLONE3: i64 = 435;
    pub const UNSHARE: i64 = 97;
    pub const PTRACE: i64 = 117;
    pub const PERSONALITY: i64 = 92;
}

const EPERM: i32 = 1;
const ENOSYS: i32 = 38;
const CLONE_NEWUSER: i64 = 0x1000_0000;
const PTRACE_TRACEME: i64 = 0;

/// What the filter should answer.
#[derive(PartialEq, Debug)]
enum Answer {
    Allowed,
    Refused(i32),
}

fn call(result: c_long) -> Answer {
    if result >= 0 {
        Answer::Allowed
    } else {
        Answer::Refused(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }
}

fn main() -> ExitCode {
    let mut params = [0u8; 120]; // struct io_uring_params
                                 // SAFETY: each call passes the kernel arguments of the right shape; the ring's descriptor
                                 // and the probe's other resources end with the process.
    let answers = unsafe {
        [
            (
                "io_uring_setup",
                call(syscall(nr::IO_URING_SETUP, 4, params.as_mut_ptr())),
                Answer::Allowed,
            ),
            // The kernel would answer EINVAL or EFAULT; the profile's own rule answers ENOSYS.
            (
                "clone3",
                call(syscall(nr::CLONE3, std::ptr::null::<u8>(), 0usize)),
                Answer::Refused(ENOSYS),
            ),
            (
                "unshare(CLONE_NEWUSER)",
                call(syscall(nr::UNSHARE, CLONE_NEWUSER)),
                Answer::Refused(EPERM),
            ),
            (
                "ptrace(PTRACE_TRACEME)",
                call(syscall(nr::PTRACE, PTRACE_TRACEME, 0, 0, 0)),
                Answer::Refused(EPERM),
            ),
            (
                "personality(query)",
                call(syscall(nr::PERSONALITY, 0xffff_ffffu64)),
                Answer::Refused(EPERM),
            ),
        ]
    };
    // Threads still start: glibc falls back from clone3 to clone, which the profile allows
    // without namespace flags.
    let thread = std::thread::spawn(|| 7)
        .join()
        .map_or(Answer::Refused(0), |_| Answer::Allowed);
    let mut ok = true;
    for (name, got, want) in answers
        .into_iter()
        .chain([("thread", thread, Answer::Allowed)])
    {
        let verdict = if got == want { "as expected" } else { "WRONG" };
        println!("seccomp-probe: {name}: {got:?} ({verdict})");
        ok &= got == want;
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
