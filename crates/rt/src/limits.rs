//! Process resource limits.

/// Raises the soft open-files limit to the hard limit, so a server is bounded by the operator's
/// hard limit rather than the distribution's small default soft limit. Returns the soft limit
/// now in force (or `None` when it cannot be read).
pub fn raise_nofile_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        // Refusal (a seccomp profile, an odd container runtime) leaves the old limit in force.
        let _ = setrlimit(Resource::Nofile, limit);
    }
    getrlimit(Resource::Nofile).current
}

/// Descriptor-table slots a server reserves at start ([`reserve_descriptor_table`]): room for
/// about 2,700 relayed connections of the balancer (two sockets and two pipes each) before the
/// table grows again. 16,384 slots cost 128 KiB.
pub const DESCRIPTOR_TABLE_RESERVED: u64 = 16_384;

/// Grows the process's descriptor table to `slots` (capped by the soft open-files limit) while
/// the process is still single-threaded. Call it before any thread starts.
///
/// The kernel grows the table by doubling when a descriptor beyond its end is opened, and in a
/// multi-threaded process every growth waits for an RCU grace period inside the system call
/// that opened the descriptor. In the balancer that stalled the worker thread for 10-25 ms at
/// 64, 128, 256... open descriptors, the first time a burst of clients arrived after start
/// (rinha-lb's max latency in the first seconds was 10-22 ms against nginx's 2-4). A table grown
/// before any other thread exists costs no grace period. Best effort: a closed stderr or a
/// refusal leaves the table as it was.
pub fn reserve_descriptor_table(slots: u64) {
    use rustix::process::{getrlimit, Resource};
    let limit = getrlimit(Resource::Nofile).current.unwrap_or(slots);
    let Ok(highest) = rustix::fd::RawFd::try_from(slots.min(limit).saturating_sub(1)) else {
        return;
    };
    // The lowest free descriptor at or above `highest`: opening it grows the table to cover
    // it, closing it leaves the table grown (tables never shrink).
    if let Ok(probe) = rustix::io::fcntl_dupfd_cloexec(std::io::stderr(), highest) {
        drop(probe);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn raised_limit_is_readable() {
        let limit = super::raise_nofile_limit();
        assert!(limit.is_none_or(|n| n >= 64));
    }

    #[test]
    fn descriptor_table_is_grown() {
        fn table_size() -> u64 {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let line = status.lines().find(|l| l.starts_with("FDSize:")).unwrap();
            line["FDSize:".len()..].trim().parse().unwrap()
        }
        let limit = super::raise_nofile_limit().unwrap_or(1024);
        let wanted = 4096.min(limit);
        super::reserve_descriptor_table(wanted);
        assert!(table_size() >= wanted, "FDSize {} < {wanted}", table_size());
    }
}
